//! Block lists: `block` and `unblock`, kept in memory and in the store.
//!
//! A block is one-way: when luke blocks vader, vader's messages, broadcasts
//! and private-session requests no longer reach luke, and vader no longer
//! sees luke in `who` or luke's presence; luke still reaches and sees vader.
//! Blocking also ends a private session between the two, and pending
//! requests either way.

use msg_proto::server::PrivateEndReason;
use msg_proto::{ErrorCode, Refusal};
use tokio::sync::oneshot;

use crate::hub::{Hub, store_failed};
use crate::store::StoreError;
use crate::texts;

impl Hub {
    fn check_block_target(&self, blocker: &str, target: &str) -> Result<(), Refusal> {
        if !self.accounts.exists(target) {
            return Err(Refusal::new(ErrorCode::InvalidUser, texts::INVALID_USER));
        }
        if target == blocker {
            return Err(Refusal::new(
                ErrorCode::CannotBlockSelf,
                texts::CANNOT_BLOCK_SELF,
            ));
        }
        Ok(())
    }

    /// Blocks `target` for `blocker`, durably. Ends their private session.
    pub async fn block(&self, blocker: &str, target: &str) -> Result<String, Refusal> {
        self.check_block_target(blocker, target)?;
        let stored = {
            let mut state = self.state();
            let set = state.blocks.entry(blocker.to_owned()).or_default();
            if !set.insert(target.to_owned()) {
                return Err(Refusal::new(
                    ErrorCode::AlreadyBlocked,
                    texts::already_blocked(target),
                ));
            }
            state.end_private_pair(blocker, target, PrivateEndReason::Blocked);
            state.drop_private_requests(blocker, target);
            self.store.set_block(blocker, target, true)
        };
        self.finish_block_change(blocker, target, true, stored)
            .await?;
        Ok(texts::blocked(target))
    }

    pub async fn unblock(&self, blocker: &str, target: &str) -> Result<String, Refusal> {
        self.check_block_target(blocker, target)?;
        let stored = {
            let mut state = self.state();
            let removed = state
                .blocks
                .get_mut(blocker)
                .is_some_and(|set| set.remove(target));
            if !removed {
                return Err(Refusal::new(
                    ErrorCode::NotBlocked,
                    texts::not_blocked(target),
                ));
            }
            self.store.set_block(blocker, target, false)
        };
        self.finish_block_change(blocker, target, false, stored)
            .await?;
        Ok(texts::unblocked(target))
    }

    /// Waits for the block change to be durable; undoes it in memory if the
    /// store failed, so memory and disk agree.
    async fn finish_block_change(
        &self,
        blocker: &str,
        target: &str,
        blocking: bool,
        stored: oneshot::Receiver<Result<(), StoreError>>,
    ) -> Result<(), Refusal> {
        let result = stored.await.unwrap_or(Err(StoreError::Closed));
        if let Err(e) = result {
            let mut state = self.state();
            let set = state.blocks.entry(blocker.to_owned()).or_default();
            if blocking {
                set.remove(target);
            } else {
                set.insert(target.to_owned());
            }
            return Err(store_failed(&e));
        }
        Ok(())
    }
}

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

use crate::cluster::events::Event;
use crate::hub::{Hub, cluster_failed, store_failed};
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
            self.write_block(blocker, target, true)
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
            self.write_block(blocker, target, false)
        };
        self.finish_block_change(blocker, target, false, stored)
            .await?;
        Ok(texts::unblocked(target))
    }

    /// Starts making a block change durable: a store job, submitted under
    /// the hub's lock (so ordered with the others); in a cluster the
    /// database is written once the lock is released.
    fn write_block(&self, blocker: &str, target: &str, blocking: bool) -> BlockWrite {
        match &self.cluster {
            Some(_) => BlockWrite::Cluster,
            None => BlockWrite::Store(self.store.set_block(blocker, target, blocking)),
        }
    }

    /// Waits for the block change to be durable (in a cluster, then tells
    /// the other nodes); undoes it in memory if that failed, so memory and
    /// disk agree.
    async fn finish_block_change(
        &self,
        blocker: &str,
        target: &str,
        blocking: bool,
        write: BlockWrite,
    ) -> Result<(), Refusal> {
        let result = match (write, &self.cluster) {
            (BlockWrite::Store(stored), _) => stored
                .await
                .unwrap_or(Err(StoreError::Closed))
                .map_err(|e| store_failed(&e)),
            (BlockWrite::Cluster, Some(cluster)) => {
                match cluster.set_block(blocker, target, blocking).await {
                    Ok(()) => {
                        cluster.events.publish(Event::Block {
                            blocker: blocker.to_owned(),
                            blocked: target.to_owned(),
                            blocking,
                            node: cluster.node_id.clone(),
                        });
                        Ok(())
                    }
                    Err(e) => Err(cluster_failed(&e)),
                }
            }
            (BlockWrite::Cluster, None) => Ok(()),
        };
        if let Err(refusal) = result {
            let mut state = self.state();
            let set = state.blocks.entry(blocker.to_owned()).or_default();
            if blocking {
                set.remove(target);
            } else {
                set.insert(target.to_owned());
            }
            return Err(refusal);
        }
        Ok(())
    }
}

/// A block change on its way to durability.
enum BlockWrite {
    Store(oneshot::Receiver<Result<(), StoreError>>),
    Cluster,
}

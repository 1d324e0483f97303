//! Login lockout: consecutive wrong passwords per username, across every
//! connection, and the block that the third one starts (kept in the store,
//! so a restart does not lift it).

use msg_proto::{ErrorCode, Refusal, Timestamp, now_ms};
use tokio::sync::oneshot;

use crate::hub::Hub;
use crate::store::StoreError;
use crate::texts;

/// Wrong passwords in a row that block a username.
const FAILURES_TO_BLOCK: u32 = 3;

impl Hub {
    /// Refuses a login attempt while the username is blocked.
    pub fn check_login_block(&self, user: &str) -> Result<(), Refusal> {
        let now = now_ms();
        let mut state = self.state();
        if let Some(failures) = state.failures.get(user) {
            match failures.blocked_until {
                Some(until) if until > now => {
                    let left = (until - now).div_ceil(1000);
                    return Err(Refusal::new(ErrorCode::LoginBlocked, texts::LOGIN_BLOCKED)
                        .retry_after(left));
                }
                Some(_) => {
                    // The block has run out: start counting afresh.
                    state.failures.remove(user);
                    self.store.clear_lockout(user);
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Refuses a login of a user who has a session elsewhere: cheap, so it
    /// comes before the password check.
    pub fn check_not_logged_in(&self, user: &str) -> Result<(), Refusal> {
        if self.state().sessions.contains_key(user) {
            return Err(Refusal::new(
                ErrorCode::AlreadyLoggedIn,
                texts::ALREADY_LOGGED_IN,
            ));
        }
        Ok(())
    }

    /// Counts a wrong password; the third in a row blocks the username. When
    /// it does, the receiver reports when the block is durable: the reply
    /// waits for it, so a crash right after cannot lift the block.
    pub fn login_failed(
        &self,
        user: &str,
    ) -> (Refusal, Option<oneshot::Receiver<Result<(), StoreError>>>) {
        let mut state = self.state();
        let failures = state.failures.entry(user.to_owned()).or_default();
        failures.count += 1;
        if failures.count >= FAILURES_TO_BLOCK {
            let until = now_ms() + self.config.block_duration.as_millis() as Timestamp;
            failures.count = 0;
            failures.blocked_until = Some(until);
            let durable = self.store.lockout(user, until);
            tracing::info!(user, "account blocked after three failed logins");
            (
                Refusal::new(ErrorCode::AccountBlocked, texts::ACCOUNT_BLOCKED),
                Some(durable),
            )
        } else {
            (
                Refusal::new(ErrorCode::InvalidPassword, texts::INVALID_PASSWORD),
                None,
            )
        }
    }
}

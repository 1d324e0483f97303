//! Login lockout: consecutive wrong passwords per username, across every
//! connection, and the block that the third one starts (kept in the store,
//! so a restart does not lift it). In cluster mode the count and the block
//! live in the shared database instead, across every node
//! ([`crate::cluster::lockout`]), and so does the rule of one login per
//! user ([`crate::cluster::lease`]).

use msg_proto::{ErrorCode, Refusal, Timestamp, now_ms};

use crate::accounts::Credential;
use crate::cluster::lockout::{self, Failure};
use crate::hub::{Hub, cluster_failed};
use crate::texts;

/// Wrong passwords in a row that block a username.
const FAILURES_TO_BLOCK: u32 = 3;

fn blocked(secs: u64) -> Refusal {
    Refusal::new(ErrorCode::LoginBlocked, texts::LOGIN_BLOCKED).retry_after(secs)
}

fn already_logged_in() -> Refusal {
    Refusal::new(ErrorCode::AlreadyLoggedIn, texts::ALREADY_LOGGED_IN)
}

/// A login that passed the checks before the password.
pub struct MayLogIn {
    /// Wrong passwords are counted for the user (a right one resets them:
    /// see [`Hub::login_succeeded`]).
    pub failures: bool,
    /// In a cluster, the account's credential, read in the same round trip
    /// as the checks; on a single server it is read from the accounts.
    pub credential: Option<Credential>,
}

impl Hub {
    /// Refuses a login attempt while the username is blocked.
    pub async fn check_login_block(&self, user: &str) -> Result<(), Refusal> {
        match &self.cluster {
            None => self.check_local_login_block(user),
            Some(cluster) => match lockout::blocked_for(&cluster.db, user).await {
                Ok(None) => Ok(()),
                Ok(Some(secs)) => Err(blocked(secs)),
                Err(e) => Err(cluster_failed(&e)),
            },
        }
    }

    fn check_local_login_block(&self, user: &str) -> Result<(), Refusal> {
        let now = now_ms();
        let mut state = self.state();
        if let Some(failures) = state.failures.get(user) {
            match failures.blocked_until {
                Some(until) if until > now => {
                    return Err(blocked((until - now).div_ceil(1000)));
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

    /// Refuses a login of a user who has a session elsewhere (on this
    /// node, or in a cluster on another): cheap, so it comes before the
    /// password check. The lease taken at the session's start decides.
    pub async fn check_not_logged_in(&self, user: &str) -> Result<(), Refusal> {
        if self.state().sessions.contains_key(user) {
            return Err(already_logged_in());
        }
        if let Some(cluster) = &self.cluster {
            match cluster.held_elsewhere(user).await {
                Ok(false) => {}
                Ok(true) => return Err(already_logged_in()),
                Err(e) => return Err(cluster_failed(&e)),
            }
        }
        Ok(())
    }

    /// The cheap checks of a login that need no database: a block known
    /// here (a single server's) and a session on this node.
    pub fn check_here(&self, user: &str) -> Result<(), Refusal> {
        if self.cluster.is_none() {
            self.check_local_login_block(user)?;
        }
        if self.state().sessions.contains_key(user) {
            return Err(already_logged_in());
        }
        Ok(())
    }

    /// Every check of a login before the password: the block and a session
    /// anywhere; in a cluster, one round trip to the database, which also
    /// reads the account's credential (see [`MayLogIn`]).
    pub async fn may_log_in(&self, user: &str) -> Result<MayLogIn, Refusal> {
        self.check_here(user)?;
        let Some(cluster) = &self.cluster else {
            return Ok(MayLogIn {
                failures: false,
                credential: None,
            });
        };
        match lockout::login_state(&cluster.db, &cluster.node_id, user).await {
            Ok(state) => match state.blocked_for {
                Some(secs) => Err(blocked(secs)),
                None if state.elsewhere => Err(already_logged_in()),
                None => match state.credential {
                    // Removed in the meantime.
                    None => Err(Refusal::new(ErrorCode::InvalidUser, texts::INVALID_USER)),
                    Some(field) => Ok(MayLogIn {
                        failures: state.failures,
                        credential: Some(Credential::parse(&field)),
                    }),
                },
            },
            Err(e) => Err(cluster_failed(&e)),
        }
    }

    /// Takes `user`'s lease in a cluster (a no-op on a single server): the
    /// one login per user across nodes. Call with the account's turn held
    /// and no session of `user` here.
    pub async fn take_lease(&self, user: &str) -> Result<(), Refusal> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        match cluster.acquire_lease(user).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(already_logged_in()),
            Err(e) => Err(cluster_failed(&e)),
        }
    }

    /// A right password ends the run of wrong ones (in a cluster, where
    /// `failures` says there are any; a single server forgets them when the
    /// session begins).
    pub async fn login_succeeded(&self, user: &str, failures: bool) {
        if failures
            && let Some(cluster) = &self.cluster
            && let Err(e) = lockout::succeeded(&cluster.db, user).await
        {
            tracing::warn!(error = %e, "cannot reset the count of wrong passwords");
        }
    }

    /// Counts a wrong password; the third in a row blocks the username. The
    /// refusal comes once the block is durable, so a crash right after
    /// cannot lift it.
    pub async fn login_failed(&self, user: &str) -> Refusal {
        if let Some(cluster) = &self.cluster {
            let block = self.config.block_duration;
            return match lockout::failed(&cluster.db, user, FAILURES_TO_BLOCK, block).await {
                Ok(Failure::Counted) => {
                    Refusal::new(ErrorCode::InvalidPassword, texts::INVALID_PASSWORD)
                }
                Ok(Failure::Blocked) => {
                    tracing::info!(user, "account blocked after three failed logins");
                    Refusal::new(ErrorCode::AccountBlocked, texts::ACCOUNT_BLOCKED)
                }
                Ok(Failure::AlreadyBlocked) => {
                    let secs = self.config.block_duration.as_secs().max(1);
                    match lockout::blocked_for(&cluster.db, user).await {
                        Ok(left) => blocked(left.unwrap_or(secs)),
                        Err(e) => cluster_failed(&e),
                    }
                }
                Err(e) => cluster_failed(&e),
            };
        }
        let durable = {
            let mut state = self.state();
            let failures = state.failures.entry(user.to_owned()).or_default();
            failures.count += 1;
            if failures.count >= FAILURES_TO_BLOCK {
                let until = now_ms() + self.config.block_duration.as_millis() as Timestamp;
                failures.count = 0;
                failures.blocked_until = Some(until);
                tracing::info!(user, "account blocked after three failed logins");
                self.store.lockout(user, until)
            } else {
                return Refusal::new(ErrorCode::InvalidPassword, texts::INVALID_PASSWORD);
            }
        };
        if let Ok(Err(e)) = durable.await {
            tracing::error!(error = %e, "the login block is only in memory");
        }
        Refusal::new(ErrorCode::AccountBlocked, texts::ACCOUNT_BLOCKED)
    }
}

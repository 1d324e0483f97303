//! Password work, bounded. Checking or hashing a password is argon2: slow
//! and 19 MiB of memory each, on purpose, so a login storm must not run
//! them without limit. At most a fixed number (about the core count) run
//! at once, on the blocking pool, shared fairly among client addresses
//! ([`crate::fair_permits`]); and one account's checks take turns, so a burst of
//! wrong passwords for it waits for the check that blocks it instead of
//! running them all.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::fair_permits::{FairPermit, FairPermits};
use crate::per_address::Key;

/// The server's password work: the permits and the accounts' turns.
pub struct Passwords {
    permits: Arc<FairPermits>,
    /// Accounts with a check under way or waiting, each with its turn lock.
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Checks and hashes run so far (for the log, and tests read it there).
    runs: AtomicU64,
}

/// An account's turn to have its password checked; held until the login's
/// outcome is recorded (a failure counted, a session begun), so the next
/// login of the account sees it.
pub struct Turn {
    passwords: Arc<Passwords>,
    user: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Passwords {
    /// `at_once`: how many checks or hashes may run at the same time.
    pub fn new(at_once: usize) -> Arc<Self> {
        Arc::new(Self {
            permits: FairPermits::new(at_once),
            turns: Mutex::new(HashMap::new()),
            runs: AtomicU64::new(0),
        })
    }

    /// About the machine's core count: argon2 keeps a core busy.
    pub fn default_at_once() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get().min(8))
    }

    /// Waits for `user`'s turn: until no other check of the account is
    /// under way or waiting before this one.
    pub async fn turn(self: &Arc<Self>, user: &str) -> Turn {
        let lock = {
            let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
            turns.entry(user.to_owned()).or_default().clone()
        };
        let guard = lock.lock_owned().await;
        Turn {
            passwords: self.clone(),
            user: user.to_owned(),
            guard: Some(guard),
        }
    }

    /// Waits for a permit to run a check or a hash for a client at `from`;
    /// clients at other addresses take turns with it.
    pub async fn permit(&self, from: IpAddr) -> Permit {
        Permit {
            _held: self.permits.acquire(Key::of(from)).await,
        }
    }

    /// Runs `work` (a check or a hash, named by `what` in the log) on the
    /// blocking pool under `permit`. The permit goes with the work, so a
    /// client that leaves meanwhile cannot make room for more. `None` if
    /// the work panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        permit: Permit,
        what: &'static str,
        user: &str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let runs = self.runs.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(user, runs, "password {what}");
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .ok()
    }
}

/// The right to run one check or hash now; given back when dropped.
pub struct Permit {
    _held: FairPermit,
}

impl Drop for Turn {
    fn drop(&mut self) {
        drop(self.guard.take());
        // The last one out forgets the account: the map holds only accounts
        // with a check under way or waiting.
        let mut turns = self
            .passwords
            .turns
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if turns
            .get(&self.user)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            turns.remove(&self.user);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_than_the_permits_run_at_once() {
        let passwords = Passwords::new(2);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (passwords, running, most) = (passwords.clone(), running.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                let permit = passwords.permit(std::net::Ipv4Addr::LOCALHOST.into()).await;
                passwords
                    .run(permit, "checked", "u", move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn turns_are_per_account_and_forgotten_when_done() {
        let passwords = Passwords::new(1);
        let first = passwords.turn("vader").await;
        // Another account does not wait.
        let other = passwords.turn("luke").await;
        let waiting = tokio::spawn({
            let passwords = passwords.clone();
            async move { drop(passwords.turn("vader").await) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        drop(other);
        assert!(passwords.turns.lock().unwrap().is_empty());
    }
}

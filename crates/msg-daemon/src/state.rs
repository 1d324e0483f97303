//! State shared by the server link, the control connections and the private
//! sessions: the inbox (and the watchers of new items), notifications, the
//! config, the link's status, the way to the server and the shutdown signal.

use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use msg_proto::control::{InboxItem, LinkState};
use msg_proto::{Refusal, now_ms};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::inbox::{Inbox, InboxError, NewItem};
use crate::notifier::Notifier;
use crate::texts;
use crate::upstream::{Note, WeakUpstream};
use msg_local::config::Config;

/// Items a slow `msg watch` may fall behind before it is told it skipped some.
const WATCH_BACKLOG: usize = 256;

#[derive(Debug, Clone)]
pub struct LinkStatus {
    pub server: Option<String>,
    pub user: Option<String>,
    pub state: LinkState,
    /// Why the server ended the last session, shown by commands that need
    /// a session until the next login.
    pub ended: Option<Refusal>,
    /// While reconnecting: why the link waits, and until when.
    pub waiting: Option<Waiting>,
}

/// Why the link waits before it logs in again, and until when.
#[derive(Debug, Clone)]
pub struct Waiting {
    pub reason: WaitReason,
    pub until: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    /// msgd has just started and logs in with its saved device token.
    Starting,
    ConnectionLost,
    Unreachable,
    /// The server still holds the session of our dropped connection.
    OldSession,
    /// Someone got the account blocked with wrong passwords.
    AccountBlocked,
    /// A full disk: nothing can be stored, so nothing is received.
    InboxUnwritable,
}

impl WaitReason {
    pub fn text(self) -> &'static str {
        match self {
            Self::Starting => texts::WAIT_STARTING,
            Self::ConnectionLost => texts::WAIT_CONNECTION_LOST,
            Self::Unreachable => texts::WAIT_UNREACHABLE,
            Self::OldSession => texts::WAIT_OLD_SESSION,
            Self::AccountBlocked => texts::WAIT_ACCOUNT_BLOCKED,
            Self::InboxUnwritable => texts::WAIT_INBOX_UNWRITABLE,
        }
    }
}

impl Waiting {
    /// Whole seconds until the next try, rounded up.
    pub fn secs_left(&self) -> u64 {
        let left = self.until.saturating_duration_since(Instant::now());
        left.as_secs() + u64::from(left.subsec_nanos() > 0)
    }

    pub fn left(&self) -> Duration {
        self.until.saturating_duration_since(Instant::now())
    }
}

pub struct Shared {
    inbox: Mutex<Inbox>,
    pub events: broadcast::Sender<InboxItem>,
    pub notifier: Notifier,
    pub config: Config,
    status: Mutex<LinkStatus>,
    /// The way to the server, for tasks to tell it things; weak so that it
    /// does not outlive the link's owners.
    upstream: OnceLock<WeakUpstream>,
    pub shutdown: CancellationToken,
    /// Set when the daemon stops because something failed (a panic): the
    /// process then exits non-zero.
    failure: OnceLock<String>,
}

/// Locks a mutex of the daemon's state, poisoned or not: a panic while
/// holding one cannot leave it inconsistent (every update is a single
/// assignment or SQLite transaction).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub fn new(inbox: Inbox, notifier: Notifier, config: Config) -> Self {
        Self {
            inbox: Mutex::new(inbox),
            events: broadcast::channel(WATCH_BACKLOG).0,
            notifier,
            config,
            status: Mutex::new(LinkStatus {
                server: None,
                user: None,
                state: LinkState::LoggedOut,
                ended: None,
                waiting: None,
            }),
            upstream: OnceLock::new(),
            shutdown: CancellationToken::new(),
            failure: OnceLock::new(),
        }
    }

    pub fn inbox(&self) -> MutexGuard<'_, Inbox> {
        lock(&self.inbox)
    }

    pub fn status(&self) -> MutexGuard<'_, LinkStatus> {
        lock(&self.status)
    }

    /// The account whose inbox commands see: the logged-in one, else the last.
    pub fn inbox_account(&self) -> Result<Option<String>, InboxError> {
        if let Some(user) = self.status().user.clone() {
            return Ok(Some(user));
        }
        self.inbox().last_account()
    }

    /// Persists an item for `account` and shows it to watchers. `None` for a
    /// duplicate.
    pub fn record(
        &self,
        account: &str,
        item: &NewItem<'_>,
    ) -> Result<Option<InboxItem>, InboxError> {
        Ok(self
            .record_batch(account, std::slice::from_ref(item))?
            .pop()
            .flatten())
    }

    /// Persists items for `account` in one transaction and shows the new
    /// ones to watchers; for each, the stored item or `None` (a duplicate).
    pub fn record_batch(
        &self,
        account: &str,
        items: &[NewItem<'_>],
    ) -> Result<Vec<Option<InboxItem>>, InboxError> {
        let stored = self.inbox().add_batch(account, items)?;
        for item in stored.iter().flatten() {
            // No watcher is fine.
            let _ = self.events.send(item.clone());
        }
        Ok(stored)
    }

    /// Stores an item, logging a failure; true when it was new.
    pub fn store(&self, account: &str, item: &NewItem<'_>) -> bool {
        match self.record(account, item) {
            Ok(stored) => stored.is_some(),
            Err(e) => {
                tracing::error!("{e}");
                false
            }
        }
    }

    /// Stores a system item (session events) for `account`.
    pub fn tell_account(&self, account: &str, from: Option<&str>, text: &str) {
        self.store(account, &NewItem::system(from, text, now_ms()));
    }

    /// Stores a system item for the logged-in account, if any.
    pub fn tell(&self, from: Option<&str>, text: &str) {
        let Some(account) = self.status().user.clone() else {
            return;
        };
        self.tell_account(&account, from, text);
    }

    /// Connects [`Shared::note`] to the server link (once, by the link).
    pub fn set_upstream(&self, upstream: WeakUpstream) {
        let _ = self.upstream.set(upstream);
    }

    /// Tells the server something without waiting (dropped when offline).
    pub fn note(&self, note: Note) {
        if let Some(upstream) = self.upstream.get() {
            upstream.note(note);
        }
    }

    /// Stops the daemon because something failed; it exits non-zero.
    pub fn fail(&self, why: String) {
        let _ = self.failure.set(why);
        self.shutdown.cancel();
    }

    /// Why the daemon stops, if it failed.
    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }
}

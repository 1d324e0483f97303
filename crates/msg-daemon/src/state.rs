//! State shared by the server link and the control connections.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use msg_proto::control::{InboxItem, LinkState, PrivateList};
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::inbox::{Inbox, InboxError, NewItem};
use crate::notifier::Notifier;

/// How a private-session request we made ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivateOutcome {
    Ready,
    Declined,
    Expired,
    /// The session ended (we logged out) before an answer came.
    Gone,
}

#[derive(Debug, Default)]
pub struct PrivateState {
    pub sessions: BTreeSet<String>,
    pub incoming: BTreeSet<String>,
    pub outgoing: BTreeSet<String>,
    /// `msg private start` calls waiting for the answer, by peer.
    pub waiters: HashMap<String, oneshot::Sender<PrivateOutcome>>,
}

impl PrivateState {
    pub fn list(&self) -> PrivateList {
        PrivateList {
            sessions: self.sessions.iter().cloned().collect(),
            incoming: self.incoming.iter().cloned().collect(),
            outgoing: self.outgoing.iter().cloned().collect(),
        }
    }

    /// Forgets everything: the server session is over.
    pub fn clear(&mut self) {
        for (_, waiter) in self.waiters.drain() {
            let _ = waiter.send(PrivateOutcome::Gone);
        }
        *self = Self::default();
    }
}

#[derive(Debug, Clone)]
pub struct LinkStatus {
    pub server: Option<String>,
    pub user: Option<String>,
    pub state: LinkState,
    /// Why the server ended the last session (code, text), shown by commands
    /// that need a session until the next login.
    pub ended: Option<(String, String)>,
}

pub struct Shared {
    inbox: Mutex<Inbox>,
    pub events: broadcast::Sender<InboxItem>,
    pub notifier: Notifier,
    pub config: Config,
    status: Mutex<LinkStatus>,
    private: Mutex<PrivateState>,
    pub shutdown: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these cannot leave them inconsistent
    // (every update is a single assignment or SQLite transaction).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub fn new(inbox: Inbox, notifier: Notifier, config: Config) -> Self {
        Self {
            inbox: Mutex::new(inbox),
            events: broadcast::channel(256).0,
            notifier,
            config,
            status: Mutex::new(LinkStatus {
                server: None,
                user: None,
                state: LinkState::LoggedOut,
                ended: None,
            }),
            private: Mutex::new(PrivateState::default()),
            shutdown: CancellationToken::new(),
        }
    }

    pub fn inbox(&self) -> MutexGuard<'_, Inbox> {
        lock(&self.inbox)
    }

    pub fn status(&self) -> MutexGuard<'_, LinkStatus> {
        lock(&self.status)
    }

    pub fn private(&self) -> MutexGuard<'_, PrivateState> {
        lock(&self.private)
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
        let stored = self.inbox().add(account, item)?;
        if let Some(stored) = &stored {
            // No watcher is fine.
            let _ = self.events.send(stored.clone());
        }
        Ok(stored)
    }
}

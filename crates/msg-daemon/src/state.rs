//! State shared by the server link and the control connections.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use msg_proto::control::{InboxItem, LinkState, PrivateList};
use msg_proto::{Refusal, Secret, now_ms};
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::inbox::{Inbox, InboxError, NewItem};
use crate::link::{Note, WeakLink};
use crate::notifier::Notifier;
use msg_local::config::Config;

/// How a private-session request we made ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivateOutcome {
    /// The direct connection is up.
    Ready,
    Declined,
    Expired,
    /// Agreed, but the peer's daemon could not be reached or refused us.
    Unreachable,
    /// The session ended (we logged out) before an answer came.
    Gone,
}

/// What a running peer connection is asked to do.
#[derive(Debug)]
pub enum PeerCommand {
    /// Send a private message; answered once the peer has stored it.
    Send {
        text: String,
        reply: oneshot::Sender<()>,
    },
}

/// The token the server gave us (the callee) for one caller.
#[derive(Debug)]
pub struct Expected {
    pub token: Secret,
    pub until: Instant,
}

/// One agreed private session.
#[derive(Debug)]
pub struct PrivateSession {
    /// Tells this session from an earlier or later one with the same peer,
    /// so a closing connection cannot end its successor.
    pub id: u64,
    /// Callee side, until the caller has presented the token.
    pub expected: Option<Expected>,
    /// The open peer connection; `None` while dialing or being dialed.
    /// Dropping it makes the connection say `bye` and close.
    pub link: Option<mpsc::Sender<PeerCommand>>,
}

#[derive(Debug, Default)]
pub struct PrivateState {
    pub sessions: BTreeMap<String, PrivateSession>,
    pub incoming: BTreeSet<String>,
    pub outgoing: BTreeSet<String>,
    /// `msg private start` calls waiting for the answer, by peer.
    pub waiters: HashMap<String, oneshot::Sender<PrivateOutcome>>,
    next_id: u64,
}

impl PrivateState {
    pub fn list(&self) -> PrivateList {
        PrivateList {
            sessions: self.sessions.keys().cloned().collect(),
            incoming: self.incoming.iter().cloned().collect(),
            outgoing: self.outgoing.iter().cloned().collect(),
        }
    }

    /// Records an agreed session with `peer` (replacing any older one) and
    /// returns its id.
    pub fn open(&mut self, peer: &str, expected: Option<Expected>) -> u64 {
        self.next_id += 1;
        let session = PrivateSession {
            id: self.next_id,
            expected,
            link: None,
        };
        self.sessions.insert(peer.to_owned(), session);
        self.next_id
    }

    /// Ends the session with `peer` if it is session `id` (any, for `None`).
    /// True when it was open, i.e. when the caller should tell the user.
    pub fn end(&mut self, peer: &str, id: Option<u64>) -> bool {
        match self.sessions.get(peer) {
            Some(session) if id.is_none_or(|id| id == session.id) => {
                self.sessions.remove(peer);
                true
            }
            _ => false,
        }
    }

    /// The connection of the open session with `peer`, if any.
    pub fn link(&self, peer: &str) -> Option<mpsc::Sender<PeerCommand>> {
        self.sessions.get(peer)?.link.clone()
    }

    /// Forgets everything: the server session is over. Returns the peers
    /// whose sessions were open.
    pub fn clear(&mut self) -> Vec<String> {
        for (_, waiter) in self.waiters.drain() {
            let _ = waiter.send(PrivateOutcome::Gone);
        }
        let peers = self.sessions.keys().cloned().collect();
        *self = Self {
            next_id: self.next_id,
            ..Self::default()
        };
        peers
    }
}

/// What commands that need a session say while there is none.
pub const NOT_LOGGED_IN: &str = "Not logged in. Run `msg login USER`";

#[derive(Debug, Clone)]
pub struct LinkStatus {
    pub server: Option<String>,
    pub user: Option<String>,
    pub state: LinkState,
    /// Why the server ended the last session, shown by commands that need
    /// a session until the next login.
    pub ended: Option<Refusal>,
}

pub struct Shared {
    inbox: Mutex<Inbox>,
    pub events: broadcast::Sender<InboxItem>,
    pub notifier: Notifier,
    pub config: Config,
    status: Mutex<LinkStatus>,
    private: Mutex<PrivateState>,
    /// Woken when a session is agreed, so that a caller whose `hello` beat
    /// the server's `private_ready` to us can be let in.
    pub private_agreed: Notify,
    /// The server link, for peer tasks to tell the server things; weak so
    /// that the link task still ends when the control side is gone.
    link: OnceLock<WeakLink>,
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
            private_agreed: Notify::new(),
            link: OnceLock::new(),
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

    /// Stores a system item (session events) for the logged-in account.
    pub fn tell(&self, from: Option<&str>, text: &str) {
        let Some(account) = self.status().user.clone() else {
            return;
        };
        let item = NewItem::system(from, text, now_ms());
        if let Err(e) = self.record(&account, &item) {
            tracing::error!("{e}");
        }
    }

    pub fn set_link(&self, link: WeakLink) {
        let _ = self.link.set(link);
    }

    /// Tells the server something without waiting (dropped when offline).
    pub fn note(&self, note: Note) {
        if let Some(link) = self.link.get() {
            link.note(note);
        }
    }
}

//! Sessions: a user's registration after login, the end of the offline-queue
//! drain (when the others learn the user is online), and the end of a
//! session, which stores what the user had not acknowledged and ends its
//! private sessions and requests.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use msg_proto::server::PrivateEndReason;
use msg_proto::{ErrorCode, Refusal};
use tokio::sync::oneshot;

use crate::hub::routing::take_held;
use crate::hub::state::{ConnId, Session};
use crate::hub::{DRAIN_PAGE, Hub};
use crate::outbox::Outbox;
use crate::store::{StoreError, StoredMessage, TokenHash};
use crate::texts;

/// What a connection needs to register a session.
pub struct SessionSpec {
    pub conn: ConnId,
    pub out: Outbox,
    pub ip: IpAddr,
    pub peer_port: Option<u16>,
    /// The client's `peer_key`, in the form the server hands on.
    pub peer_key: Option<String>,
    /// The device token's hash, for a login by or with a device token.
    pub device: Option<TokenHash>,
}

/// Handle returned by [`Hub::begin_session`]: the first page of the user's
/// offline queue, read in order with the session's registration.
pub type QueuePage = oneshot::Receiver<Result<Vec<StoredMessage>, StoreError>>;

impl Hub {
    /// Registers a session for `user` after a correct password. The caller
    /// then delivers the offline queue starting from the returned page and
    /// calls [`Hub::finish_drain`]. The session's presence notices start
    /// at the presence log's end.
    pub fn begin_session(&self, user: &Arc<str>, spec: SessionSpec) -> Result<QueuePage, Refusal> {
        let mut state = self.state();
        if state.sessions.contains_key(&**user) {
            return Err(Refusal::new(
                ErrorCode::AlreadyLoggedIn,
                texts::ALREADY_LOGGED_IN,
            ));
        }
        state.failures.remove(&**user);
        state.anonymous.remove(&spec.conn);
        state.presence_rounds.activity(Instant::now());
        spec.out.set_presence_cursor(self.presence.end());
        state.sessions.insert(
            user.clone(),
            Session {
                conn: spec.conn,
                out: spec.out,
                ip: spec.ip,
                peer_port: spec.peer_port,
                peer_key: spec.peer_key.map(String::into_boxed_str),
                device: spec.device.map(Box::new),
                held: Some(Box::default()),
                inflight: None,
            },
        );
        self.store.presence(user, self.now_ms(), true);
        Ok(self.store.pending_after(user, 0, DRAIN_PAGE))
    }

    /// The offline queue has been written up to queue position `after`
    /// (`None`: it cannot be read). If live messages were stored meanwhile,
    /// returns the page after `after`, which holds them: the drain goes on.
    /// Otherwise releases the held messages, then tells the others that
    /// `user` is online. After a later read of the queue (see
    /// [`Hub::mail_stored`]) there is nothing left to do.
    pub fn finish_drain(&self, user: &str, conn: ConnId, after: Option<u64>) -> Option<QueuePage> {
        let mut guard = self.state();
        let state = &mut *guard;
        let session = state.sessions.get_mut(user)?;
        if session.conn != conn || session.held.is_none() {
            return None;
        }
        if let (Some(after), Some(held)) = (after, session.held.as_ref()) {
            // What is held must fit beside what the drain left queued;
            // otherwise it is stored too, and the drain reads it at its pace.
            let room = self
                .config
                .connection_budget
                .saturating_sub(session.out.queued_bytes());
            if !held.spilled && held.bytes > room {
                let unacked = take_held(session, &mut state.inflight);
                self.store_unacked(unacked);
            }
            if let Some(held) = session.held.as_mut()
                && held.spilled
            {
                // Read under the lock, after every message stored so far.
                held.spilled = false;
                return Some(self.store.pending_after(user, after, DRAIN_PAGE));
            }
        }
        let held = session.held.take().unwrap_or_default();
        let now = Instant::now();
        for (id, line) in held.lines {
            session.push(line);
            if let Some(inflight) = state.inflight.get_mut(&id) {
                inflight.since = Some(now);
            }
        }
        let at = self.now_ms();
        self.announce_presence(state, user, true, at);
        self.tell_nodes(user, true, at);
        None
    }

    /// Ends `user`'s session on connection `conn` (logout, timeout, dropped
    /// connection, shutdown). Unacknowledged messages go to the store, so the
    /// next login delivers them.
    pub fn end_session(&self, user: &str, conn: ConnId) {
        let mut state = self.state();
        if state.sessions.get(user).is_none_or(|s| s.conn != conn) {
            return;
        }
        let Some(session) = state.sessions.remove(user) else {
            return;
        };

        let mut unacked = Vec::new();
        for id in session.inflight.into_iter().flat_map(|ids| *ids) {
            if let Some(inflight) = state.inflight.remove(&id) {
                unacked.push(inflight);
            }
        }
        self.store_unacked(unacked);
        let now = self.now_ms();
        state.last_seen.insert(user.to_owned(), now);
        self.store.presence(user, now, false);
        self.announce_presence(&mut state, user, false, now);
        self.tell_nodes(user, false, now);
        if let Some(cluster) = &self.cluster {
            cluster.leases.release(user);
        }
        let pairs: Vec<String> = state
            .private_pairs
            .iter()
            .filter_map(|(a, b)| match (a == user, b == user) {
                (true, _) => Some(b.clone()),
                (_, true) => Some(a.clone()),
                _ => None,
            })
            .collect();
        for other in pairs {
            state.end_private_pair(user, &other, PrivateEndReason::LoggedOut);
        }
        let requests: Vec<(String, String)> = state
            .private_requests
            .keys()
            .filter(|(a, b)| a == user || b == user)
            .cloned()
            .collect();
        for (asker, callee) in requests {
            state.drop_private_requests(&asker, &callee);
        }
    }

    /// Another node stored messages for `user` (cluster mode): a session
    /// of the user here reads its offline queue again — at once if its
    /// login's delivery is over, else before that delivery ends (as when
    /// live messages spill to the store).
    pub(super) fn mail_stored(&self, user: &str) {
        let mut state = self.state();
        let Some(session) = state.sessions.get_mut(user) else {
            return;
        };
        match session.held.as_mut() {
            Some(held) => held.spilled = true,
            None => session.out.mail_stored(),
        }
    }

    /// Users online now (for shutdown and tests).
    pub fn online_count(&self) -> usize {
        self.state().sessions.len()
    }
}

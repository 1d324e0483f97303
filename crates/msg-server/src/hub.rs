//! The hub: the server's in-memory authority over who is online, who blocks
//! whom, login failures, messages in flight and private-session brokering.
//!
//! All of it sits behind one mutex, held only for short, non-async critical
//! sections. Store jobs that must be ordered against hub decisions (enqueue a
//! message for an offline user, read a user's queue at login) are *submitted*
//! under the lock and *awaited* outside it: the store runs jobs in submission
//! order, so a message queued before a login is always seen by that login.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use msg_proto::server::{PrivateEndReason, ServerFrame};
use msg_proto::{ErrorCode, Refusal, now_ms};
use msg_proto::{MsgId, RequestId, Secret, Timestamp};
use tokio::sync::oneshot;

use crate::accounts::Accounts;
use crate::config::Config;
use crate::outbox::{Outbox, Push, ReplySlot};
use crate::store::{Snapshot, Store, StoreError, StoredMessage};
use crate::texts;

/// Identifies one connection, so a stale connection cannot end a newer
/// session of the same user.
pub type ConnId = u64;

/// Queued messages read per store round trip while draining at login.
pub const DRAIN_PAGE: usize = 1000;

fn store_failed(err: &StoreError) -> Refusal {
    tracing::error!(error = %err, "store operation failed");
    Refusal::new(ErrorCode::Internal, texts::STORE_FAILED)
}

/// A refused `send`, with the reply slot handed back for the error reply.
pub type ReplyRefusal = (Refusal, ReplySlot);

/// What a connection needs to register a session.
pub struct SessionSpec {
    pub conn: ConnId,
    pub out: Outbox,
    pub ip: IpAddr,
    pub peer_port: Option<u16>,
}

struct Session {
    conn: ConnId,
    out: Outbox,
    ip: IpAddr,
    peer_port: Option<u16>,
    /// `Some` while the session drains its offline queue: live direct
    /// messages wait here so they cannot overtake older queued ones.
    held: Option<Vec<(MsgId, Bytes)>>,
    /// Messages forwarded to this session and not yet acknowledged.
    inflight: HashSet<MsgId>,
}

impl Session {
    /// Queues a frame; a full queue disconnects the session.
    fn push(&self, line: Bytes) -> Push {
        self.out.push_line(line)
    }

    fn push_frame(&self, frame: &ServerFrame) -> Push {
        match msg_proto::encode_line(frame) {
            Ok(line) => self.push(line),
            Err(_) => Push::Closed,
        }
    }
}

/// A message forwarded to an online recipient, awaiting its ack.
struct Inflight {
    msg: StoredMessage,
    /// Where to send the sender's `sent` reply once acknowledged.
    reply: Option<(ReplySlot, RequestId)>,
    /// When it was written to the recipient's queue; `None` while held.
    since: Option<Instant>,
}

#[derive(Default)]
struct LoginFailures {
    count: u32,
    blocked_until: Option<Timestamp>,
}

fn ordered_pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

#[derive(Default)]
struct State {
    sessions: HashMap<String, Session>,
    /// blocker → users they block.
    blocks: HashMap<String, HashSet<String>>,
    /// user → last moment they were seen online (logout time).
    last_seen: HashMap<String, Timestamp>,
    failures: HashMap<String, LoginFailures>,
    inflight: HashMap<MsgId, Inflight>,
    /// (asker, callee) → when the request expires.
    private_requests: HashMap<(String, String), Instant>,
    /// Brokered private sessions, as ordered pairs.
    private_pairs: HashSet<(String, String)>,
}

impl State {
    fn has_blocked(&self, blocker: &str, blocked: &str) -> bool {
        self.blocks
            .get(blocker)
            .is_some_and(|set| set.contains(blocked))
    }

    /// Sends `frame` to every online user but `user` and those `user` blocks
    /// (a user's presence is hidden from the users they block).
    fn announce_presence(&self, user: &str, online: bool, at: Timestamp) {
        let Ok(line) = msg_proto::encode_line(&ServerFrame::Presence {
            user: user.to_owned(),
            online,
            at,
        }) else {
            return;
        };
        for (name, session) in &self.sessions {
            if name != user && !self.has_blocked(user, name) {
                session.push(line.clone());
            }
        }
    }

    fn push_to(&self, user: &str, frame: &ServerFrame) {
        if let Some(session) = self.sessions.get(user) {
            session.push_frame(frame);
        }
    }

    /// Ends the brokered private session between `a` and `b`, telling both.
    fn end_private_pair(&mut self, a: &str, b: &str, reason: PrivateEndReason) {
        if self.private_pairs.remove(&ordered_pair(a, b)) {
            self.push_to(
                a,
                &ServerFrame::PrivateEnded {
                    peer: b.to_owned(),
                    reason,
                },
            );
            self.push_to(
                b,
                &ServerFrame::PrivateEnded {
                    peer: a.to_owned(),
                    reason,
                },
            );
        }
    }

    /// Drops pending requests between `a` and `b` in either direction.
    fn drop_private_requests(&mut self, a: &str, b: &str) {
        for (asker, callee) in [(a, b), (b, a)] {
            if self
                .private_requests
                .remove(&(asker.to_owned(), callee.to_owned()))
                .is_some()
            {
                self.push_to(
                    asker,
                    &ServerFrame::PrivateExpired {
                        peer: callee.to_owned(),
                    },
                );
                self.push_to(
                    callee,
                    &ServerFrame::PrivateExpired {
                        peer: asker.to_owned(),
                    },
                );
            }
        }
    }
}

/// Handle returned by [`Hub::begin_session`]: the first page of the user's
/// offline queue, read in order with the session's registration.
pub type QueuePage = oneshot::Receiver<Result<Vec<StoredMessage>, StoreError>>;

pub struct Hub {
    pub config: Config,
    pub accounts: Accounts,
    pub store: Store,
    state: Mutex<State>,
    next_msg_id: AtomicU64,
    next_conn_id: AtomicU64,
}

impl Hub {
    pub fn new(config: Config, accounts: Accounts, store: Store, snapshot: Snapshot) -> Self {
        let now = now_ms();
        let failures = snapshot
            .lockouts
            .into_iter()
            .filter(|(_, until)| *until > now)
            .map(|(user, until)| {
                (
                    user,
                    LoginFailures {
                        count: 0,
                        blocked_until: Some(until),
                    },
                )
            })
            .collect();
        Self {
            config,
            accounts,
            store,
            state: Mutex::new(State {
                blocks: snapshot.blocks,
                last_seen: snapshot.last_seen,
                failures,
                ..State::default()
            }),
            // Ids embed the boot counter so they never repeat across restarts,
            // which lets clients de-duplicate redeliveries by id.
            next_msg_id: AtomicU64::new(u64::from(snapshot.boot) << 32),
            next_conn_id: AtomicU64::new(1),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug; the state is still
        // the best we have, so keep serving rather than cascade.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    fn next_msg_id(&self) -> MsgId {
        self.next_msg_id.fetch_add(1, Ordering::Relaxed)
    }

    // ---- login and lockout -------------------------------------------------

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
        if failures.count >= 3 {
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

    /// Registers a session for `user` after a correct password. The caller
    /// then delivers the offline queue starting from the returned page and
    /// calls [`Hub::finish_drain`].
    pub fn begin_session(&self, user: &str, spec: SessionSpec) -> Result<QueuePage, Refusal> {
        let mut state = self.state();
        if state.sessions.contains_key(user) {
            return Err(Refusal::new(
                ErrorCode::AlreadyLoggedIn,
                texts::ALREADY_LOGGED_IN,
            ));
        }
        state.failures.remove(user);
        state.sessions.insert(
            user.to_owned(),
            Session {
                conn: spec.conn,
                out: spec.out,
                ip: spec.ip,
                peer_port: spec.peer_port,
                held: Some(Vec::new()),
                inflight: HashSet::new(),
            },
        );
        self.store.presence(user, now_ms(), true);
        Ok(self.store.pending_after(user, 0, DRAIN_PAGE))
    }

    /// The offline queue has been written: release held messages, then tell
    /// the others that `user` is online.
    pub fn finish_drain(&self, user: &str, conn: ConnId) {
        let mut guard = self.state();
        let state = &mut *guard;
        let Some(session) = state.sessions.get_mut(user) else {
            return;
        };
        if session.conn != conn {
            return;
        }
        let held = session.held.take().unwrap_or_default();
        let now = Instant::now();
        for (id, line) in held {
            session.push(line);
            if let Some(inflight) = state.inflight.get_mut(&id) {
                inflight.since = Some(now);
            }
        }
        state.announce_presence(user, true, now_ms());
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
        for id in session.inflight {
            if let Some(inflight) = state.inflight.remove(&id) {
                unacked.push(inflight);
            }
        }
        self.store_unacked(unacked);
        let now = now_ms();
        state.last_seen.insert(user.to_owned(), now);
        self.store.presence(user, now, false);
        state.announce_presence(user, false, now);
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

    /// Writes messages that were forwarded but not acknowledged to the store
    /// and answers their senders once they are durable.
    fn store_unacked(&self, unacked: Vec<Inflight>) {
        if unacked.is_empty() {
            return;
        }
        let mut replies = Vec::with_capacity(unacked.len());
        let mut messages = Vec::with_capacity(unacked.len());
        for inflight in unacked {
            if let Some(reply) = inflight.reply {
                replies.push((reply, inflight.msg.id));
            }
            messages.push(inflight.msg);
        }
        self.store.enqueue(
            messages,
            Box::new(move |result| {
                for ((slot, id), msg_id) in replies {
                    let frame = match &result {
                        Ok(()) => ServerFrame::Sent {
                            id,
                            msg_id,
                            queued: true,
                        },
                        Err(e) => ServerFrame::refusal(Some(id), store_failed(e)),
                    };
                    slot.fill(&frame);
                }
            }),
        );
    }

    // ---- messages -----------------------------------------------------------

    /// Routes a direct message. The reply (`sent` or an error) reaches
    /// `reply_to` later: when the recipient acknowledges it, or once it is
    /// stored for an offline recipient.
    pub fn send(
        &self,
        from: &str,
        to: &str,
        text: String,
        client_id: Option<String>,
        reply_to: (ReplySlot, RequestId),
    ) -> Result<(), ReplyRefusal> {
        let refusal = if to == from {
            Some(Refusal::new(
                ErrorCode::CannotMessageSelf,
                texts::CANNOT_MESSAGE_SELF,
            ))
        } else if !self.accounts.exists(to) {
            Some(Refusal::new(ErrorCode::InvalidUser, texts::INVALID_USER))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return Err((refusal, reply_to.0));
        }
        let mut state = self.state();
        if state.has_blocked(to, from) {
            let refusal = Refusal::new(ErrorCode::BlockedByRecipient, texts::BLOCKED_BY_RECIPIENT);
            return Err((refusal, reply_to.0));
        }
        let msg = StoredMessage {
            id: self.next_msg_id(),
            recipient: to.to_owned(),
            sender: from.to_owned(),
            text,
            at: now_ms(),
            client_id,
        };
        let state = &mut *state;
        if let Some(session) = state.sessions.get_mut(to) {
            let encoded = msg_proto::encode_line(&ServerFrame::Message {
                msg_id: msg.id,
                from: msg.sender.clone(),
                text: msg.text.clone(),
                at: msg.at,
                client_id: msg.client_id.clone(),
            });
            let Ok(line) = encoded else {
                return Err((
                    Refusal::new(ErrorCode::Internal, texts::STORE_FAILED),
                    reply_to.0,
                ));
            };
            let since = match &mut session.held {
                Some(held) => {
                    held.push((msg.id, line));
                    Some(None)
                }
                None => match session.push(line) {
                    Push::Queued => Some(Some(Instant::now())),
                    Push::Full | Push::Closed => None,
                },
            };
            if let Some(since) = since {
                session.inflight.insert(msg.id);
                state.inflight.insert(
                    msg.id,
                    Inflight {
                        msg,
                        reply: Some(reply_to),
                        since,
                    },
                );
                return Ok(());
            }
        }
        self.store_unacked(vec![Inflight {
            msg,
            reply: Some(reply_to),
            since: None,
        }]);
        Ok(())
    }

    /// `user` has stored message `id`.
    pub fn ack(&self, user: &str, id: MsgId) {
        let mut state = self.state();
        let owned = state
            .inflight
            .get(&id)
            .is_some_and(|inflight| inflight.msg.recipient == user);
        if owned {
            if let Some(session) = state.sessions.get_mut(user) {
                session.inflight.remove(&id);
            }
            if let Some(Inflight {
                reply: Some((slot, request)),
                ..
            }) = state.inflight.remove(&id)
            {
                slot.fill(&ServerFrame::Sent {
                    id: request,
                    msg_id: id,
                    queued: false,
                });
            }
        } else {
            // A message delivered from the store (or stored after an ack
            // timeout): only now may it be forgotten.
            self.store.delete(user, id);
        }
    }

    /// Sends to every online user but the sender and those who block the
    /// sender. Returns whether anyone was skipped for a block.
    pub fn broadcast(&self, from: &str, text: String) -> bool {
        let Ok(line) = msg_proto::encode_line(&ServerFrame::Broadcast {
            from: from.to_owned(),
            text,
            at: now_ms(),
        }) else {
            return false;
        };
        let state = self.state();
        let mut skipped = false;
        for (name, session) in &state.sessions {
            if name == from {
                continue;
            }
            if state.has_blocked(name, from) {
                skipped = true;
                continue;
            }
            session.push(line.clone());
        }
        skipped
    }

    // ---- presence -------------------------------------------------------------

    /// Online users other than `asker`, sorted, without those who block `asker`.
    pub fn who(&self, asker: &str) -> Vec<String> {
        let state = self.state();
        let mut users: Vec<String> = state
            .sessions
            .keys()
            .filter(|name| *name != asker && !state.has_blocked(name, asker))
            .cloned()
            .collect();
        users.sort_unstable();
        users
    }

    /// Users other than `asker` online at any moment in the last `secs`
    /// seconds, online ones included, without those who block `asker`.
    pub fn who_since(&self, asker: &str, secs: u64) -> Vec<String> {
        let cutoff = now_ms().saturating_sub(secs.saturating_mul(1000));
        let state = self.state();
        let online = state.sessions.keys();
        let recent = state
            .last_seen
            .iter()
            .filter(|(_, at)| **at >= cutoff)
            .map(|(name, _)| name);
        let mut users: Vec<String> = online
            .chain(recent)
            .filter(|name| *name != asker && !state.has_blocked(name, asker))
            .cloned()
            .collect();
        users.sort_unstable();
        users.dedup();
        users
    }

    // ---- blocks ---------------------------------------------------------------

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

    // ---- private sessions -------------------------------------------------------

    /// `asker` asks `callee` for a private session; `callee` is told.
    pub fn private_request(&self, asker: &str, callee: &str) -> Result<(), Refusal> {
        if !self.accounts.exists(callee) {
            return Err(Refusal::new(ErrorCode::InvalidUser, texts::INVALID_USER));
        }
        if callee == asker {
            return Err(Refusal::new(
                ErrorCode::CannotPrivateSelf,
                texts::CANNOT_PRIVATE_SELF,
            ));
        }
        let mut state = self.state();
        let Some(session) = state.sessions.get(callee) else {
            return Err(Refusal::new(ErrorCode::UserOffline, texts::offline(callee)));
        };
        if state.has_blocked(callee, asker) {
            return Err(Refusal::new(
                ErrorCode::BlockedYou,
                texts::has_blocked_you(callee),
            ));
        }
        if session.peer_port.is_none() {
            return Err(Refusal::new(
                ErrorCode::PrivateUnavailable,
                texts::private_unavailable(callee),
            ));
        }
        session.push_frame(&ServerFrame::PrivateRequest {
            from: asker.to_owned(),
            at: now_ms(),
        });
        let expires = Instant::now() + self.config.private_timeout;
        state
            .private_requests
            .insert((asker.to_owned(), callee.to_owned()), expires);
        Ok(())
    }

    /// `callee` accepts `asker`'s request: both get the same one-time token;
    /// the asker also gets the address to dial.
    pub fn private_accept(&self, callee: &str, asker: &str) -> Result<(), Refusal> {
        let mut state = self.state();
        let key = (asker.to_owned(), callee.to_owned());
        let pending = state
            .private_requests
            .get(&key)
            .is_some_and(|expires| *expires > Instant::now());
        if !pending {
            return Err(Refusal::new(
                ErrorCode::NoPrivateRequest,
                texts::no_private_request(asker),
            ));
        }
        if !state.sessions.contains_key(asker) {
            state.private_requests.remove(&key);
            return Err(Refusal::new(ErrorCode::UserOffline, texts::offline(asker)));
        }
        let addr = state.sessions.get(callee).and_then(|s| {
            s.peer_port
                .map(|port| SocketAddr::new(canonical_ip(s.ip), port))
        });
        let Some(addr) = addr else {
            return Err(Refusal::new(
                ErrorCode::PrivateUnavailable,
                texts::private_unavailable(callee),
            ));
        };
        state.private_requests.remove(&key);
        let token = Secret(one_time_token());
        let expires_in = self.config.private_timeout.as_secs();
        state.push_to(
            asker,
            &ServerFrame::PrivateReady {
                peer: callee.to_owned(),
                token: token.clone(),
                addr: Some(addr.to_string()),
                caller_ip: None,
                expires_in,
            },
        );
        let caller_ip = state
            .sessions
            .get(asker)
            .map(|s| canonical_ip(s.ip).to_string());
        state.push_to(
            callee,
            &ServerFrame::PrivateReady {
                peer: asker.to_owned(),
                token,
                addr: None,
                caller_ip,
                expires_in,
            },
        );
        state.private_pairs.insert(ordered_pair(asker, callee));
        Ok(())
    }

    pub fn private_decline(&self, callee: &str, asker: &str) -> Result<(), Refusal> {
        let mut state = self.state();
        if state
            .private_requests
            .remove(&(asker.to_owned(), callee.to_owned()))
            .is_none()
        {
            return Err(Refusal::new(
                ErrorCode::NoPrivateRequest,
                texts::no_private_request(asker),
            ));
        }
        state.push_to(
            asker,
            &ServerFrame::PrivateDeclined {
                peer: callee.to_owned(),
            },
        );
        Ok(())
    }

    /// `user` reports that its private session with `other` ended.
    pub fn private_end(&self, user: &str, other: &str) {
        let mut state = self.state();
        if state.private_pairs.remove(&ordered_pair(user, other)) {
            state.push_to(
                other,
                &ServerFrame::PrivateEnded {
                    peer: user.to_owned(),
                    reason: PrivateEndReason::Stopped,
                },
            );
        }
    }

    // ---- housekeeping -------------------------------------------------------------

    /// Periodic duties: store messages whose recipient did not acknowledge in
    /// time (and answer their senders), expire private-session requests.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut state = self.state();
        let ack_timeout = self.config.ack_timeout;
        let overdue: Vec<MsgId> = state
            .inflight
            .iter()
            .filter(|(_, f)| {
                f.since
                    .is_some_and(|t| now.duration_since(t) >= ack_timeout)
            })
            .map(|(id, _)| *id)
            .collect();
        let mut unacked = Vec::with_capacity(overdue.len());
        for id in overdue {
            if let Some(inflight) = state.inflight.remove(&id) {
                if let Some(session) = state.sessions.get_mut(&inflight.msg.recipient) {
                    session.inflight.remove(&id);
                }
                unacked.push(inflight);
            }
        }
        self.store_unacked(unacked);
        let expired: Vec<(String, String)> = state
            .private_requests
            .iter()
            .filter(|(_, expires)| **expires <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for (asker, callee) in expired {
            state.drop_private_requests(&asker, &callee);
        }
    }

    /// Users online now (for shutdown and tests).
    pub fn online_count(&self) -> usize {
        self.state().sessions.len()
    }
}

/// IPv4 clients on a dual-stack socket show up as `::ffff:a.b.c.d`; peers
/// should dial the plain IPv4 address.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// 128 random bits, hex: unguessable, single-use proof of a brokered session.
fn one_time_token() -> String {
    msg_proto::random_hex(16)
}

/// Seconds until the next housekeeping pass.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

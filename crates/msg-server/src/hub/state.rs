//! The hub's data: everything behind its one mutex, and the small queries
//! every concern uses (who blocks whom, pushing a frame to a user).
//!
//! Only data lives here; what each concern does with it is in its own file
//! (sessions, routing, presence, blocks, private sessions, lockout).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use msg_proto::server::ServerFrame;
use msg_proto::{MsgId, RequestId, Timestamp};

use crate::cluster::events::Directed;
use crate::cluster::lease::Epoch;
use crate::hub::presence_log::Rounds;
use crate::outbox::{Outbox, Push, ReplySlot};
use crate::store::{StoredMessage, TokenHash};

/// Identifies one connection, so a stale connection cannot end a newer
/// session of the same user.
pub type ConnId = u64;

pub(super) struct Session {
    pub conn: ConnId,
    pub out: Outbox,
    pub ip: IpAddr,
    pub peer_port: Option<u16>,
    /// The client's static public key for private sessions (64 lowercase
    /// hex digits), handed to the other side of each.
    pub peer_key: Option<Box<str>>,
    /// The hash of the device token this session logged in with or was
    /// given: what a `logout` with `revoke_device` revokes.
    pub device: Option<Box<TokenHash>>,
    /// `Some` while the session drains its offline queue: live direct
    /// messages wait here so they cannot overtake older queued ones.
    pub held: Option<Box<HeldLive>>,
    /// Messages forwarded to this session and not yet acknowledged; `None`
    /// when there are none, so an idle session keeps no table.
    pub inflight: Option<Box<InflightIds>>,
}

/// The ids of a session's messages awaiting acks. Ids are the server's
/// own, so a fixed hasher is safe, and keeps every session 16 bytes
/// smaller than a seeded one.
pub(super) type InflightIds =
    HashSet<MsgId, std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>>;

impl Session {
    pub fn add_inflight(&mut self, id: MsgId) {
        self.inflight.get_or_insert_with(Box::default).insert(id);
    }

    pub fn remove_inflight(&mut self, id: &MsgId) {
        if let Some(ids) = &mut self.inflight {
            ids.remove(id);
            if ids.is_empty() {
                self.inflight = None;
            }
        }
    }

    /// Queues a frame; a full queue disconnects the session.
    pub fn push(&self, line: Bytes) -> Push {
        self.out.push_line(line)
    }

    pub fn push_frame(&self, frame: &ServerFrame) -> Push {
        match msg_proto::encode_line(frame) {
            Ok(line) => self.push(line),
            Err(_) => Push::Closed,
        }
    }
}

/// Live direct messages for a session whose offline queue is being
/// delivered. Bounded like the connection's queue (its byte budget and
/// event capacity): past either, they and every later one go to the store
/// instead, behind the queue the drain is reading, so the drain delivers
/// them too, in order, before it ends.
#[derive(Default)]
pub(super) struct HeldLive {
    pub lines: Vec<(MsgId, Bytes)>,
    pub bytes: usize,
    /// Messages went to the store since the drain last asked it for more.
    pub spilled: bool,
}

/// A message forwarded to an online recipient, awaiting its ack.
pub(super) struct Inflight {
    pub msg: StoredMessage,
    /// Who is told once it is acknowledged (or stored, or refused).
    pub reply: Option<Reply>,
    /// When it was written to the recipient's queue, which starts the ack
    /// timeout; `None` while it is held behind the recipient's drain.
    pub since: Option<Instant>,
    /// Handed to the recipient's node (cluster mode), which answers; this
    /// node stores it itself only if that node stays silent for long.
    pub elsewhere: bool,
}

/// Where the outcome of a direct message goes.
pub(super) enum Reply {
    /// The sender is here: its `sent` reply (or error) fills this slot.
    Local(ReplySlot, RequestId),
    /// The sender is on another node (cluster mode), which is told.
    Node(Box<str>),
}

/// A user online on another node (cluster mode).
pub(super) struct Remote {
    pub node: Box<str>,
    pub epoch: Epoch,
}

#[derive(Default)]
pub(super) struct LoginFailures {
    pub count: u32,
    pub blocked_until: Option<Timestamp>,
}

#[derive(Default)]
pub(super) struct State {
    /// Keyed by the name the connection also holds (one allocation).
    pub sessions: HashMap<Arc<str>, Session>,
    /// blocker → users they block.
    pub blocks: HashMap<String, HashSet<String>>,
    /// user → last moment they were seen online (logout time).
    pub last_seen: HashMap<String, Timestamp>,
    pub failures: HashMap<String, LoginFailures>,
    pub inflight: HashMap<MsgId, Inflight>,
    /// (asker, callee) → when the request expires.
    pub private_requests: HashMap<(String, String), Instant>,
    /// Brokered private sessions, as ordered pairs.
    pub private_pairs: HashSet<(String, String)>,
    /// When the sessions are next woken for presence notices.
    pub presence_rounds: Rounds,
    /// Connections not logged in (yet), to be woken at shutdown; logged-in
    /// ones are in `sessions`.
    pub anonymous: HashMap<ConnId, Outbox>,
    /// In cluster mode: users online on other nodes.
    pub remote: HashMap<String, Remote>,
    /// Private-session requests from users of other nodes: (asker,
    /// callee) → what the callee's side needs from the asker's.
    pub remote_asks: HashMap<(String, String), RemoteAsk>,
    /// What other nodes must be told, decided under the lock and sent as
    /// it is released.
    pub to_nodes: Vec<(Box<str>, Directed)>,
}

/// A private-session request from a user of another node.
pub(super) struct RemoteAsk {
    pub key: String,
    pub ip: String,
}

impl State {
    pub fn has_blocked(&self, blocker: &str, blocked: &str) -> bool {
        self.blocks
            .get(blocker)
            .is_some_and(|set| set.contains(blocked))
    }

    /// Queues `frame` for `user` if online.
    pub fn push_to(&self, user: &str, frame: &ServerFrame) {
        if let Some(session) = self.sessions.get(user) {
            session.push_frame(frame);
        }
    }

    /// Tells the node of `user`, if `user` is online on another node.
    pub fn tell_node_of(&mut self, user: &str, message: impl FnOnce() -> Directed) {
        if !self.sessions.contains_key(user)
            && let Some(remote) = self.remote.get(user)
        {
            let node = remote.node.clone();
            self.to_nodes.push((node, message()));
        }
    }
}

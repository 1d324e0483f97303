//! The hub: the server's in-memory authority over who is online, who blocks
//! whom, login failures, messages in flight and private-session brokering.
//!
//! All of it sits behind one mutex ([`state::State`]), held only for short,
//! non-async critical sections. Store jobs that must be ordered against hub
//! decisions (enqueue a message for an offline user, read a user's queue at
//! login) are *submitted* under the lock and *awaited* outside it: the store
//! runs jobs in submission order, so a message queued before a login is
//! always seen by that login.
//!
//! One `impl Hub` per concern, each in its own file, over that one state:
//! - [`lockout`]: wrong passwords and login blocks;
//! - [`sessions`]: login, the end of the offline-queue drain, logout;
//! - [`routing`]: direct messages, acks, broadcasts, overdue acks;
//! - [`presence`]: `who`, `who_since`, login and logout notices, which
//!   go through the shared [`presence_log`];
//! - [`blocks`]: block lists;
//! - [`private`]: private-session brokering;
//! - [`devices`]: the sessions' device tokens, and ending the sessions of
//!   an account whose tokens were revoked;
//! - [`remote`]: in cluster mode, the users on other nodes, and
//!   [`forward`]: direct messages to and from them; [`answer`]: telling a
//!   message's outcome to its sender, here or on another node;
//!   [`private_remote`]: private sessions between users of two nodes.
//!
//! `sessions` uses `routing`, `presence` and `private` (a session's end
//! touches all three) and `blocks` uses `private`; nothing else crosses.

mod answer;
mod blocks;
mod devices;
pub mod forward;
mod lockout;
mod presence;
pub mod presence_log;
mod private;
mod private_remote;
pub mod remote;
mod routing;
mod sessions;
mod state;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use msg_proto::{ErrorCode, MsgId, Refusal, now_ms};

use crate::accounts::Accounts;
use crate::cluster::{Cluster, ClusterError};
use crate::config::Config;
use crate::outbox::Outbox;
use crate::passwords::Passwords;
use crate::per_address::PerAddress;
use crate::store::{Snapshot, Store, StoreError};
use crate::texts;

pub use routing::ReplyRefusal;
pub use sessions::{QueuePage, SessionSpec};
pub use state::ConnId;

/// Queued messages read per store round trip while draining at login.
pub const DRAIN_PAGE: usize = 1000;

/// Time between two housekeeping passes ([`Hub::sweep`]).
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

pub struct Hub {
    pub config: Config,
    pub accounts: Accounts,
    pub passwords: Arc<Passwords>,
    /// Registrations per client address.
    pub registrations: PerAddress,
    /// Wrong passwords per client address.
    pub failed_logins: PerAddress,
    pub store: Store,
    /// Logins and logouts, read by every session's writer.
    pub presence: presence_log::PresenceLog,
    state: Mutex<state::State>,
    /// The random half of this run's message ids.
    msg_id_prefix: u64,
    next_msg_id: AtomicU64,
    next_conn_id: AtomicU64,
    /// The server is shutting down: every connection says goodbye.
    shutting_down: AtomicBool,
    /// The other nodes and the shared database, in cluster mode.
    pub cluster: Option<Arc<Cluster>>,
}

impl Hub {
    pub fn new(config: Config, accounts: Accounts, store: Store, snapshot: Snapshot) -> Self {
        let backlog = config.presence_backlog;
        let now = now_ms();
        let failures = snapshot
            .lockouts
            .into_iter()
            .filter(|(_, until)| *until > now)
            .map(|(user, until)| {
                (
                    user,
                    state::LoginFailures {
                        count: 0,
                        blocked_until: Some(until),
                    },
                )
            })
            .collect();
        Self {
            passwords: Passwords::new(config.password_checks_at_once),
            registrations: PerAddress::new(config.register_rate),
            failed_logins: PerAddress::new(config.login_fail_rate),
            presence: presence_log::PresenceLog::new(backlog, backlog.saturating_mul(256)),
            config,
            accounts,
            store,
            state: Mutex::new(state::State {
                blocks: snapshot.blocks,
                last_seen: snapshot.last_seen,
                failures,
                presence_rounds: presence_log::Rounds::new(backlog, std::time::Instant::now()),
                ..state::State::default()
            }),
            // Drawn anew at every start and never stored, so no state of the
            // database can make an id repeat: clients de-duplicate by id.
            msg_id_prefix: MsgId::random_prefix(),
            next_msg_id: AtomicU64::new(0),
            next_conn_id: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
            cluster: None,
        }
    }

    /// A node of a cluster: accounts, lockouts and logins are decided in
    /// the shared database.
    pub fn in_cluster(self, cluster: Arc<Cluster>) -> Self {
        Self {
            cluster: Some(cluster),
            ..self
        }
    }

    /// Ends the sessions of users whose leases this node lost (cluster
    /// mode): their connections say so and close.
    pub fn end_lost_sessions(&self, users: &[String]) {
        let state = self.state();
        for user in users {
            if let Some(session) = state.sessions.get(user.as_str()) {
                session.out.lease_lost();
            }
        }
    }

    fn state(&self) -> Locked<'_> {
        Locked {
            // A panic while holding the lock would be a bug; the state is
            // still the best we have, so keep serving rather than cascade.
            guard: self.state.lock().unwrap_or_else(|e| e.into_inner()),
            cluster: self.cluster.as_deref(),
        }
    }

    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A connection was accepted: until it logs in, shutdown finds it here.
    /// (A shutdown waiter in each connection's task would cost every idle
    /// session 80 bytes.)
    pub fn connection_opened(&self, conn: ConnId, out: Outbox) {
        self.state().anonymous.insert(conn, out);
    }

    /// A connection ended.
    pub fn connection_closed(&self, conn: ConnId) {
        self.state().anonymous.remove(&conn);
    }

    /// Tells every connection to end (each checks
    /// [`Hub::is_shutting_down`] when woken).
    pub fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
        let state = self.state();
        for out in state.anonymous.values() {
            out.nudge();
        }
        for session in state.sessions.values() {
            session.out.nudge();
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// The time: the database's clock in a cluster (the service's one
    /// clock), else this machine's.
    pub fn now_ms(&self) -> msg_proto::Timestamp {
        match &self.cluster {
            Some(cluster) => cluster.now_ms(),
            None => now_ms(),
        }
    }

    fn next_msg_id(&self) -> MsgId {
        MsgId::new(
            self.msg_id_prefix,
            self.next_msg_id.fetch_add(1, Ordering::Relaxed),
        )
    }

    /// Periodic duties: store messages whose recipient did not acknowledge in
    /// time (and answer their senders), expire private-session requests.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut state = self.state();
        self.store_overdue(&mut state, now);
        self.expire_private_requests(&mut state, now);
    }

    /// Forgets the addresses that are within their rate limits again.
    pub fn purge_rate_limits(&self) {
        let now = Instant::now();
        self.registrations.purge(now);
        self.failed_logins.purge(now);
    }
}

/// The hub's state, locked. What other nodes must be told
/// ([`state::State::to_nodes`]) is handed to NATS's queue as the lock is
/// released (which never waits), so it leaves in the order decided.
struct Locked<'a> {
    guard: std::sync::MutexGuard<'a, state::State>,
    cluster: Option<&'a Cluster>,
}

impl std::ops::Deref for Locked<'_> {
    type Target = state::State;
    fn deref(&self) -> &state::State {
        &self.guard
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut state::State {
        &mut self.guard
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let told = std::mem::take(&mut self.guard.to_nodes);
        if let Some(cluster) = self.cluster {
            for (node, message) in told {
                cluster.events.tell(&node, message);
            }
        }
    }
}

/// The refusal for a failed query of the cluster's database, logged once
/// here.
fn cluster_failed(err: &ClusterError) -> Refusal {
    tracing::error!(error = %err, "cluster database operation failed");
    Refusal::new(ErrorCode::Internal, texts::CLUSTER_UNAVAILABLE)
}

/// The refusal for a failed store job, logged once here.
fn store_failed(err: &StoreError) -> Refusal {
    tracing::error!(error = %err, "store operation failed");
    Refusal::new(ErrorCode::Internal, texts::STORE_FAILED)
}

//! The bookkeeping of private sessions (which are agreed, open, asked for or
//! awaited) and [`Private`], the hub the other private modules share: that
//! state, the daemon's shared state and the session tasks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use msg_proto::control::PrivateList;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::private::keys::{Identity, KeyError, PublicKey, SecretKey};
use crate::state::{Shared, lock};

/// How a private-session request we made ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivateOutcome {
    /// The direct connection is up.
    Ready,
    Declined,
    Expired,
    /// Agreed, but the peer's daemon could not be reached or refused us.
    Unreachable,
    /// Whoever answered at the peer's address did not prove the key the
    /// server gave for the peer (or the token).
    Unverified,
    /// The server gave no key for the peer or no full-size token (it is
    /// too old): no session without encryption.
    Insecure,
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

/// What the server told us (the callee) about one caller: the key it must
/// prove it holds and the token that is our shared key.
#[derive(Debug)]
pub struct Expected {
    pub peer_key: PublicKey,
    pub psk: SecretKey,
    pub until: Instant,
    /// Where the caller may connect from.
    pub caller: Caller,
}

/// Where the server says a caller connects from (`caller_ip`): the peer
/// listener lets in no one else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// The server did not say (an older server): any address.
    Anywhere,
    /// Only this address (canonical, see [`canonical`]).
    From(IpAddr),
    /// The server sent something that is no address: no one.
    Nobody,
}

impl Caller {
    /// From the server's `caller_ip`.
    pub fn parse(caller_ip: Option<&str>) -> Self {
        match caller_ip {
            None => Self::Anywhere,
            Some(ip) => match ip.parse::<IpAddr>() {
                Ok(ip) => Self::From(canonical(ip)),
                Err(_) => {
                    tracing::warn!("the server named no valid caller address; nobody is let in");
                    Self::Nobody
                }
            },
        }
    }

    /// Whether a connection from `ip` (canonical) may be this caller.
    pub fn admits(self, ip: IpAddr) -> bool {
        match self {
            Self::Anywhere => true,
            Self::From(expected) => expected == ip,
            Self::Nobody => false,
        }
    }
}

/// An address as compared: an IPv4-mapped IPv6 address is its IPv4 one.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// One agreed private session.
#[derive(Debug)]
pub struct PrivateSession {
    /// Tells this session from an earlier or later one with the same peer,
    /// so a closing connection cannot end its successor.
    pub id: u64,
    /// Callee side, until the caller has proved its key and the token.
    pub expected: Option<Expected>,
    /// The open peer connection; `None` while dialing or being dialed.
    /// Dropping it (the only sender kept) makes the connection say `bye`.
    pub connection: Option<mpsc::Sender<PeerCommand>>,
}

#[derive(Debug, Default)]
pub struct PrivateState {
    pub sessions: BTreeMap<String, PrivateSession>,
    /// Requests from others that our user has not answered.
    pub incoming: BTreeSet<String>,
    /// Our requests the others have not answered.
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
            connection: None,
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

    /// Whether a session waits for a caller from `ip` (canonical) now.
    pub fn expects_caller_from(&self, ip: IpAddr, now: Instant) -> bool {
        self.sessions.values().any(|session| {
            session
                .expected
                .as_ref()
                .is_some_and(|e| e.until > now && e.caller.admits(ip))
        })
    }

    /// The connection of the open session with `peer`, if any.
    pub fn connection(&self, peer: &str) -> Option<mpsc::Sender<PeerCommand>> {
        self.sessions.get(peer)?.connection.clone()
    }

    /// Settles a request between us and `peer`: no longer pending either
    /// way, and a `msg private start` waiting for it learns `outcome`.
    pub fn answered(&mut self, peer: &str, outcome: PrivateOutcome) {
        self.incoming.remove(peer);
        self.outgoing.remove(peer);
        if let Some(waiter) = self.waiters.remove(peer) {
            let _ = waiter.send(outcome);
        }
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

/// Everything private sessions need, shared by the listener, the link's
/// event handlers, the control requests and the session tasks.
pub struct Private {
    pub shared: Arc<Shared>,
    /// Our static key pair for this run of msgd.
    pub identity: Identity,
    state: Mutex<PrivateState>,
    /// Woken when a session is agreed, so that a caller whose handshake
    /// beat the server's `private_ready` to us can be let in.
    pub agreed: Notify,
    /// Dials and sessions, so that the daemon can let them say goodbye
    /// before it exits.
    tasks: TaskTracker,
}

impl Private {
    /// Makes this run's key pair.
    pub fn new(shared: Arc<Shared>) -> Result<Arc<Self>, KeyError> {
        Ok(Arc::new(Self {
            shared,
            identity: Identity::generate()?,
            state: Mutex::new(PrivateState::default()),
            agreed: Notify::new(),
            tasks: TaskTracker::new(),
        }))
    }

    pub fn state(&self) -> MutexGuard<'_, PrivateState> {
        lock(&self.state)
    }

    /// Runs a dial or a session as a task the daemon waits for at exit.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// At exit, after the sessions were ended: waits (at most `within`) for
    /// their tasks to say `bye` and close, so that the peers hear it from
    /// us rather than see the connection drop.
    pub async fn wait_for_goodbyes(&self, within: Duration) {
        self.tasks.close();
        if tokio::time::timeout(within, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::info!("some private connections did not close in time");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_are_compared_canonically() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(canonical(mapped), v4);
        assert!(Caller::parse(Some("::ffff:192.0.2.7")).admits(v4));
        assert!(Caller::parse(Some("192.0.2.7")).admits(canonical(mapped)));
        assert!(!Caller::parse(Some("192.0.2.8")).admits(v4));
        assert!(Caller::parse(None).admits(v4));
        assert!(!Caller::parse(Some("not an address")).admits(v4));
    }

    #[test]
    fn only_a_pending_unexpired_session_expects_a_caller() {
        let mut state = PrivateState::default();
        let now = Instant::now();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(!state.expects_caller_from(ip, now));
        let expected = |caller, until| Expected {
            peer_key: [1; 32],
            psk: SecretKey::new([2; 32]),
            until,
            caller,
        };
        state.open(
            "hans",
            Some(expected(Caller::From(ip), now + Duration::from_secs(5))),
        );
        assert!(state.expects_caller_from(ip, now));
        assert!(!state.expects_caller_from(other, now));
        assert!(!state.expects_caller_from(ip, now + Duration::from_secs(5)));
        state.sessions.get_mut("hans").unwrap().expected = None;
        assert!(!state.expects_caller_from(ip, now), "the token was used");
    }
}

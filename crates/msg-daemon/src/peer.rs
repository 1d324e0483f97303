//! The peer listener and the handshake of private sessions, both ways.
//!
//! The listener's port is advertised to the server at login; it is bound on
//! the unspecified address of the family the server connection uses (peers
//! dial the address the server sees for us). A caller must open with
//! `hello` carrying the one-time token the server gave us for it; anything
//! else is refused, logged and closed, without disturbing the daemon. The
//! asker's side ([`dial`]) presents the token and waits for `welcome`. Once
//! through, both sides run the same session task ([`crate::private`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use msg_proto::Secret;
use msg_proto::peer::{PEER_VERSION, PeerFrame, RefusedCode};
use msg_proto::{FrameError, JsonLines};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::link::Note;
use crate::private::{self, PeerConn};
use crate::state::{PrivateOutcome, Shared};

/// A caller must say hello this fast.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// The server sends `private_ready` to the asker first: its hello may reach
/// us before our own `private_ready` does. Wait this long for it.
const READY_GRACE: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long and how much a refused caller's remaining input is drained.
const DRAIN_TIME: Duration = Duration::from_secs(1);
const DRAIN_LIMIT: usize = 256 * 1024;
/// Handshakes in progress at once; more callers wait in the accept queue.
const MAX_HANDSHAKES: usize = 16;

/// The listener, bound lazily for the family of the server connection.
pub struct PeerListener {
    shared: Arc<Shared>,
    /// `--peer-port` / `peer_port` in the config; ephemeral when `None`.
    pinned: Option<u16>,
    bound: tokio::sync::Mutex<Option<Bound>>,
}

struct Bound {
    v6: bool,
    port: u16,
    stop: CancellationToken,
}

impl PeerListener {
    pub fn new(shared: Arc<Shared>, pinned: Option<u16>) -> Arc<Self> {
        Arc::new(Self {
            shared,
            pinned,
            bound: tokio::sync::Mutex::new(None),
        })
    }

    /// The port to advertise when our end of the server connection is
    /// `local`; binds (or rebinds for another family) on first use. `None`,
    /// logged, when binding fails: the server then refuses private sessions
    /// with us, everything else works.
    pub async fn port_for(&self, local: IpAddr) -> Option<u16> {
        let v6 = match local {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().is_none(),
            IpAddr::V4(_) => false,
        };
        let mut bound = self.bound.lock().await;
        if let Some(b) = bound.as_ref() {
            if b.v6 == v6 {
                return Some(b.port);
            }
            b.stop.cancel();
            *bound = None;
        }
        let port = self.pinned.unwrap_or(0);
        let addr: SocketAddr = if v6 {
            (Ipv6Addr::UNSPECIFIED, port).into()
        } else {
            (Ipv4Addr::UNSPECIFIED, port).into()
        };
        let listener = match TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(
                    "no peer listener on port {port}, private sessions unavailable: {e}"
                );
                return None;
            }
        };
        let port = match listener.local_addr() {
            Ok(addr) => addr.port(),
            Err(e) => {
                tracing::warn!("peer listener: {e}");
                return None;
            }
        };
        tracing::info!(port, "listening for private sessions");
        let stop = self.shared.shutdown.child_token();
        tokio::spawn(serve(listener, Arc::clone(&self.shared), stop.clone()));
        *bound = Some(Bound { v6, port, stop });
        Some(port)
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else {
            return;
        };
        tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, from)) => {
                    let shared = Arc::clone(&shared);
                    tokio::spawn(async move {
                        let admitted = handshake(stream, from, &shared).await;
                        drop(permit);
                        if let Some((peer, id, conn)) = admitted {
                            open_inbound(shared, peer, id, conn).await;
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("peer listener: {e}");
                    // Do not spin if the error persists (e.g. out of fds).
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Checks a caller's hello; the session it may join, or `None` (refused).
async fn handshake(
    stream: TcpStream,
    addr: SocketAddr,
    shared: &Shared,
) -> Option<(String, u64, PeerConn)> {
    let _ = stream.set_nodelay(true);
    let mut conn: PeerConn = Framed::new(stream, JsonLines::new());
    let ip = addr.ip();
    let (from, token) = match timeout(HELLO_TIMEOUT, conn.next()).await {
        Err(_) => {
            tracing::warn!(%ip, "peer connection refused: no hello in time");
            return None;
        }
        Ok(None | Some(Err(_))) => {
            tracing::info!(%ip, "peer connection closed before its hello");
            return None;
        }
        Ok(Some(Ok(Err(e)))) => {
            let code = match e {
                FrameError::TooLong { .. } => RefusedCode::FrameTooLarge,
                _ => RefusedCode::InvalidCommand,
            };
            tracing::warn!(%ip, "peer connection refused: {e}");
            refuse(conn, code, "Error. Invalid command").await;
            return None;
        }
        Ok(Some(Ok(Ok(PeerFrame::Hello {
            version,
            from,
            token,
        })))) => {
            if version != PEER_VERSION {
                tracing::warn!(%ip, version, "peer connection refused: version mismatch");
                let text = format!(
                    "Error. Peer protocol version {version} is not supported (this daemon speaks {PEER_VERSION})"
                );
                refuse(conn, RefusedCode::VersionMismatch, &text).await;
                return None;
            }
            (from, token)
        }
        Ok(Some(Ok(Ok(_)))) => {
            tracing::warn!(%ip, "peer connection refused: no hello");
            let text = "Error. The first frame must be hello";
            refuse(conn, RefusedCode::HelloRequired, text).await;
            return None;
        }
    };
    let Some(id) = admit(shared, &from, &token).await else {
        // Never the token itself: it could still be the valid one for
        // someone else's session.
        tracing::warn!(%ip, caller = ?from, "peer connection refused: wrong, used or expired token");
        let text = "Error. No private session agreed with this token";
        refuse(conn, RefusedCode::BadToken, text).await;
        return None;
    };
    Some((from, id, conn))
}

/// Finds the session agreed with `from` whose token matches, and consumes
/// the token. Waits briefly for a session the server is still announcing.
async fn admit(shared: &Shared, from: &str, token: &Secret) -> Option<u64> {
    let deadline = Instant::now() + READY_GRACE;
    loop {
        // Registered before looking, so an announcement in between is seen.
        let agreed = shared.private_agreed.notified();
        tokio::pin!(agreed);
        agreed.as_mut().enable();
        {
            let mut private = shared.private();
            if let Some(session) = private.sessions.get_mut(from) {
                let expected = session.expected.as_ref()?;
                if expected.until <= Instant::now() {
                    session.expected = None;
                    return None;
                }
                // A wrong token does not burn the right one: only its holder
                // could use it anyway.
                if !same_token(expected.token.expose(), token.expose()) {
                    return None;
                }
                session.expected = None;
                return Some(session.id);
            }
        }
        timeout_at(deadline, agreed).await.ok()?;
    }
}

/// Compares in time independent of where the first difference is.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

async fn refuse(mut conn: PeerConn, code: RefusedCode, message: &str) {
    let refused = PeerFrame::Refused {
        code,
        message: message.to_owned(),
    };
    if timeout(HELLO_TIMEOUT, conn.send(refused)).await.is_err() {
        return;
    }
    // Closing with unread input would reset the connection, and the caller
    // might lose the refusal: half-close, then discard what it still sends,
    // within bounds.
    let mut stream = conn.into_inner();
    let drain = async {
        let _ = stream.shutdown().await;
        let mut buf = [0u8; 8192];
        let mut left = DRAIN_LIMIT;
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = timeout(DRAIN_TIME, drain).await;
}

/// Welcomes an admitted caller and starts the session.
async fn open_inbound(shared: Arc<Shared>, peer: String, id: u64, mut conn: PeerConn) {
    let Some(me) = shared.status().user.clone() else {
        return;
    };
    let Some(commands) = private::attach(&shared, &peer, id) else {
        return;
    };
    let welcome = PeerFrame::Welcome {
        version: PEER_VERSION,
        user: me,
    };
    if timeout(HELLO_TIMEOUT, conn.send(welcome)).await.is_err() {
        tracing::warn!("{peer}'s daemon did not take our welcome");
        return;
    }
    shared.tell(Some(&peer), &format!("Start private messaging with {peer}"));
    private::spawn(shared, peer, id, conn, commands);
}

#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("the connection closed")]
    Closed,
    #[error("refused: {0}")]
    Refused(String),
    #[error("unexpected answer")]
    Unexpected,
}

/// The asker's side: dials `addr` for session `id` with `peer`, presents
/// `token` and, once welcomed, runs the session. Answers the waiting
/// `msg private start` either way.
pub async fn dial(shared: Arc<Shared>, peer: String, id: u64, addr: String, token: Secret) {
    let outcome = match connect(&shared, &peer, &addr, token).await {
        Ok(mut conn) => match private::attach(&shared, &peer, id) {
            Some(commands) => {
                shared.tell(Some(&peer), &format!("Start private messaging with {peer}"));
                private::spawn(Arc::clone(&shared), peer.clone(), id, conn, commands);
                PrivateOutcome::Ready
            }
            None => {
                // Ended while we dialed (the server's private_ended).
                let _ = conn.send(PeerFrame::Bye).await;
                PrivateOutcome::Unreachable
            }
        },
        Err(e) => {
            tracing::warn!("cannot open the private session with {peer}: {e}");
            if shared.private().end(&peer, Some(id)) {
                shared.tell(
                    Some(&peer),
                    &format!("Error. Cannot connect to {peer} for private messaging"),
                );
                shared.note(Note::PrivateEnd(peer.clone()));
            }
            PrivateOutcome::Unreachable
        }
    };
    if let Some(waiter) = shared.private().waiters.remove(&peer) {
        let _ = waiter.send(outcome);
    }
}

async fn connect(
    shared: &Shared,
    peer: &str,
    addr: &str,
    token: Secret,
) -> Result<PeerConn, DialError> {
    let me = shared.status().user.clone().ok_or(DialError::Closed)?;
    let stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| DialError::Timeout)?
        .map_err(DialError::Connect)?;
    let _ = stream.set_nodelay(true);
    let mut conn: PeerConn = Framed::new(stream, JsonLines::new());
    let hello = PeerFrame::Hello {
        version: PEER_VERSION,
        from: me,
        token,
    };
    let exchange = async {
        conn.send(hello).await.map_err(|_| DialError::Closed)?;
        match conn.next().await {
            Some(Ok(Ok(PeerFrame::Welcome { user, .. }))) if user == peer => Ok(()),
            Some(Ok(Ok(PeerFrame::Refused { message, .. }))) => Err(DialError::Refused(message)),
            None | Some(Err(_)) => Err(DialError::Closed),
            Some(Ok(_)) => Err(DialError::Unexpected),
        }
    };
    // The callee may wait up to READY_GRACE for the server's announcement.
    timeout(HELLO_TIMEOUT + READY_GRACE, exchange)
        .await
        .map_err(|_| DialError::Timeout)??;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::inbox::Inbox;
    use crate::notifier::Notifier;
    use crate::state::Expected;
    use msg_local::config::Config;

    fn shared() -> Shared {
        Shared::new(
            Inbox::open_in_memory().unwrap(),
            Notifier::new(false),
            Config::default(),
        )
    }

    fn expect(shared: &Shared, peer: &str, token: &str, valid_for: Duration) -> u64 {
        let expected = Expected {
            token: token.into(),
            until: Instant::now() + valid_for,
        };
        shared.private().open(peer, Some(expected))
    }

    #[tokio::test]
    async fn a_token_is_taken_once_by_its_caller_before_it_expires() {
        let shared = shared();
        let id = expect(&shared, "hans", "t0k3n", Duration::from_secs(60));
        // Wrong token, or right token from someone else: refused, and the
        // right one is not burnt.
        assert_eq!(admit(&shared, "hans", &"nope!".into()).await, None);
        assert_eq!(admit(&shared, "hans", &"t0k3".into()).await, None);
        assert_eq!(admit(&shared, "hans", &"t0k3n".into()).await, Some(id));
        // Reused.
        assert_eq!(admit(&shared, "hans", &"t0k3n".into()).await, None);
        // Expired.
        expect(&shared, "leia", "other", Duration::ZERO);
        assert_eq!(admit(&shared, "leia", &"other".into()).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_faster_than_the_servers_announcement_is_let_in() {
        let shared = Arc::new(shared());
        let caller = tokio::spawn({
            let shared = Arc::clone(&shared);
            async move { admit(&shared, "hans", &"t0k3n".into()).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let id = expect(&shared, "hans", "t0k3n", Duration::from_secs(60));
        shared.private_agreed.notify_waiters();
        assert_eq!(caller.await.unwrap(), Some(id));
        // Nobody announced: refused after the grace period.
        assert_eq!(admit(&shared, "yoda", &"t0k3n".into()).await, None);
    }

    #[test]
    fn token_comparison() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
        assert!(!same_token("", "a"));
    }
}

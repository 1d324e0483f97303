//! The handshake of a private session, both ways: admitting a caller (the
//! callee's side) and dialing the callee (the asker's side).
//!
//! A caller must open with `hello` carrying the one-time token the server
//! gave us for it; anything else is refused, logged and closed, without
//! disturbing the daemon. The asker presents the token and waits for
//! `welcome`. Once through, both sides run the same session task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use msg_proto::peer::{PEER_VERSION, PeerFrame, RefusedCode};
use msg_proto::{FrameError, JsonLines, Secret};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::codec::Framed;

use crate::private::session::{self, PeerConn};
use crate::private::state::{Private, PrivateOutcome};
use crate::texts;
use crate::upstream::Note;

/// A caller must say hello this fast.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// The server sends `private_ready` to the asker first: its hello may reach
/// us before our own `private_ready` does. Wait this long for it.
const READY_GRACE: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A caller let in: who, for which session, on which connection.
pub struct Admitted {
    pub peer: String,
    pub id: u64,
    pub conn: PeerConn,
}

/// Checks a caller's hello; the session it may join, or `None` (refused).
pub async fn admit_caller(
    stream: TcpStream,
    addr: SocketAddr,
    private: &Private,
) -> Option<Admitted> {
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
            refuse(conn, code, texts::INVALID_COMMAND).await;
            return None;
        }
        Ok(Some(Ok(Ok(PeerFrame::Hello {
            version,
            from,
            token,
        })))) => {
            if version != PEER_VERSION {
                tracing::warn!(%ip, version, "peer connection refused: version mismatch");
                let text = texts::peer_version_mismatch(version, PEER_VERSION);
                refuse(conn, RefusedCode::VersionMismatch, &text).await;
                return None;
            }
            (from, token)
        }
        Ok(Some(Ok(Ok(_)))) => {
            tracing::warn!(%ip, "peer connection refused: no hello");
            refuse(conn, RefusedCode::HelloRequired, texts::PEER_HELLO_REQUIRED).await;
            return None;
        }
    };
    let Some(id) = take_token(private, &from, &token).await else {
        // Never the token itself: it could still be the valid one for
        // someone else's session.
        tracing::warn!(%ip, caller = ?from, "peer connection refused: wrong, used or expired token");
        refuse(conn, RefusedCode::BadToken, texts::PEER_BAD_TOKEN).await;
        return None;
    };
    Some(Admitted {
        peer: from,
        id,
        conn,
    })
}

/// Finds the session agreed with `from` whose token matches, and consumes
/// the token. Waits briefly for a session the server is still announcing.
async fn take_token(private: &Private, from: &str, token: &Secret) -> Option<u64> {
    let deadline = Instant::now() + READY_GRACE;
    loop {
        // Registered before looking, so an announcement in between is seen.
        let agreed = private.agreed.notified();
        tokio::pin!(agreed);
        agreed.as_mut().enable();
        {
            let mut state = private.state();
            if let Some(session) = state.sessions.get_mut(from) {
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
    // The caller must get to read the refusal.
    session::close_quietly(conn.into_inner()).await;
}

/// Welcomes an admitted caller and starts the session.
pub async fn open_inbound(private: Arc<Private>, admitted: Admitted) {
    let Admitted { peer, id, mut conn } = admitted;
    let Some(me) = private.shared.status().user.clone() else {
        return;
    };
    let Some(commands) = session::attach(&private, &peer, id) else {
        return;
    };
    let welcome = PeerFrame::Welcome {
        version: PEER_VERSION,
        user: me,
    };
    if !matches!(timeout(HELLO_TIMEOUT, conn.send(welcome)).await, Ok(Ok(()))) {
        tracing::warn!("{peer}'s daemon did not take our welcome");
        // Agreed but never open: over for the server, the peer and the user.
        if private.state().end(&peer, Some(id)) {
            private.shared.note(Note::PrivateEnd(peer.clone()));
            let text = texts::private_connection_lost(&peer);
            private.shared.tell(Some(&peer), &text);
        }
        return;
    }
    private
        .shared
        .tell(Some(&peer), &texts::private_started(&peer));
    session::spawn(private, peer, id, conn, commands);
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
pub async fn dial(private: Arc<Private>, peer: String, id: u64, addr: String, token: Secret) {
    let outcome = match connect(&private, &peer, &addr, token).await {
        Ok(conn) => match session::attach(&private, &peer, id) {
            Some(commands) => {
                private
                    .shared
                    .tell(Some(&peer), &texts::private_started(&peer));
                session::spawn(Arc::clone(&private), peer.clone(), id, conn, commands);
                PrivateOutcome::Ready
            }
            None => {
                // Ended while we dialed (the server's private_ended).
                session::goodbye(conn).await;
                PrivateOutcome::Unreachable
            }
        },
        Err(e) => {
            tracing::warn!("cannot open the private session with {peer}: {e}");
            if private.state().end(&peer, Some(id)) {
                private.shared.note(Note::PrivateEnd(peer.clone()));
                let text = texts::private_unreachable(&peer);
                private.shared.tell(Some(&peer), &text);
            }
            PrivateOutcome::Unreachable
        }
    };
    if let Some(waiter) = private.state().waiters.remove(&peer) {
        let _ = waiter.send(outcome);
    }
}

async fn connect(
    private: &Private,
    peer: &str,
    addr: &str,
    token: Secret,
) -> Result<PeerConn, DialError> {
    let me = private
        .shared
        .status()
        .user
        .clone()
        .ok_or(DialError::Closed)?;
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
    use crate::private::state::Expected;
    use crate::state::Shared;
    use msg_local::config::Config;

    fn private() -> Arc<Private> {
        Private::new(Arc::new(Shared::new(
            Inbox::open_in_memory().unwrap(),
            Notifier::new(false),
            Config::default(),
        )))
    }

    fn expect(private: &Private, peer: &str, token: &str, valid_for: Duration) -> u64 {
        let expected = Expected {
            token: token.into(),
            until: Instant::now() + valid_for,
        };
        private.state().open(peer, Some(expected))
    }

    #[tokio::test]
    async fn a_token_is_taken_once_by_its_caller_before_it_expires() {
        let private = private();
        let id = expect(&private, "hans", "t0k3n", Duration::from_secs(60));
        // Wrong token, or right token from someone else: refused, and the
        // right one is not burnt.
        assert_eq!(take_token(&private, "hans", &"nope!".into()).await, None);
        assert_eq!(take_token(&private, "hans", &"t0k3".into()).await, None);
        assert_eq!(
            take_token(&private, "hans", &"t0k3n".into()).await,
            Some(id)
        );
        // Reused.
        assert_eq!(take_token(&private, "hans", &"t0k3n".into()).await, None);
        // Expired.
        expect(&private, "leia", "other", Duration::ZERO);
        assert_eq!(take_token(&private, "leia", &"other".into()).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_faster_than_the_servers_announcement_is_let_in() {
        let private = private();
        let caller = tokio::spawn({
            let private = Arc::clone(&private);
            async move { take_token(&private, "hans", &"t0k3n".into()).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let id = expect(&private, "hans", "t0k3n", Duration::from_secs(60));
        private.agreed.notify_waiters();
        assert_eq!(caller.await.unwrap(), Some(id));
        // Nobody announced: refused after the grace period.
        assert_eq!(take_token(&private, "yoda", &"t0k3n".into()).await, None);
    }

    #[test]
    fn token_comparison() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
        assert!(!same_token("", "a"));
    }
}

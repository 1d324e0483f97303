//! The callee's side of a private session's handshake: admitting a caller.
//!
//! The listener only hands us callers from the address the server brokered
//! (see `listener`). A caller must open with `hello` carrying the one-time
//! token the server gave us for it, within [`HANDSHAKE_DEADLINE`]; anything
//! else is refused, logged and closed, without disturbing the daemon. Once
//! through, the caller is welcomed and the session task runs.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use msg_proto::peer::{PEER_VERSION, PeerFrame, RefusedCode};
use msg_proto::{FrameError, JsonLines, Secret};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::codec::Framed;

use crate::private::session::{self, PeerConn};
use crate::private::state::Private;
use crate::texts;
use crate::upstream::Note;

/// A caller must be through (hello read, token checked) this fast; a
/// silent connection holds a handshake slot no longer.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(3);
/// How long sending a refusal or a welcome may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(3);

/// A caller let in: who, for which session, on which connection.
pub struct Admitted {
    pub peer: String,
    pub id: u64,
    pub conn: PeerConn,
}

/// A caller turned away: the refusal it gets to read (see [`Refused::send`]).
pub struct Refused {
    conn: PeerConn,
    code: RefusedCode,
    message: String,
}

impl Refused {
    fn new(conn: PeerConn, code: RefusedCode, message: impl Into<String>) -> Self {
        Self {
            conn,
            code,
            message: message.into(),
        }
    }

    /// Sends the refusal and closes so that the caller gets to read it.
    pub async fn send(self) {
        let Self {
            mut conn,
            code,
            message,
        } = self;
        let refused = PeerFrame::Refused { code, message };
        if !matches!(timeout(SEND_TIMEOUT, conn.send(refused)).await, Ok(Ok(()))) {
            return;
        }
        session::close_quietly(conn.into_inner()).await;
    }
}

/// Checks a caller's hello: the session it may join, or why not (`None`
/// when there is no one left to tell). The caller bounds the time.
pub async fn admit_caller(
    stream: TcpStream,
    ip: IpAddr,
    private: &Private,
) -> Result<Admitted, Option<Refused>> {
    let _ = stream.set_nodelay(true);
    let mut conn: PeerConn = Framed::new(stream, JsonLines::new());
    let (from, token) = match conn.next().await {
        None | Some(Err(_)) => {
            tracing::info!(%ip, "peer connection closed before its hello");
            return Err(None);
        }
        Some(Ok(Err(e))) => {
            let code = match e {
                FrameError::TooLong { .. } => RefusedCode::FrameTooLarge,
                _ => RefusedCode::InvalidCommand,
            };
            tracing::warn!(%ip, "peer connection refused: {e}");
            return Err(Some(Refused::new(conn, code, texts::INVALID_COMMAND)));
        }
        Some(Ok(Ok(PeerFrame::Hello {
            version,
            from,
            token,
        }))) => {
            if version != PEER_VERSION {
                tracing::warn!(%ip, version, "peer connection refused: version mismatch");
                let text = texts::peer_version_mismatch(version, PEER_VERSION);
                return Err(Some(Refused::new(conn, RefusedCode::VersionMismatch, text)));
            }
            (from, token)
        }
        Some(Ok(Ok(_))) => {
            tracing::warn!(%ip, "peer connection refused: no hello");
            let refused =
                Refused::new(conn, RefusedCode::HelloRequired, texts::PEER_HELLO_REQUIRED);
            return Err(Some(refused));
        }
    };
    let Some(id) = take_token(private, &from, &token, ip).await else {
        // Never the token itself: it could still be the valid one for
        // someone else's session.
        tracing::warn!(%ip, caller = ?from, "peer connection refused: wrong, used or expired token");
        let refused = Refused::new(conn, RefusedCode::BadToken, texts::PEER_BAD_TOKEN);
        return Err(Some(refused));
    };
    Ok(Admitted {
        peer: from,
        id,
        conn,
    })
}

/// Finds the session agreed with `from` whose token matches and whose
/// caller may call from `ip`, and consumes the token. Waits (within the
/// handshake deadline) for a session the server is still announcing.
async fn take_token(private: &Private, from: &str, token: &Secret, ip: IpAddr) -> Option<u64> {
    let deadline = Instant::now() + HANDSHAKE_DEADLINE;
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
                if !expected.caller.admits(ip)
                    || !same_token(expected.token.expose(), token.expose())
                {
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
    if !matches!(timeout(SEND_TIMEOUT, conn.send(welcome)).await, Ok(Ok(()))) {
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::inbox::Inbox;
    use crate::notifier::Notifier;
    use crate::private::state::{Caller, Expected};
    use crate::state::Shared;
    use msg_local::config::Config;
    use std::net::Ipv4Addr;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const ELSEWHERE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

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
            caller: Caller::From(LOCAL),
        };
        private.state().open(peer, Some(expected))
    }

    #[tokio::test]
    async fn a_token_is_taken_once_by_its_caller_before_it_expires() {
        let private = private();
        let id = expect(&private, "hans", "t0k3n", Duration::from_secs(60));
        // Wrong token, or right token from someone else: refused, and the
        // right one is not burnt.
        assert_eq!(
            take_token(&private, "hans", &"nope!".into(), LOCAL).await,
            None
        );
        assert_eq!(
            take_token(&private, "hans", &"t0k3".into(), LOCAL).await,
            None
        );
        // The right token from another address than the brokered one.
        assert_eq!(
            take_token(&private, "hans", &"t0k3n".into(), ELSEWHERE).await,
            None
        );
        assert_eq!(
            take_token(&private, "hans", &"t0k3n".into(), LOCAL).await,
            Some(id)
        );
        // Reused.
        assert_eq!(
            take_token(&private, "hans", &"t0k3n".into(), LOCAL).await,
            None
        );
        // Expired.
        expect(&private, "leia", "other", Duration::ZERO);
        assert_eq!(
            take_token(&private, "leia", &"other".into(), LOCAL).await,
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_faster_than_the_servers_announcement_is_let_in() {
        let private = private();
        let caller = tokio::spawn({
            let private = Arc::clone(&private);
            async move { take_token(&private, "hans", &"t0k3n".into(), LOCAL).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let id = expect(&private, "hans", "t0k3n", Duration::from_secs(60));
        private.agreed.notify_waiters();
        assert_eq!(caller.await.unwrap(), Some(id));
        // Nobody announced: refused after the grace period.
        assert_eq!(
            take_token(&private, "yoda", &"t0k3n".into(), LOCAL).await,
            None
        );
    }

    #[test]
    fn token_comparison() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
        assert!(!same_token("", "a"));
    }
}

//! The callee's side of a private session's handshake: admitting a caller.
//!
//! The listener only hands us callers from the address the server brokered
//! (see `listener`). Within [`HANDSHAKE_DEADLINE`] a caller must complete
//! the Noise handshake (see `noise`) with the static key the server gave
//! us for a session agreed with that address, and its first frame inside,
//! which opens only with that session's token, must be `hello`. A caller
//! that fails the handshake (not for our key, a key no session expects,
//! not the token) is closed without a word: nothing it could read can be
//! said to it. One that is through but says the wrong thing is refused
//! inside the channel. Either way nothing disturbs the daemon, and no
//! token, key or text is logged. Once admitted, the caller is welcomed and
//! the session task runs.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use msg_proto::FrameError;
use msg_proto::peer::{PEER_VERSION, PeerFrame, RefusedCode};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};

use crate::private::keys::{PublicKey, SecretKey};
use crate::private::noise;
use crate::private::record::RecordError;
use crate::private::session::{self, PeerConn};
use crate::private::state::Private;
use crate::texts;
use crate::upstream::Note;

/// A caller must be through (handshake done, hello read) this fast; a
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

/// Runs the handshake with a caller and checks its hello: the session it
/// may join, or why not (`None` when there is no one left to tell, or
/// nothing it could read). The caller bounds the time.
pub async fn admit_caller(
    stream: TcpStream,
    ip: IpAddr,
    private: &Private,
) -> Result<Admitted, Option<Refused>> {
    let _ = stream.set_nodelay(true);
    let responding = match noise::respond(stream, &private.identity).await {
        Ok(responding) => responding,
        Err(e) => {
            tracing::info!(%ip, "peer connection closed: {e}");
            return Err(None);
        }
    };
    let Some(found) = find_session(private, responding.caller(), ip).await else {
        tracing::warn!(%ip, "peer connection closed: no session agreed with this caller's key");
        return Err(None);
    };
    let peer = found.peer.as_str();
    let mut conn = match responding.finish(&found.psk).await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::info!(%ip, peer, "peer connection closed during the handshake: {e}");
            return Err(None);
        }
    };
    let (version, from) = match conn.next().await {
        None => {
            tracing::info!(%ip, peer, "peer connection closed before its hello");
            return Err(None);
        }
        Some(Err(RecordError::Decrypt)) => {
            tracing::warn!(%ip, peer, "peer connection closed: the caller does not hold the session's token");
            return Err(None);
        }
        Some(Err(e)) => {
            tracing::info!(%ip, peer, "peer connection closed before its hello: {e}");
            return Err(None);
        }
        Some(Ok(Err(e))) => {
            let code = match e {
                FrameError::TooLong { .. } => RefusedCode::FrameTooLarge,
                _ => RefusedCode::InvalidCommand,
            };
            tracing::warn!(%ip, peer, "peer connection refused: {e}");
            return Err(Some(Refused::new(conn, code, texts::INVALID_COMMAND)));
        }
        Some(Ok(Ok(PeerFrame::Hello { version, from }))) => (version, from),
        Some(Ok(Ok(_))) => {
            tracing::warn!(%ip, peer, "peer connection refused: no hello");
            let refused =
                Refused::new(conn, RefusedCode::HelloRequired, texts::PEER_HELLO_REQUIRED);
            return Err(Some(refused));
        }
    };
    if version != PEER_VERSION {
        tracing::warn!(%ip, peer, version, "peer connection refused: version mismatch");
        let text = texts::peer_version_mismatch(version, PEER_VERSION);
        return Err(Some(Refused::new(conn, RefusedCode::VersionMismatch, text)));
    }
    if from != found.peer {
        tracing::warn!(%ip, peer, claimed = ?from, "peer connection refused: another user's name");
        let refused = Refused::new(conn, RefusedCode::WrongUser, texts::PEER_WRONG_USER);
        return Err(Some(refused));
    }
    if !take(private, &found) {
        // Another connection of the same caller got in first, or the
        // session ended meanwhile.
        tracing::info!(%ip, peer, "peer connection closed: the session is no longer waiting");
        return Err(None);
    }
    Ok(Admitted {
        peer: found.peer,
        id: found.id,
        conn,
    })
}

/// The session a caller's key belongs to, and its token.
struct Found {
    peer: String,
    id: u64,
    psk: SecretKey,
}

/// Finds the session that waits for a caller with `key` from `ip`. Waits
/// (within the handshake deadline) for a session the server is still
/// announcing: it tells the asker first, whose call may beat it.
async fn find_session(private: &Private, key: &PublicKey, ip: IpAddr) -> Option<Found> {
    let deadline = Instant::now() + HANDSHAKE_DEADLINE;
    loop {
        // Registered before looking, so an announcement in between is seen.
        let agreed = private.agreed.notified();
        tokio::pin!(agreed);
        agreed.as_mut().enable();
        {
            let mut state = private.state();
            let waiting = state.sessions.iter_mut().find(|(_, session)| {
                session
                    .expected
                    .as_ref()
                    .is_some_and(|e| e.peer_key == *key)
            });
            if let Some((peer, session)) = waiting {
                let expected = session.expected.as_ref()?;
                if expected.until <= Instant::now() {
                    session.expected = None;
                    return None;
                }
                if !expected.caller.admits(ip) {
                    return None;
                }
                return Some(Found {
                    peer: peer.clone(),
                    id: session.id,
                    psk: expected.psk.clone(),
                });
            }
        }
        timeout_at(deadline, agreed).await.ok()?;
    }
}

/// Marks the session's caller as arrived: its key and token are used up.
/// False when it no longer waits (taken by another connection, ended).
fn take(private: &Private, found: &Found) -> bool {
    let mut state = private.state();
    match state.sessions.get_mut(&found.peer) {
        Some(session) if session.id == found.id && session.expected.is_some() => {
            session.expected = None;
            true
        }
        _ => false,
    }
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
    use crate::private::keys::Identity;
    use crate::private::noise::HandshakeError;
    use crate::private::state::{Caller, Expected};
    use crate::state::Shared;
    use msg_local::config::Config;
    use std::net::Ipv4Addr;
    use tokio::net::TcpListener;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const ELSEWHERE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

    fn private() -> Arc<Private> {
        Private::new(Arc::new(Shared::new(
            Inbox::open_in_memory().unwrap(),
            Notifier::new(false),
            Config::default(),
        )))
        .unwrap()
    }

    fn expect(private: &Private, peer: &str, key: &PublicKey, valid_for: Duration) -> u64 {
        let expected = Expected {
            peer_key: *key,
            psk: SecretKey::new([9; 32]),
            until: Instant::now() + valid_for,
            caller: Caller::From(LOCAL),
        };
        private.state().open(peer, Some(expected))
    }

    fn waiting(private: &Private, peer: &str) -> bool {
        private.state().sessions[peer].expected.is_some()
    }

    /// What the callee made of a call: the admitted peer, or the refusal
    /// code it sent (`None`: closed without a word).
    type Verdict = Result<String, Option<RefusedCode>>;

    /// A caller with key `me`, told `callee`'s key and holding `psk`, that
    /// sends `first` once through; returns the callee's verdict, and what
    /// the caller got: its handshake error or the callee's first frame.
    async fn call(
        private: &Arc<Private>,
        me: &Identity,
        psk: &SecretKey,
        first: PeerFrame,
    ) -> (Verdict, Result<Option<PeerFrame>, HandshakeError>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let callee = {
            let private = Arc::clone(private);
            async move {
                let (stream, _) = listener.accept().await.unwrap();
                let admitted =
                    timeout(HANDSHAKE_DEADLINE, admit_caller(stream, LOCAL, &private)).await;
                // As the listener does: past the deadline, closed.
                match admitted {
                    Ok(Ok(admitted)) => Ok(admitted.peer),
                    Ok(Err(Some(refused))) => {
                        let code = refused.code;
                        refused.send().await;
                        Err(Some(code))
                    }
                    Ok(Err(None)) | Err(_) => Err(None),
                }
            }
        };
        let callee_key = *private.identity.public();
        let caller = async {
            let stream = TcpStream::connect(addr).await.unwrap();
            let mut conn = noise::initiate(stream, me, &callee_key, psk).await?;
            conn.send(first).await?;
            Ok(match conn.next().await {
                Some(Ok(Ok(frame))) => Some(frame),
                _ => None,
            })
        };
        tokio::join!(callee, caller)
    }

    fn hello(version: u32, from: &str) -> PeerFrame {
        PeerFrame::Hello {
            version,
            from: from.into(),
        }
    }

    #[tokio::test]
    async fn the_brokered_caller_is_let_in_once_and_a_wrong_hello_is_refused() {
        let private = private();
        let hans = Identity::generate().unwrap();
        let token = SecretKey::new([9; 32]);
        expect(&private, "hans", hans.public(), Duration::from_secs(60));

        // The right key without the token: the caller cannot open the
        // answer, the callee says nothing, and the token is not burnt.
        let (verdict, caller) =
            call(&private, &hans, &SecretKey::new([8; 32]), hello(2, "hans")).await;
        assert_eq!(verdict, Err(None));
        assert!(
            matches!(caller, Err(HandshakeError::Unverified)),
            "{caller:?}"
        );
        assert!(waiting(&private, "hans"));

        // Through the handshake, but the wrong first frame: refused inside
        // the channel, still not burnt.
        for (first, code) in [
            (hello(1, "hans"), RefusedCode::VersionMismatch),
            (hello(2, "yoda"), RefusedCode::WrongUser),
            (PeerFrame::Ping, RefusedCode::HelloRequired),
        ] {
            let (verdict, caller) = call(&private, &hans, &token, first).await;
            assert_eq!(verdict, Err(Some(code)));
            let Ok(Some(PeerFrame::Refused { code: got, .. })) = caller else {
                panic!("{caller:?}");
            };
            assert_eq!(got, code);
            assert!(waiting(&private, "hans"));
        }

        let (verdict, _) = call(&private, &hans, &token, hello(2, "hans")).await;
        assert_eq!(verdict, Ok("hans".to_owned()));
        assert!(!waiting(&private, "hans"), "used up");
    }

    #[tokio::test]
    async fn a_caller_with_the_token_but_another_key_is_refused() {
        let private = private();
        let hans = Identity::generate().unwrap();
        expect(&private, "hans", hans.public(), Duration::from_secs(60));
        let impostor = Identity::generate().unwrap();
        // It knows the callee's key and the token, and claims to be hans.
        let (verdict, caller) = call(
            &private,
            &impostor,
            &SecretKey::new([9; 32]),
            hello(2, "hans"),
        )
        .await;
        assert_eq!(verdict, Err(None));
        assert!(
            matches!(caller, Err(HandshakeError::Record(RecordError::Closed))),
            "closed without an answer: {caller:?}"
        );
        assert!(waiting(&private, "hans"), "the real caller can still come");
    }

    #[tokio::test]
    async fn a_session_is_found_by_key_from_its_address_before_it_expires() {
        let private = private();
        let hans = Identity::generate().unwrap();
        let id = expect(&private, "hans", hans.public(), Duration::from_secs(60));
        assert!(
            find_session(&private, hans.public(), ELSEWHERE)
                .await
                .is_none()
        );
        let found = find_session(&private, hans.public(), LOCAL).await.unwrap();
        assert_eq!((found.peer.as_str(), found.id), ("hans", id));
        assert_eq!(found.psk, SecretKey::new([9; 32]));
        assert!(take(&private, &found));
        assert!(!take(&private, &found), "once");

        let leia = Identity::generate().unwrap();
        expect(&private, "leia", leia.public(), Duration::ZERO);
        assert!(find_session(&private, leia.public(), LOCAL).await.is_none());
        assert!(!waiting(&private, "leia"), "expired");
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_faster_than_the_servers_announcement_is_let_in() {
        let private = private();
        let hans = Identity::generate().unwrap();
        let caller = tokio::spawn({
            let private = Arc::clone(&private);
            let key = *hans.public();
            async move { find_session(&private, &key, LOCAL).await.map(|f| f.id) }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let id = expect(&private, "hans", hans.public(), Duration::from_secs(60));
        private.agreed.notify_waiters();
        assert_eq!(caller.await.unwrap(), Some(id));
        // Nobody announced this key: refused after the grace period.
        let yoda = Identity::generate().unwrap();
        assert!(find_session(&private, yoda.public(), LOCAL).await.is_none());
    }
}

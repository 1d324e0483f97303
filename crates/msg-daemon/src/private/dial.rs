//! The asker's side of a private session's handshake: dial the address
//! the server gave us, prove our key and the token and have the callee
//! prove the key the server gave for it (Noise, see `noise`), say `hello`
//! inside, wait for `welcome`, then run the session.
//!
//! The server tells the asker first; the callee only lets in callers it
//! was told about, so a call that beats the callee's announcement is
//! closed at once. Such a close (before any answer) is retried briefly.
//! An answer that does not prove the brokered key is not: whoever sent it
//! is not the peer, and nothing is said to it.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use msg_proto::peer::{PEER_VERSION, PeerFrame};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

use crate::private::handshake::HANDSHAKE_DEADLINE;
use crate::private::keys::Brokered;
use crate::private::noise::{self, HandshakeError};
use crate::private::record::RecordError;
use crate::private::session::{self, PeerConn};
use crate::private::state::{Private, PrivateOutcome};
use crate::texts;
use crate::upstream::Note;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call closed without an answer is tried again: the callee may
/// not have heard of the session yet.
const RETRY_FOR: Duration = Duration::from_secs(3);
const RETRY_PAUSE: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("the connection closed before an answer")]
    Closed,
    #[error("the answer did not prove the key the server gave for the peer, or the token")]
    Unverified,
    #[error("the connection closed after the handshake")]
    Dropped,
    #[error("refused: {0}")]
    Refused(String),
    #[error("unexpected answer")]
    Unexpected,
    #[error("logged out meanwhile")]
    LoggedOut,
}

/// The asker's side: dials `addr` for session `id` with `peer`, with the
/// key and token the server gave, and once welcomed runs the session.
/// Answers the waiting `msg private start` either way.
pub async fn dial(private: Arc<Private>, peer: String, id: u64, addr: String, brokered: Brokered) {
    let outcome = match connect_retrying(&private, &peer, &addr, &brokered).await {
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
            let (outcome, text) = match e {
                DialError::Unverified => {
                    (PrivateOutcome::Unverified, texts::private_unverified(&peer))
                }
                _ => (
                    PrivateOutcome::Unreachable,
                    texts::private_unreachable(&peer),
                ),
            };
            if private.state().end(&peer, Some(id)) {
                private.shared.note(Note::PrivateEnd(peer.clone()));
                private.shared.tell(Some(&peer), &text);
            }
            outcome
        }
    };
    if let Some(waiter) = private.state().waiters.remove(&peer) {
        let _ = waiter.send(outcome);
    }
}

/// [`connect`], again while the callee closes without a word.
async fn connect_retrying(
    private: &Private,
    peer: &str,
    addr: &str,
    brokered: &Brokered,
) -> Result<PeerConn, DialError> {
    let until = Instant::now() + RETRY_FOR;
    loop {
        match connect(private, peer, addr, brokered).await {
            Err(DialError::Closed) if Instant::now() + RETRY_PAUSE < until => {
                tracing::debug!("{peer}'s daemon closed the call; trying again");
                sleep(RETRY_PAUSE).await;
            }
            outcome => return outcome,
        }
    }
}

async fn connect(
    private: &Private,
    peer: &str,
    addr: &str,
    brokered: &Brokered,
) -> Result<PeerConn, DialError> {
    let me = private
        .shared
        .status()
        .user
        .clone()
        .ok_or(DialError::LoggedOut)?;
    let stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| DialError::Timeout)?
        .map_err(DialError::Connect)?;
    let _ = stream.set_nodelay(true);
    let exchange = async {
        let mut conn =
            noise::initiate(stream, &private.identity, &brokered.peer_key, &brokered.psk)
                .await
                .map_err(|e| match e {
                    // Closed (or reset) before an answer: not let in yet.
                    HandshakeError::Record(
                        RecordError::Closed | RecordError::Truncated | RecordError::Io(_),
                    ) => DialError::Closed,
                    // An answer that is not the brokered peer's, in any way.
                    _ => DialError::Unverified,
                })?;
        let hello = PeerFrame::Hello {
            version: PEER_VERSION,
            from: me,
        };
        conn.send(hello).await.map_err(|_| DialError::Dropped)?;
        match conn.next().await {
            Some(Ok(Ok(PeerFrame::Welcome { user, .. }))) if user == peer => Ok(conn),
            Some(Ok(Ok(PeerFrame::Refused { message, .. }))) => Err(DialError::Refused(message)),
            None | Some(Err(_)) => Err(DialError::Dropped),
            Some(Ok(_)) => Err(DialError::Unexpected),
        }
    };
    // The callee decides within its handshake deadline.
    timeout(HANDSHAKE_DEADLINE + Duration::from_secs(1), exchange)
        .await
        .map_err(|_| DialError::Timeout)?
}

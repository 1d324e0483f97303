//! The asker's side of a private session's handshake: dial the address
//! the server gave us, present the token, wait for `welcome`, then run the
//! session.
//!
//! The server tells the asker first; the callee only lets in callers it
//! was told about, so a call that beats the callee's announcement is
//! closed at once. Such a close (nothing said) is retried briefly.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use msg_proto::peer::{PEER_VERSION, PeerFrame};
use msg_proto::{JsonLines, Secret};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::codec::Framed;

use crate::private::handshake::HANDSHAKE_DEADLINE;
use crate::private::session::{self, PeerConn};
use crate::private::state::{Private, PrivateOutcome};
use crate::texts;
use crate::upstream::Note;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call closed without a word is tried again: the callee may
/// not have heard of the session yet.
const RETRY_FOR: Duration = Duration::from_secs(3);
const RETRY_PAUSE: Duration = Duration::from_millis(200);

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
    #[error("logged out meanwhile")]
    LoggedOut,
}

/// The asker's side: dials `addr` for session `id` with `peer`, presents
/// `token` and, once welcomed, runs the session. Answers the waiting
/// `msg private start` either way.
pub async fn dial(private: Arc<Private>, peer: String, id: u64, addr: String, token: Secret) {
    let outcome = match connect_retrying(&private, &peer, &addr, token).await {
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

/// [`connect`], again while the callee closes without a word.
async fn connect_retrying(
    private: &Private,
    peer: &str,
    addr: &str,
    token: Secret,
) -> Result<PeerConn, DialError> {
    let until = Instant::now() + RETRY_FOR;
    loop {
        match connect(private, peer, addr, token.clone()).await {
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
    token: Secret,
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
    // The callee decides within its handshake deadline.
    timeout(HANDSHAKE_DEADLINE + Duration::from_secs(1), exchange)
        .await
        .map_err(|_| DialError::Timeout)??;
    Ok(conn)
}

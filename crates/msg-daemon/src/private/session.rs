//! A running private session: one task per direct connection to a peer's
//! daemon, once the handshake is through.
//!
//! It stores what the peer sends (in the inbox, *then* acks), sends what our
//! user sends (and answers `msg private send` once the peer has acked), pings
//! so that a vanished peer is noticed, and on the end of the connection tells
//! the user and the server. Whoever ends a session on our side (stop, logout,
//! the server's `private_ended`) removes it from the state and tells the
//! user; that drops the task's command channel and the task says goodbye.
//!
//! Saying goodbye is `bye`, then a half-close, then reading until the peer
//! closes too (briefly, within bounds). Closing with unread input would
//! reset the connection, and a reset may destroy the `bye` before the peer
//! reads it; the peer would then report a lost connection instead of a stop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use msg_proto::control::ItemKind;
use msg_proto::peer::{PeerFrame, PeerMsgId};
use msg_proto::validate;
use msg_proto::{PING_EVERY, SILENCE_LIMIT, now_ms};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, interval_at, timeout};
use tokio_util::codec::Framed;

use crate::inbox::NewItem;
use crate::private::record::SecureLines;
use crate::private::state::{PeerCommand, Private};
use crate::state::Shared;
use crate::texts;
use crate::upstream::Note;

/// A peer connection once the handshake is through: frames in and out of
/// Noise records.
pub type PeerConn = Framed<TcpStream, SecureLines>;

/// A peer sending this many bad frames is broken or hostile: hang up.
const MAX_BAD_FRAMES: u32 = 10;
/// Private messages queued for one connection at most.
const COMMAND_QUEUE: usize = 16;
/// How long a goodbye waits for the peer to close its side, and how much of
/// its remaining input it reads (and discards) meanwhile.
const CLOSE_TIME: Duration = Duration::from_secs(2);
const CLOSE_READ_LIMIT: usize = 256 * 1024;

/// Installs the command channel of session `id` with `peer`, before the
/// session is announced, so that a `msg private send` right after it finds
/// the connection. `None` when the session ended in the meantime.
pub fn attach(private: &Private, peer: &str, id: u64) -> Option<mpsc::Receiver<PeerCommand>> {
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let mut state = private.state();
    let session = state.sessions.get_mut(peer).filter(|s| s.id == id)?;
    session.connection = Some(tx);
    Some(rx)
}

/// Runs session `id` with `peer` on `conn` until it ends.
pub fn spawn(
    private: Arc<Private>,
    peer: String,
    id: u64,
    conn: PeerConn,
    commands: mpsc::Receiver<PeerCommand>,
) {
    let tasks = Arc::clone(&private);
    tasks.spawn(async move {
        let end = run(&private.shared, &peer, conn, commands).await;
        let text = match end {
            End::Local => return,
            End::Remote => texts::private_stopped(&peer),
            End::Lost => {
                tracing::info!("the private connection with {peer} was lost");
                texts::private_connection_lost(&peer)
            }
        };
        if private.state().end(&peer, Some(id)) {
            // The server pairs us until told; it also tells the peer if it
            // is still there. Told before the user, so that whatever the
            // user does next reaches the server after it.
            private.shared.note(Note::PrivateEnd(peer.clone()));
            private.shared.tell(Some(&peer), &text);
        }
    });
}

enum End {
    /// Ended on our side (already told); we said goodbye.
    Local,
    /// The peer said bye.
    Remote,
    /// The connection broke or the peer stopped answering.
    Lost,
}

async fn run(
    shared: &Shared,
    peer: &str,
    mut conn: PeerConn,
    mut commands: mpsc::Receiver<PeerCommand>,
) -> End {
    let mut next_id: PeerMsgId = 0;
    let mut unacked: HashMap<PeerMsgId, oneshot::Sender<()>> = HashMap::new();
    let mut ping = interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    let mut last_heard = Instant::now();
    let mut bad_frames = 0;
    let end = loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => break End::Local,
            command = commands.recv() => match command {
                None => break End::Local,
                Some(PeerCommand::Send { text, reply }) => {
                    // Forget the sends whose caller gave up waiting, so that
                    // a peer that never acks cannot make this grow forever.
                    unacked.retain(|_, waiting| !waiting.is_closed());
                    next_id += 1;
                    unacked.insert(next_id, reply);
                    if conn.send(PeerFrame::Message { id: next_id, text }).await.is_err() {
                        break End::Lost;
                    }
                }
            },
            frame = conn.next() => match frame {
                None | Some(Err(_)) => break End::Lost,
                Some(Ok(Err(e))) => {
                    tracing::warn!("bad frame from {peer}'s daemon: {e}");
                    bad_frames += 1;
                    if bad_frames >= MAX_BAD_FRAMES {
                        break End::Lost;
                    }
                }
                Some(Ok(Ok(frame))) => {
                    last_heard = Instant::now();
                    match frame {
                        PeerFrame::Message { id, text } => {
                            if !receive(shared, peer, &text) {
                                // Unacked: the sender's `msg private send` fails.
                                continue;
                            }
                            if conn.send(PeerFrame::Ack { id }).await.is_err() {
                                break End::Lost;
                            }
                        }
                        PeerFrame::Ack { id } => {
                            if let Some(reply) = unacked.remove(&id) {
                                let _ = reply.send(());
                            }
                        }
                        PeerFrame::Ping => {
                            if conn.send(PeerFrame::Pong).await.is_err() {
                                break End::Lost;
                            }
                        }
                        PeerFrame::Pong => {}
                        PeerFrame::Bye => break End::Remote,
                        other => {
                            tracing::warn!("unexpected frame from {peer}'s daemon: {other:?}");
                            bad_frames += 1;
                            if bad_frames >= MAX_BAD_FRAMES {
                                break End::Lost;
                            }
                        }
                    }
                }
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    break End::Lost;
                }
                if conn.send(PeerFrame::Ping).await.is_err() {
                    break End::Lost;
                }
            }
        }
    };
    if let End::Local = end {
        goodbye(conn).await;
    }
    end
}

/// Ends a connection from our side: `bye`, then close without a reset.
/// Best effort: a peer that is gone learns it from the closed socket.
pub async fn goodbye(mut conn: PeerConn) {
    let said = timeout(CLOSE_TIME, conn.send(PeerFrame::Bye)).await;
    if matches!(said, Ok(Ok(()))) {
        close_quietly(conn.into_inner()).await;
    }
}

/// Half-closes (the peer reads everything we sent, then the end) and reads
/// until the peer closes as well, within bounds, so that no unread input
/// turns our close into a reset.
pub async fn close_quietly(mut stream: TcpStream) {
    let drain = async {
        if stream.shutdown().await.is_err() {
            return;
        }
        let mut buf = [0u8; 8192];
        let mut left = CLOSE_READ_LIMIT;
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = timeout(CLOSE_TIME, drain).await;
}

/// Stores a private message and notifies; false when it was refused or could
/// not be stored (then it is not acked).
fn receive(shared: &Shared, peer: &str, text: &str) -> bool {
    let text = match validate::message_text(text) {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!("refused a private message from {peer}: {e:?}");
            return false;
        }
    };
    let Some(account) = shared.status().user.clone() else {
        return false;
    };
    let item = NewItem {
        msg_id: None,
        client_id: None,
        kind: ItemKind::Private,
        from: Some(peer),
        text,
        at: now_ms(),
    };
    match shared.record(&account, &item) {
        Ok(_) => {
            shared.notifier.notify(&format!("{peer}(private)"), text);
            true
        }
        Err(e) => {
            tracing::error!("{e}; private message left unacknowledged");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Deadline for every wait in these tests.
    const DEADLINE: Duration = Duration::from_secs(10);

    /// Two ends of a real handshake over loopback TCP.
    async fn pair() -> (PeerConn, PeerConn) {
        use crate::private::keys::{Identity, SecretKey};
        use crate::private::noise;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (ours, theirs) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let psk = SecretKey::new([5; 32]);
        let dial = async {
            let stream = TcpStream::connect(listener.local_addr().unwrap()).await;
            noise::initiate(stream.unwrap(), &ours, theirs.public(), &psk).await
        };
        let answer = async {
            let stream = listener.accept().await.unwrap().0;
            let responding = noise::respond(stream, &theirs).await.unwrap();
            responding.finish(&psk).await
        };
        let (ours, theirs) = tokio::join!(dial, answer);
        (ours.unwrap(), theirs.unwrap())
    }

    #[tokio::test]
    async fn a_goodbye_is_bye_then_the_end_and_waits_for_the_peer() {
        let (ours, mut theirs) = pair().await;
        // Input we never read must not turn our close into a reset.
        theirs.send(PeerFrame::Ping).await.unwrap();
        let goodbye = tokio::spawn(goodbye(ours));
        let next = timeout(DEADLINE, theirs.next()).await.unwrap();
        assert!(matches!(next, Some(Ok(Ok(PeerFrame::Bye)))), "{next:?}");
        let next = timeout(DEADLINE, theirs.next()).await.unwrap();
        assert!(next.is_none(), "the end, not a reset: {next:?}");
        // Done once the peer has closed too.
        drop(theirs);
        timeout(DEADLINE, goodbye).await.unwrap().unwrap();
    }
}

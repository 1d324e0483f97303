//! A running private session: one task per direct connection to a peer's
//! daemon, once the handshake is through.
//!
//! It stores what the peer sends (in the inbox, *then* acks), sends what our
//! user sends (and answers `msg private send` once the peer has acked), pings
//! so that a vanished peer is noticed, and on the end of the connection tells
//! the user and the server. Whoever ends a session on our side (stop, logout,
//! the server's `private_ended`) removes it from the state and tells the
//! user; that drops the task's command channel and the task says `bye` and
//! closes.

use std::collections::HashMap;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use msg_proto::control::ItemKind;
use msg_proto::peer::{PeerFrame, PeerMsgId};
use msg_proto::validate;
use msg_proto::{JsonLines, PING_EVERY, SILENCE_LIMIT, now_ms};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, interval_at};
use tokio_util::codec::Framed;

use crate::inbox::NewItem;
use crate::private::state::{PeerCommand, Private};
use crate::state::Shared;
use crate::texts;
use crate::upstream::Note;

pub type PeerConn = Framed<TcpStream, JsonLines<PeerFrame, PeerFrame>>;

/// A peer sending this many bad frames is broken or hostile: hang up.
const MAX_BAD_FRAMES: u32 = 10;
/// Private messages queued for one connection at most.
const COMMAND_QUEUE: usize = 16;
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
            private.shared.tell(Some(&peer), &text);
            // The server pairs us until told; it also tells the peer if it
            // is still there.
            private.shared.note(Note::PrivateEnd(peer));
        }
    });
}

enum End {
    /// Ended on our side (already told); say bye.
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

/// Ends a connection from our side with `bye`. Best effort: a peer that is
/// gone learns it from the closed socket.
async fn goodbye(mut conn: PeerConn) {
    let _ = conn.send(PeerFrame::Bye).await;
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

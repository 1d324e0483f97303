//! What the daemon's parts ask of the server and tell it, as the server link
//! takes it: a bounded queue of [`Outgoing`] items that the link task drains.
//!
//! Control requests and private sessions hold an [`Upstream`] (or, for tasks
//! that must not keep the link alive, a [`WeakUpstream`]) and never the link
//! itself, so the link can depend on them and not the other way round.

use msg_proto::Refusal;
use msg_proto::control::codes;
use msg_proto::server::ServerFrame;
use tokio::sync::{mpsc, oneshot};

use crate::texts;

/// Queued items at most; a full queue makes requests wait and drops notes.
const QUEUE: usize = 64;

/// A request relayed to the server; the link adds the request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerRequest {
    Send { to: String, text: String },
    Broadcast { text: String },
    Who,
    WhoSince { secs: u64 },
    Block { user: String },
    Unblock { user: String },
    PrivateRequest { user: String },
    PrivateAccept { user: String },
    PrivateDecline { user: String },
    PrivateEnd { user: String },
}

/// Something to tell the server without waiting for an answer; dropped when
/// offline (the server's session, and its private pairs, are gone then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The user sent a private message (no content).
    Activity,
    /// The private session with this user ended on our side.
    PrivateEnd(String),
}

/// The server's reply to a request; an `error` frame is a [`Refusal`].
pub type Answer = Result<ServerFrame, Refusal>;

/// One item for the link task.
#[derive(Debug)]
pub enum Outgoing {
    Request {
        request: ServerRequest,
        reply: oneshot::Sender<Answer>,
    },
    Note(Note),
}

/// The sending side of the queue to the server link.
#[derive(Clone)]
pub struct Upstream(mpsc::Sender<Outgoing>);

impl Upstream {
    /// A new queue: the handle for the daemon, the receiver for the link.
    pub fn channel() -> (Self, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Self(tx), rx)
    }

    /// Relays a request and waits for the server's answer.
    pub async fn request(&self, request: ServerRequest) -> Answer {
        let gone = || Refusal::new(codes::INTERNAL, texts::SHUTTING_DOWN);
        let (reply, answer) = oneshot::channel();
        self.0
            .send(Outgoing::Request { request, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    pub fn note(&self, note: Note) {
        if self.0.try_send(Outgoing::Note(note)).is_err() {
            tracing::debug!("link busy or gone; a note to the server was dropped");
        }
    }

    pub fn downgrade(&self) -> WeakUpstream {
        WeakUpstream(self.0.downgrade())
    }
}

/// A handle that does not keep the queue open, for the shared state: notes
/// from tasks that run on after the link is gone are simply dropped.
#[derive(Clone)]
pub struct WeakUpstream(mpsc::WeakSender<Outgoing>);

impl WeakUpstream {
    pub fn note(&self, note: Note) {
        if let Some(tx) = self.0.upgrade() {
            Upstream(tx).note(note);
        }
    }
}

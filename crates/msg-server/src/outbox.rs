//! The queue of encoded frames waiting to be written to one connection.

use bytes::Bytes;
use msg_proto::server::ServerFrame;
use tokio::sync::mpsc;

/// Result of queueing a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// The connection is too far behind: the caller should disconnect it.
    Full,
    /// The connection is gone.
    Closed,
}

/// Cheap to clone: the hub keeps one per session, and in-flight messages keep
/// their sender's, to deliver the reply when the recipient acknowledges.
#[derive(Clone, Debug)]
pub struct Outbox(mpsc::Sender<Bytes>);

impl Outbox {
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self(tx), rx)
    }

    /// Queues an already encoded line without waiting.
    pub fn push_line(&self, line: Bytes) -> Push {
        match self.0.try_send(line) {
            Ok(()) => Push::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => Push::Full,
            Err(mpsc::error::TrySendError::Closed(_)) => Push::Closed,
        }
    }

    /// Encodes and queues a frame without waiting.
    pub fn push(&self, frame: &ServerFrame) -> Push {
        match msg_proto::encode_line(frame) {
            Ok(line) => self.push_line(line),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a frame");
                Push::Closed
            }
        }
    }

    /// Queues a frame, waiting for room: for a connection's own replies, so a
    /// client that pipelines requests is slowed down rather than dropped.
    pub async fn send(&self, frame: &ServerFrame) -> bool {
        match msg_proto::encode_line(frame) {
            Ok(line) => self.0.send(line).await.is_ok(),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a frame");
                false
            }
        }
    }
}

//! The queue of encoded frames waiting to be written to one connection.

use std::sync::Arc;

use bytes::Bytes;
use msg_proto::server::ServerFrame;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Result of queueing a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// The connection is too far behind: the caller should disconnect it.
    Full,
    /// The connection is gone.
    Closed,
}

/// Cheap to clone: the hub keeps one per session.
///
/// Capacity is split in two: `events` slots for frames pushed by others
/// (messages, broadcasts, presence), which a slow reader can fill and so get
/// itself disconnected; and `replies` slots reserved, one per outstanding
/// request, for replies that come later (`sent`). A reserved reply can never
/// be dropped, and a client with too many outstanding requests waits.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::Sender<Bytes>,
    outstanding: Arc<Semaphore>,
}

/// A guaranteed place in a connection's queue for one future reply.
#[derive(Debug)]
pub struct ReplySlot {
    permit: mpsc::OwnedPermit<Bytes>,
    _outstanding: OwnedSemaphorePermit,
}

impl ReplySlot {
    pub fn fill(self, frame: &ServerFrame) {
        match msg_proto::encode_line(frame) {
            Ok(line) => {
                self.permit.send(line);
            }
            Err(e) => tracing::error!(error = %e, "cannot encode a frame"),
        }
    }
}

impl Outbox {
    pub fn new(events: usize, replies: usize) -> (Self, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(events.max(1) + replies.max(1));
        let outstanding = Arc::new(Semaphore::new(replies.max(1)));
        (Self { tx, outstanding }, rx)
    }

    /// Queues an already encoded line without waiting.
    pub fn push_line(&self, line: Bytes) -> Push {
        match self.tx.try_send(line) {
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
            Ok(line) => self.tx.send(line).await.is_ok(),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a frame");
                false
            }
        }
    }

    /// Reserves room for a reply that will be sent later, waiting while the
    /// connection has too many requests outstanding. `None` once closed.
    pub async fn reserve_reply(&self) -> Option<ReplySlot> {
        let outstanding = self.outstanding.clone().acquire_owned().await.ok()?;
        let permit = self.tx.clone().reserve_owned().await.ok()?;
        Some(ReplySlot {
            permit,
            _outstanding: outstanding,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reserved_replies_survive_a_full_event_queue() {
        let (out, mut rx) = Outbox::new(2, 1);
        let slot = out.reserve_reply().await.expect("open");
        assert_eq!(out.push(&ServerFrame::Pong), Push::Queued);
        assert_eq!(out.push(&ServerFrame::Pong), Push::Queued);
        assert_eq!(out.push(&ServerFrame::Pong), Push::Full);
        slot.fill(&ServerFrame::ok(1, None));
        let mut lines = Vec::new();
        while let Ok(line) = rx.try_recv() {
            lines.push(line);
        }
        assert_eq!(lines.len(), 3);
        assert!(std::str::from_utf8(&lines[2]).unwrap().contains("\"ok\""));
    }

    #[tokio::test]
    async fn outstanding_replies_are_bounded() {
        let (out, _rx) = Outbox::new(8, 1);
        let first = out.reserve_reply().await.expect("open");
        let second =
            tokio::time::timeout(std::time::Duration::from_millis(50), out.reserve_reply()).await;
        assert!(second.is_err(), "a second reservation waits for the first");
        drop(first);
        assert!(out.reserve_reply().await.is_some());
    }
}

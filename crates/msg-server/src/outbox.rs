//! The queue of encoded frames waiting to be written to one connection.
//!
//! A plain `VecDeque` behind a mutex, with a semaphore counting free places,
//! rather than a tokio mpsc channel: the channel keeps up to four blocks of
//! slots (about 1 KiB each) for the life of the connection once a burst
//! allocated them, which made it the largest cost of an idle session. This
//! queue frees its storage whenever the writer empties it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use msg_proto::server::ServerFrame;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// Result of queueing a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// The connection is too far behind: the caller should disconnect it.
    Full,
    /// The connection is gone.
    Closed,
}

#[derive(Debug)]
struct Shared {
    lines: Mutex<VecDeque<Bytes>>,
    /// Free places in `lines` (events and replies alike); closed with the
    /// receiver.
    room: Semaphore,
    /// Wakes the writer.
    ready: Notify,
    /// Live `Outbox` handles; the receiver ends once none is left.
    senders: AtomicUsize,
}

impl Shared {
    fn lines(&self) -> std::sync::MutexGuard<'_, VecDeque<Bytes>> {
        // Nothing panics while holding it; if it did, the queue is intact.
        self.lines.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a line whose place was already taken from `room`.
    fn enqueue(&self, line: Bytes) {
        self.lines().push_back(line);
        self.ready.notify_one();
    }
}

/// Cheap to clone: the hub keeps one per session.
///
/// Capacity is split in two: `events` slots for frames pushed by others
/// (messages, broadcasts, presence), which a slow reader can fill and so get
/// itself disconnected; and `replies` slots reserved, one per outstanding
/// request, for replies that come later (`sent`). A reserved reply can never
/// be dropped, and a client with too many outstanding requests waits.
#[derive(Debug)]
pub struct Outbox {
    shared: Arc<Shared>,
    outstanding: Arc<Semaphore>,
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: self.shared.clone(),
            outstanding: self.outstanding.clone(),
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.ready.notify_one();
        }
    }
}

/// A guaranteed place in a connection's queue for one future reply.
#[derive(Debug)]
pub struct ReplySlot {
    /// Holds the place taken from `room`; `None` once filled.
    out: Option<Outbox>,
    _outstanding: OwnedSemaphorePermit,
}

impl ReplySlot {
    pub fn fill(mut self, frame: &ServerFrame) {
        match msg_proto::encode_line(frame) {
            Ok(line) => {
                if let Some(out) = self.out.take() {
                    out.shared.enqueue(line);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode a frame"),
        }
    }
}

impl Drop for ReplySlot {
    fn drop(&mut self) {
        // Unfilled: give the place back.
        if let Some(out) = &self.out {
            out.shared.room.add_permits(1);
        }
    }
}

/// The writer's end of the queue.
#[derive(Debug)]
pub struct Receiver {
    shared: Arc<Shared>,
}

/// Nothing is queued right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Empty;

impl Receiver {
    /// The next line; `None` once the queue is empty and no `Outbox` is left.
    pub async fn recv(&mut self) -> Option<Bytes> {
        loop {
            if let Ok(line) = self.try_recv() {
                return Some(line);
            }
            if self.shared.senders.load(Ordering::Acquire) == 0 {
                return None;
            }
            // notify_one keeps a permit when nobody waits, so a line queued
            // between the check and here is not missed.
            self.shared.ready.notified().await;
        }
    }

    pub fn try_recv(&mut self) -> Result<Bytes, Empty> {
        let line = self.shared.lines().pop_front().ok_or(Empty)?;
        self.shared.room.add_permits(1);
        Ok(line)
    }

    pub fn is_empty(&self) -> bool {
        self.shared.lines().is_empty()
    }

    /// Frees the queue's storage if it is empty (the session went quiet).
    pub fn release_idle(&mut self) {
        let mut lines = self.shared.lines();
        if lines.is_empty() && lines.capacity() > 0 {
            *lines = VecDeque::new();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Senders see `Closed` from now on; waiting ones wake up.
        self.shared.room.close();
        self.shared.lines().clear();
    }
}

impl Outbox {
    pub fn new(events: usize, replies: usize) -> (Self, Receiver) {
        let shared = Arc::new(Shared {
            lines: Mutex::new(VecDeque::new()),
            room: Semaphore::new(events.max(1) + replies.max(1)),
            ready: Notify::new(),
            senders: AtomicUsize::new(1),
        });
        let outstanding = Arc::new(Semaphore::new(replies.max(1)));
        (
            Self {
                shared: shared.clone(),
                outstanding,
            },
            Receiver { shared },
        )
    }

    /// Queues an already encoded line without waiting.
    pub fn push_line(&self, line: Bytes) -> Push {
        match self.shared.room.try_acquire() {
            Ok(permit) => {
                permit.forget();
                self.shared.enqueue(line);
                Push::Queued
            }
            Err(TryAcquireError::NoPermits) => Push::Full,
            Err(TryAcquireError::Closed) => Push::Closed,
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
            Ok(line) => match self.shared.room.acquire().await {
                Ok(permit) => {
                    permit.forget();
                    self.shared.enqueue(line);
                    true
                }
                Err(_) => false,
            },
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
        self.shared.room.acquire().await.ok()?.forget();
        Some(ReplySlot {
            out: Some(self.clone()),
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

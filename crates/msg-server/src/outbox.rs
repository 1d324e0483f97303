//! The queue of encoded frames waiting to be written to one connection.
//!
//! One small shared allocation per connection: a `VecDeque` of lines behind
//! a mutex, a count of lines not yet written, flags, a wake-up for the
//! connection task and the count of reply slots left for its `send`s. The
//! connection task takes the whole queue at once when it writes (a swap), so
//! an idle session keeps no queue storage at all.
//!
//! Frames come from two kinds of producer. Events pushed by others
//! (messages, broadcasts, presence) are refused once `capacity` events wait,
//! or once the queue would hold more than `budget` bytes: the client is not
//! keeping up and is disconnected (`kicked`). Replies are never refused: the
//! connection bounds its own by not reading more requests while its queue
//! is long (in lines or bytes), and deferred `sent` replies are bounded by
//! the reply slots.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::task::AtomicWaker;
use msg_proto::server::ServerFrame;
use std::task::{Context, Poll};

/// Result of queueing an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// The connection is too far behind; it has been told to disconnect.
    Full,
    /// The connection is gone.
    Closed,
}

/// What a line is, for the queue's accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// One of the connection's own replies.
    Reply,
    /// Pushed by others: counts against the capacity.
    Event,
    /// Presence notices read from the shared log by the writer: never in
    /// the queue, so not counted at all.
    Presence,
}

/// One encoded frame waiting to be written.
#[derive(Debug)]
pub struct Line {
    pub bytes: Bytes,
    pub kind: LineKind,
    /// The presence log's end when the line was queued: the notices before
    /// it are written before the line, the later ones after it.
    pub mark: u64,
}

#[derive(Debug)]
struct Shared {
    lines: Mutex<VecDeque<Line>>,
    /// Lines queued or taken by the connection and not yet written.
    queued: AtomicUsize,
    /// The events among them.
    events: AtomicUsize,
    /// Bytes of the lines not yet written.
    bytes: AtomicUsize,
    /// Events are refused once this many wait.
    capacity: u32,
    /// Events are refused past this many bytes waiting.
    budget: u32,
    max_outstanding: u32,
    /// The client could not keep up; the connection should end.
    kicked: AtomicBool,
    /// The account's device tokens were revoked; the session should end.
    revoked: AtomicBool,
    /// This node lost the user's lease (cluster mode); the session should
    /// end, for the client to log in again, perhaps on another node.
    lease_lost: AtomicBool,
    /// Messages for the user were stored by another node while the
    /// session was live here (cluster mode); the connection should read
    /// the offline queue again.
    mail: AtomicBool,
    /// The connection has ended; nothing more is queued.
    closed: AtomicBool,
    /// The connection task's waker, and whether it was woken since it last
    /// looked: lines queued, kicked, a slot freed, presence notices to read.
    /// (A `Notify` would put its 56-byte waiter in every idle session's
    /// task; the waker lives here instead.)
    waker: AtomicWaker,
    woken: AtomicBool,
    /// The presence log's end (see [`Line::mark`]).
    presence_end: Arc<AtomicU64>,
    /// The next presence notice this session's writer will read: the hub
    /// forgets the notices every session has read.
    presence_cursor: AtomicU64,
    /// Free slots for `sent` replies owed to this client.
    reply_slots: AtomicUsize,
}

impl Shared {
    /// Wakes the connection task, or has its next look find the wake-up.
    fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn lines(&self) -> std::sync::MutexGuard<'_, VecDeque<Line>> {
        // Nothing panics while holding it; if it did, the queue is intact.
        self.lines.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a line; events are bounded by `capacity`. `wake`: whether the
    /// connection task needs waking (not when it queues a line itself).
    fn enqueue(&self, bytes: Bytes, event: bool, wake: bool) -> Push {
        {
            let mut lines = self.lines();
            if self.closed.load(Ordering::Acquire) {
                return Push::Closed;
            }
            let len = bytes.len();
            if event {
                let over_budget = self.bytes.load(Ordering::Acquire) + len > self.budget as usize;
                if self.events.load(Ordering::Acquire) >= self.capacity as usize || over_budget {
                    drop(lines);
                    self.kicked.store(true, Ordering::Release);
                    self.wake();
                    return Push::Full;
                }
                self.events.fetch_add(1, Ordering::AcqRel);
            }
            let kind = if event {
                LineKind::Event
            } else {
                LineKind::Reply
            };
            let mark = self.presence_end.load(Ordering::Acquire);
            lines.push_back(Line { bytes, kind, mark });
            self.queued.fetch_add(1, Ordering::AcqRel);
            self.bytes.fetch_add(len, Ordering::AcqRel);
        }
        if wake {
            self.wake();
        }
        Push::Queued
    }
}

/// Limits are kept as `u32`: every session carries three of them.
fn small(limit: usize) -> u32 {
    u32::try_from(limit).unwrap_or(u32::MAX)
}

fn encoded(frame: &ServerFrame) -> Option<Bytes> {
    msg_proto::encode_line(frame)
        .inspect_err(|e| tracing::error!(error = %e, "cannot encode a frame"))
        .ok()
}

/// Cheap to clone: the hub keeps one per session.
#[derive(Debug, Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

/// A guaranteed place for one future `sent` reply: the connection reserves
/// it before handing a `send` to the hub, which fills it when the message is
/// delivered or stored. Dropping it unfilled gives the place back.
#[derive(Debug)]
pub struct ReplySlot {
    out: Outbox,
}

impl ReplySlot {
    pub fn fill(self, frame: &ServerFrame) {
        if let Some(line) = encoded(frame) {
            self.out.shared.enqueue(line, false, true);
        }
    }
}

impl Drop for ReplySlot {
    fn drop(&mut self) {
        let shared = &self.out.shared;
        shared.reply_slots.fetch_add(1, Ordering::AcqRel);
        // The connection may be holding a `send` for want of this slot, or
        // waiting for its last replies before it closes.
        shared.wake();
    }
}

impl Outbox {
    /// `capacity`: lines that may wait before an event counts as overflow;
    /// `budget`: bytes that may wait before an event counts as overflow;
    /// `max_outstanding`: `send`s that may await their reply at once;
    /// `presence_end`: the presence log's end, to mark each line with.
    pub fn new(
        capacity: usize,
        budget: usize,
        max_outstanding: usize,
        presence_end: Arc<AtomicU64>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                lines: Mutex::new(VecDeque::new()),
                queued: AtomicUsize::new(0),
                events: AtomicUsize::new(0),
                bytes: AtomicUsize::new(0),
                capacity: small(capacity.max(1)),
                budget: small(budget),
                max_outstanding: small(max_outstanding.max(1)),
                kicked: AtomicBool::new(false),
                revoked: AtomicBool::new(false),
                lease_lost: AtomicBool::new(false),
                mail: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                waker: AtomicWaker::new(),
                woken: AtomicBool::new(false),
                presence_end,
                presence_cursor: AtomicU64::new(0),
                reply_slots: AtomicUsize::new(small(max_outstanding.max(1)) as usize),
            }),
        }
    }

    /// Queues an event from another session, disconnecting this one if its
    /// queue is full.
    pub fn push_line(&self, line: Bytes) -> Push {
        self.shared.enqueue(line, true, true)
    }

    /// Encodes and queues an event.
    pub fn push(&self, frame: &ServerFrame) -> Push {
        match encoded(frame) {
            Some(line) => self.push_line(line),
            None => Push::Closed,
        }
    }

    /// Queues one of the connection's own replies, from the connection
    /// task itself (which writes before it next waits, so it is not woken);
    /// never refused.
    pub fn reply(&self, frame: &ServerFrame) {
        if let Some(line) = encoded(frame) {
            self.shared.enqueue(line, false, false);
        }
    }

    /// A place for a later reply, if the client has fewer than the maximum
    /// of `send`s outstanding.
    pub fn try_reserve_reply(&self) -> Option<ReplySlot> {
        self.shared
            .reply_slots
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
                free.checked_sub(1)
            })
            .ok()?;
        Some(ReplySlot { out: self.clone() })
    }

    /// No deferred reply is owed to the client.
    pub fn all_replies_in(&self) -> bool {
        self.shared.reply_slots.load(Ordering::Acquire) == self.shared.max_outstanding as usize
    }

    /// Whether [`Outbox::try_reserve_reply`] would succeed now.
    pub fn has_reply_room(&self) -> bool {
        self.shared.reply_slots.load(Ordering::Acquire) > 0
    }

    /// Lines queued and not yet written.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.shared.bytes.load(Ordering::Acquire)
    }

    pub fn capacity(&self) -> usize {
        self.shared.capacity as usize
    }

    pub fn budget(&self) -> usize {
        self.shared.budget as usize
    }

    /// Disconnects the session as a slow consumer (it missed presence
    /// notices).
    pub fn kick(&self) {
        self.shared.kicked.store(true, Ordering::Release);
        self.shared.wake();
    }

    pub fn presence_cursor(&self) -> u64 {
        self.shared.presence_cursor.load(Ordering::Acquire)
    }

    pub fn set_presence_cursor(&self, cursor: u64) {
        self.shared.presence_cursor.store(cursor, Ordering::Release);
    }

    /// Wakes the connection task (presence notices to read).
    pub fn nudge(&self) {
        self.shared.wake();
    }

    pub fn is_kicked(&self) -> bool {
        self.shared.kicked.load(Ordering::Acquire)
    }

    /// Ends the session: its account's device tokens were revoked.
    pub fn revoke(&self) {
        self.shared.revoked.store(true, Ordering::Release);
        self.shared.wake();
    }

    pub fn is_revoked(&self) -> bool {
        self.shared.revoked.load(Ordering::Acquire)
    }

    /// Ends the session: this node no longer holds the user's lease.
    pub fn lease_lost(&self) {
        self.shared.lease_lost.store(true, Ordering::Release);
        self.shared.wake();
    }

    pub fn is_lease_lost(&self) -> bool {
        self.shared.lease_lost.load(Ordering::Acquire)
    }

    /// Has the connection read the offline queue again: another node
    /// stored messages for the user.
    pub fn mail_stored(&self) {
        self.shared.mail.store(true, Ordering::Release);
        self.shared.wake();
    }

    /// Whether messages were stored since the last call.
    pub fn take_mail(&self) -> bool {
        self.shared.mail.swap(false, Ordering::AcqRel)
    }

    /// Ready when something was queued, the connection was kicked or a
    /// reply slot came free since the last call (a wake-up is kept if nobody
    /// was waiting).
    pub fn poll_woken(&self, cx: &mut Context<'_>) -> Poll<()> {
        let shared = &self.shared;
        // Registered before the flag is read, so a wake-up in between is
        // not lost.
        shared.waker.register(cx.waker());
        if shared.woken.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Moves every queued line to the back of `unsent`. Swapping when
    /// `unsent` is empty hands the queue's storage to the writer, which frees
    /// it once written.
    pub fn take_into(&self, unsent: &mut VecDeque<Line>) {
        let mut lines = self.shared.lines();
        if unsent.is_empty() {
            std::mem::swap(&mut *lines, unsent);
        } else {
            unsent.extend(lines.drain(..));
        }
    }

    /// `bytes` bytes of the lines taken with [`Outbox::take_into`] were
    /// written, completing `lines` lines, `events` of them events.
    pub fn written(&self, lines: usize, events: usize, bytes: usize) {
        self.shared.queued.fetch_sub(lines, Ordering::AcqRel);
        self.shared.events.fetch_sub(events, Ordering::AcqRel);
        self.shared.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// The connection has ended: drop what is queued and refuse the rest.
    pub fn close(&self) {
        let mut lines = self.shared.lines();
        self.shared.closed.store(true, Ordering::Release);
        *lines = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(out: &Outbox) -> Vec<String> {
        let mut unsent = VecDeque::new();
        out.take_into(&mut unsent);
        let events = unsent
            .iter()
            .filter(|line| line.kind == LineKind::Event)
            .count();
        let bytes = unsent.iter().map(|line| line.bytes.len()).sum();
        out.written(unsent.len(), events, bytes);
        unsent
            .into_iter()
            .map(|line| String::from_utf8_lossy(&line.bytes).into_owned())
            .collect()
    }

    #[test]
    fn events_overflow_kicks_but_replies_always_queue() {
        let out = Outbox::new(2, 1 << 20, 1, Default::default());
        let slot = out.try_reserve_reply().expect("a place");
        assert_eq!(out.push(&ServerFrame::Pong), Push::Queued);
        assert_eq!(out.push(&ServerFrame::Pong), Push::Queued);
        assert!(!out.is_kicked());
        assert_eq!(out.push(&ServerFrame::Pong), Push::Full);
        assert!(out.is_kicked());
        out.reply(&ServerFrame::Pong);
        slot.fill(&ServerFrame::ok(1, None));
        let lines = drain(&out);
        assert_eq!(lines.len(), 4);
        assert!(lines[3].contains("\"ok\""), "{lines:?}");
        assert_eq!(out.queued(), 0);
    }

    #[test]
    fn events_past_the_byte_budget_kick_and_writing_makes_room() {
        let out = Outbox::new(100, 64, 1, Default::default());
        let line = Bytes::from(vec![b'x'; 30]);
        assert_eq!(out.push_line(line.clone()), Push::Queued);
        assert_eq!(out.push_line(line.clone()), Push::Queued);
        assert_eq!(out.queued_bytes(), 60);
        // Replies count, but are never refused.
        out.reply(&ServerFrame::Pong);
        assert_eq!(out.push_line(line.clone()), Push::Full);
        assert!(out.is_kicked());
        drain(&out);
        assert_eq!(out.queued_bytes(), 0);
    }

    #[test]
    fn outstanding_replies_are_bounded() {
        let out = Outbox::new(8, 1 << 20, 1, Default::default());
        let first = out.try_reserve_reply().expect("a place");
        assert!(out.try_reserve_reply().is_none(), "one at a time");
        assert!(!out.has_reply_room());
        drop(first);
        assert!(out.has_reply_room());
        assert!(out.try_reserve_reply().is_some());
    }

    #[test]
    fn a_closed_outbox_refuses_and_frees() {
        let out = Outbox::new(8, 1 << 20, 1, Default::default());
        assert_eq!(out.push(&ServerFrame::Pong), Push::Queued);
        out.close();
        assert_eq!(out.push(&ServerFrame::Pong), Push::Closed);
        assert!(drain(&out).is_empty());
    }

    #[tokio::test]
    async fn a_push_wakes_the_connection() {
        let out = Outbox::new(8, 1 << 20, 1, Default::default());
        let waiting = tokio::spawn({
            let out = out.clone();
            async move { std::future::poll_fn(|cx| out.poll_woken(cx)).await }
        });
        out.push(&ServerFrame::Pong);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken in time")
            .expect("task");
    }
}

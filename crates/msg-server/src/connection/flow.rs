//! Flow control of one connection: the frames held behind a `send` that
//! waits for a reply slot (or behind the offline queue) and their budget,
//! the frame-rate limiter, and the rules for when the next frame may be
//! taken from the socket. Whatever is not taken stays in the kernel's
//! buffers, which is how a client is slowed (TCP back-pressure).

use std::collections::VecDeque;
use std::time::Duration;

use crate::connection::clock::Moment;
use msg_proto::server::{ClientFrame, SendRequest};

use crate::connection::Connection;
use crate::wire::Decoded;

/// Frames (by approximate size) read and held while a `send` waits for a
/// reply slot, before reading pauses. Reading on lets the acks a client
/// wrote after its sends through: they may be what completes the sends of
/// the user it is talking to, whose acks complete ours.
pub(super) const HELD_BUDGET: usize = 64 * 1024;
/// Accounting overhead of one held frame.
const HELD_FRAME_COST: usize = 64;

/// Frames read after a `send` that found no reply slot (the send first), or
/// while the offline queue is delivered, in order, each with what it counts
/// against [`HELD_BUDGET`]. Acks are never held.
#[derive(Default)]
pub(super) struct Held {
    pub frames: VecDeque<(Decoded, usize)>,
    pub bytes: usize,
}

impl Held {
    /// `line_len`: the bytes the frame took on the wire.
    pub fn push_back(&mut self, item: Decoded, line_len: usize) {
        let cost = HELD_FRAME_COST + line_len;
        self.bytes += cost;
        self.frames.push_back((item, cost));
    }

    pub fn push_front(&mut self, item: Decoded, cost: usize) {
        self.bytes += cost;
        self.frames.push_front((item, cost));
    }

    pub fn pop_front(&mut self) -> Option<(Decoded, usize)> {
        let (item, cost) = self.frames.pop_front()?;
        self.bytes -= cost;
        Some((item, cost))
    }
}

/// A token bucket over frames: bursts up to one second's worth, then the
/// reader slows to the allowed rate.
pub(super) struct RateLimiter {
    per_sec: f64,
    tokens: f64,
    last: Moment,
}

impl RateLimiter {
    pub fn new(per_sec: u32) -> Self {
        Self {
            per_sec: f64::from(per_sec),
            tokens: f64::from(per_sec),
            last: Moment::now(),
        }
    }

    /// Takes a token; returns how long to pause when the bucket is empty.
    pub fn take(&mut self) -> Option<Duration> {
        if self.per_sec <= 0.0 {
            return None;
        }
        let now = Moment::now();
        let refill = self.last.until(now).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + refill).min(self.per_sec) - 1.0;
        self.last = now;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.per_sec))
    }
}

impl Connection {
    /// Own replies (and the offline queue) may fill half the queue, in lines
    /// and in bytes; the rest is room for events.
    pub(super) fn high_water(&self) -> usize {
        (self.out.capacity() / 2).max(1)
    }

    /// Whether the queue is below its high-water marks, in lines and bytes.
    pub(super) fn has_room(&self) -> bool {
        self.out.queued() < self.high_water() && self.out.queued_bytes() < self.out.budget() / 2
    }

    /// Whether held frames can be handled: a reply slot is free and the
    /// queue has room.
    pub(super) fn replay_due(&self) -> bool {
        self.held.is_some() && self.drain.is_none() && self.out.has_reply_room() && self.has_room()
    }

    /// Whether to take the next frame: not while paused by the frame rate,
    /// by too many frames held behind a waiting `send`, or by too many of
    /// the client's own replies unwritten (in lines or bytes: a few large
    /// `who` replies must not pin megabytes).
    pub(super) fn may_take_frames(&self) -> bool {
        self.held
            .as_ref()
            .is_none_or(|held| held.bytes < HELD_BUDGET)
            && self.resume_reading_at.is_none()
            && self.has_room()
    }

    /// Counts a frame against the rate; past it, reading pauses for a while.
    pub(super) fn count_frame(&mut self, now: Moment) {
        if let Some(wait) = self.rate.take() {
            self.resume_reading_at = Some(now.plus(wait));
        }
    }

    /// Holds a frame behind those already held (a waiting `send` or the
    /// offline queue).
    pub(super) fn hold(&mut self, item: Decoded, line_len: usize) {
        self.held
            .get_or_insert_with(Box::default)
            .push_back(item, line_len);
    }

    /// Holds a `send` that found no reply slot, whole, in front of the
    /// frames read after it; it goes first when a slot comes free.
    pub(super) fn hold_send(&mut self, request: SendRequest) {
        // About its length on the wire.
        let cost = HELD_FRAME_COST
            + request.to.len()
            + request.text.len()
            + request.client_id.as_ref().map_or(0, String::len);
        self.held
            .get_or_insert_with(Box::default)
            .push_front(Ok(ClientFrame::Send(request)), cost);
    }
}

#[cfg(test)]
mod tests {
    use msg_proto::FrameError;

    use super::*;

    #[test]
    fn held_frames_count_their_size_on_the_wire() {
        let mut held = Held::default();
        held.push_back(Ok(ClientFrame::Ping), 16);
        assert_eq!(held.bytes, HELD_FRAME_COST + 16);
        // A big frame of any kind (not only a send) uses up the budget.
        held.push_back(Err(FrameError::InvalidUtf8), 60_000);
        held.push_back(Ok(ClientFrame::Activity), 10_000);
        assert!(held.bytes >= HELD_BUDGET);
        held.pop_front();
        held.pop_front();
        held.pop_front();
        assert_eq!(held.bytes, 0);
    }

    #[test]
    fn rate_limiter_allows_a_burst_then_paces() {
        let mut limiter = RateLimiter::new(10);
        for _ in 0..10 {
            assert_eq!(limiter.take(), None);
        }
        let wait = limiter.take().expect("the eleventh frame waits");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert_eq!(RateLimiter::new(0).take(), None);
    }
}

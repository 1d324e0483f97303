//! How long msgd waits before it logs in again after losing the server:
//! exponential from a quick first retry up to a cap, with ±50 % jitter, so
//! that the thousands of daemons a server restart drops at once come back
//! spread over a second rather than in one instant (msg-bench `reconnect`
//! measures it). The delay only starts afresh after a session that lasted:
//! a server that drops us right after every login must not see a login
//! every half second.

use std::time::Duration;

/// The first retry comes quickly: most drops are a restart or a blip.
pub const FIRST: Duration = Duration::from_millis(500);
pub const MAX: Duration = Duration::from_secs(30);
/// A session that lived this long resets the delay.
pub const STABLE: Duration = Duration::from_secs(30);
/// Jitter: ± this share of the delay.
const JITTER: f64 = 0.5;

pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub fn new() -> Self {
        Self { next: FIRST }
    }

    /// The next delay (jittered); the one after doubles, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(MAX);
        base.mul_f64(1.0 + JITTER * (2.0 * unit_random() - 1.0))
    }

    /// After a session that lived for `lived`: back to the first delay only
    /// if it was [`STABLE`].
    pub fn session_ended(&mut self, lived: Duration) {
        if lived >= STABLE {
            self.next = FIRST;
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// The wait a server asked for (`retry_after`, seconds), plus a little
/// jitter so that we come after the block and not all at once.
pub fn after_server_asked(secs: u64) -> Duration {
    // The server's bound on durations is a year; more is hostile.
    let secs = secs.min(366 * 24 * 3600);
    Duration::from_secs(secs) + Duration::from_millis(200).mul_f64(1.0 + 4.0 * unit_random())
}

/// Uniform in [0, 1), from the operating system's generator.
fn unit_random() -> f64 {
    let bits = u64::from_str_radix(&msg_proto::random_hex(8), 16).unwrap_or(0);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(d: Duration, base: Duration) -> bool {
        d >= base.mul_f64(1.0 - JITTER) && d <= base.mul_f64(1.0 + JITTER)
    }

    #[test]
    fn doubles_from_a_quick_start_up_to_the_cap_with_jitter() {
        let mut backoff = Backoff::new();
        let mut base = FIRST;
        let mut delays = Vec::new();
        for _ in 0..12 {
            let d = backoff.next_delay();
            assert!(within(d, base), "{d:?} is not {base:?} ±50 %");
            delays.push(d);
            base = (base * 2).min(MAX);
        }
        assert!(delays[0] <= Duration::from_millis(750));
        assert!(within(*delays.last().unwrap(), MAX));
        // Jitter: not all the capped delays are the same.
        let capped = &delays[delays.len() - 3..];
        assert!(capped.windows(2).any(|w| w[0] != w[1]), "{capped:?}");
    }

    #[test]
    fn only_a_session_that_lasted_resets_it() {
        let mut backoff = Backoff::new();
        for _ in 0..5 {
            backoff.next_delay();
        }
        backoff.session_ended(Duration::from_secs(2));
        assert!(backoff.next_delay() >= FIRST * 16);
        backoff.session_ended(STABLE);
        assert!(within(backoff.next_delay(), FIRST));
    }

    #[test]
    fn a_servers_retry_after_is_honoured_plus_a_little() {
        for _ in 0..20 {
            let d = after_server_asked(45);
            assert!(
                d > Duration::from_secs(45) && d < Duration::from_secs(46),
                "{d:?}"
            );
        }
        assert!(after_server_asked(u64::MAX) < Duration::from_secs(367 * 24 * 3600));
    }
}

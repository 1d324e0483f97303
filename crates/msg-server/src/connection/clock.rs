//! Moments in a connection's life as milliseconds since the server's
//! first connection: 8 bytes where a tokio `Instant` takes 16. Every idle
//! session keeps five of them, in a task whose size steps by 128 bytes
//! (see BENCHMARKS.md, "Where an idle session's bytes go").

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Moment(u64);

impl Moment {
    pub fn now() -> Self {
        Self::at(Instant::now())
    }

    /// `at`, to the millisecond (earlier than the epoch: the epoch).
    pub fn at(at: Instant) -> Self {
        let since = at.saturating_duration_since(epoch()).as_millis();
        Self(u64::try_from(since).unwrap_or(u64::MAX))
    }

    /// `after` this moment, as a deadline for tokio's timer.
    pub fn plus(self, after: Duration) -> Instant {
        epoch() + Duration::from_millis(self.0) + after
    }

    /// Time from this moment to `later` (zero if it is not later).
    pub fn until(self, later: Moment) -> Duration {
        Duration::from_millis(later.0.saturating_sub(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_keep_their_order_and_their_millisecond() {
        // The epoch starts with the first moment asked for.
        Moment::now();
        let start = Instant::now();
        let early = Moment::at(start);
        let late = Moment::at(start + Duration::from_millis(1500));
        assert!(early < late);
        assert_eq!(early.until(late), Duration::from_millis(1500));
        assert_eq!(late.until(early), Duration::ZERO);
        let deadline = early.plus(Duration::from_secs(10));
        let exact = start + Duration::from_secs(10);
        assert!(deadline <= exact && exact - deadline < Duration::from_millis(1));
    }
}

//! The 100-byte message text the bench sends: a sequence number and a send
//! timestamp the receiver reads back, padded to size; and latency summaries.

use std::time::Instant;

/// Size of every benchmark message text, in bytes.
pub const TEXT_LEN: usize = 100;

/// Nanoseconds on one clock shared by every task of a run.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn new() -> Self {
        Self(Instant::now())
    }

    pub fn ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.0).as_nanos() as u64
    }

    pub fn now_ns(&self) -> u64 {
        self.ns(Instant::now())
    }
}

/// `SEQ TIMESTAMP xxxx…`, exactly [`TEXT_LEN`] bytes.
pub fn text(seq: u64, sent_ns: u64) -> String {
    let mut s = format!("{seq:010} {sent_ns:020} ");
    while s.len() < TEXT_LEN {
        s.push('x');
    }
    s
}

/// The sequence number and timestamp at the start of a bench text.
pub fn parse(text: &[u8]) -> Option<(u64, u64)> {
    let digits = |b: &[u8]| -> Option<u64> {
        b.iter().try_fold(0u64, |n, &c| {
            c.is_ascii_digit()
                .then(|| n.wrapping_mul(10).wrapping_add(u64::from(c - b'0')))
        })
    };
    Some((digits(text.get(0..10)?)?, digits(text.get(11..31)?)?))
}

/// p50, p99 and p99.9 of latencies in nanoseconds, as microseconds.
pub fn percentiles(samples: &mut [u64]) -> Option<[f64; 3]> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q) as usize).min(samples.len() - 1);
        samples[i] as f64 / 1000.0
    };
    Some([at(0.50), at(0.99), at(0.999)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        let t = text(42, 123_456_789);
        assert_eq!(t.len(), TEXT_LEN);
        assert_eq!(parse(t.as_bytes()), Some((42, 123_456_789)));
        assert_eq!(parse(b"hello"), None);
    }

    #[test]
    fn percentiles_of_a_range() {
        let mut v: Vec<u64> = (1..=1000).map(|n| n * 1000).collect();
        assert_eq!(percentiles(&mut v), Some([501.0, 991.0, 1000.0]));
        assert_eq!(percentiles(&mut []), None);
    }
}

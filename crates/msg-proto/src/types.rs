//! The small types every msg protocol uses, defined once: ids, times,
//! secrets and the random tokens behind them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Chosen by the client, echoed by the reply to that request.
pub type RequestId = u64;

pub use crate::msg_id::MsgId;

/// Milliseconds since the Unix epoch, UTC.
pub type Timestamp = u64;

/// The wall clock as the protocols carry it: milliseconds since the Unix
/// epoch (0 if the clock is before 1970).
pub fn now_ms() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How often a client pings a quiet connection (server link and peer link).
pub const PING_EVERY: Duration = Duration::from_secs(15);

/// A connection silent this long is dead: three pings went unanswered, or a
/// vanished host sent no FIN. The server closes such a connection; clients
/// reconnect rather than wait for TCP to notice.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(45);

/// A password or token on the wire. Its `Debug` output is redacted so that
/// logging a frame can never leak it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// `bytes` random bytes from the operating system's generator, as lowercase
/// hex: unguessable tokens and idempotency keys.
pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    use std::fmt::Write;
    let mut raw = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    raw.iter()
        .fold(String::with_capacity(bytes * 2), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_hex_is_hex_of_the_asked_length_and_differs() {
        let a = random_hex(16);
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(a, random_hex(16));
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        assert_eq!(format!("{:?}", Secret::from("falcon")), "Secret(***)");
    }

    #[test]
    fn the_clock_is_after_2020() {
        assert!(now_ms() > 1_577_836_800_000);
    }
}

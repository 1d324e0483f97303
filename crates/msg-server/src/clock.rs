//! Wall-clock time as the protocol carries it.

use std::time::{SystemTime, UNIX_EPOCH};

use msg_proto::server::Timestamp;

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Timestamp)
        .unwrap_or(0)
}

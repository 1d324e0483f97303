//! The server's message ids: 128 bits that no state of the server's
//! database can make repeat, carried on the wire as a string.
//!
//! A server draws 64 random bits at every start (never stored) and counts
//! its messages in the other 64: a database restored from a backup, lost or
//! replaced cannot bring an earlier run's ids back, as the boot counter
//! kept in the database once did. On the wire an id is 32 lowercase hex
//! digits (JSON numbers above 2^53 are unsafe in many languages). The first
//! digit is always one of `a`–`f`, so the string never reads as a number:
//! SQLite's column affinity, spreadsheets and loosely typed languages turn
//! digit-only strings into numbers and lose digits.
//!
//! Ids a server gave out before (a 64-bit integer) keep their value, written
//! in decimal (`"4294967296"`); the two forms never collide.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length of a message id's string form (the legacy decimal form is shorter).
pub const MSG_ID_LEN: usize = 32;

/// Identifies one direct message; unique across server restarts and
/// databases, so a client can de-duplicate a message delivered twice (e.g.
/// after a lost ack). Copy, and written without allocating.
///
/// Two `u64` halves rather than a `u128`: a `u128` is 16-byte aligned, which
/// would pad every frame and the connection task that holds one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgId {
    /// The run's random half; 0 for a legacy id.
    high: u64,
    /// The run's counter, or a legacy id's value.
    low: u64,
}

/// A string that is not a message id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a message id (32 lowercase hex digits, the first a-f)")]
pub struct InvalidMsgId;

impl MsgId {
    /// The `counter`th id of the run whose random half is `prefix`. The
    /// prefix's top digit is forced into `a`–`f` (62.6 random bits remain).
    pub const fn new(prefix: u64, counter: u64) -> Self {
        let top = 0xa + ((prefix >> 60) % 6);
        Self {
            high: (prefix & 0x0fff_ffff_ffff_ffff) | (top << 60),
            low: counter,
        }
    }

    /// A random half for the ids of one server run, from the operating
    /// system's generator.
    pub fn random_prefix() -> u64 {
        use rand::RngCore;
        rand::rngs::OsRng.next_u64()
    }

    /// An id from before ids had 128 bits (its value is kept).
    pub const fn legacy(id: u64) -> Self {
        Self { high: 0, low: id }
    }

    /// Whether this is an id from before ids had 128 bits.
    pub const fn is_legacy(self) -> bool {
        self.high == 0
    }

    /// The id's string form, written into `buf`: no allocation.
    pub fn encode(self, buf: &mut [u8; MSG_ID_LEN]) -> &str {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let len = if self.is_legacy() {
            let mut value = self.low;
            let mut digits = [0u8; 20];
            let mut n = 0;
            loop {
                digits[n] = b'0' + (value % 10) as u8;
                n += 1;
                value /= 10;
                if value == 0 {
                    break;
                }
            }
            for (slot, digit) in buf.iter_mut().zip(digits[..n].iter().rev()) {
                *slot = *digit;
            }
            n
        } else {
            let (high, low) = buf.split_at_mut(MSG_ID_LEN / 2);
            for (half, value) in [(high, self.high), (low, self.low)] {
                for (i, slot) in half.iter_mut().enumerate() {
                    *slot = HEX[((value >> (60 - 4 * i)) & 0xf) as usize];
                }
            }
            MSG_ID_LEN
        };
        // Only ASCII digits and letters were written.
        std::str::from_utf8(&buf[..len]).unwrap_or_default()
    }
}

impl FromStr for MsgId {
    type Err = InvalidMsgId;

    /// Only the canonical forms: 32 lowercase hex digits starting with
    /// `a`–`f`, or a legacy decimal without leading zeros. One id, one
    /// string, so clients may compare ids as strings.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() == MSG_ID_LEN && matches!(bytes[0], b'a'..=b'f') {
            let half = |digits: &[u8]| {
                digits.iter().try_fold(0u64, |value, &b| {
                    let digit = match b {
                        b'0'..=b'9' => b - b'0',
                        b'a'..=b'f' => b - b'a' + 10,
                        _ => return Err(InvalidMsgId),
                    };
                    Ok((value << 4) | u64::from(digit))
                })
            };
            let (high, low) = bytes.split_at(MSG_ID_LEN / 2);
            return Ok(Self {
                high: half(high)?,
                low: half(low)?,
            });
        }
        let canonical =
            matches!(bytes, [b'1'..=b'9', rest @ ..] if rest.iter().all(u8::is_ascii_digit));
        if canonical && let Ok(value) = s.parse::<u64>() {
            return Ok(Self::legacy(value));
        }
        Err(InvalidMsgId)
    }
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.encode(&mut [0; MSG_ID_LEN]))
    }
}

impl fmt::Debug for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MsgId({self})")
    }
}

impl From<u64> for MsgId {
    /// A legacy id (tests and old records).
    fn from(id: u64) -> Self {
        Self::legacy(id)
    }
}

impl Serialize for MsgId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.encode(&mut [0; MSG_ID_LEN]))
    }
}

impl<'de> Deserialize<'de> for MsgId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = MsgId;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a message id string")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<MsgId, E> {
                s.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_32_hex_digits_starting_with_a_letter_and_parse_back() {
        for prefix in [
            0,
            1,
            u64::MAX,
            0x5555_5555_5555_5555,
            MsgId::random_prefix(),
        ] {
            for counter in [0, 1, 0xabc, u64::MAX] {
                let id = MsgId::new(prefix, counter);
                let text = id.to_string();
                assert_eq!(text.len(), MSG_ID_LEN, "{text}");
                assert!(matches!(text.as_bytes()[0], b'a'..=b'f'), "{text}");
                assert!(
                    text.bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                );
                assert!(!id.is_legacy());
                assert_eq!(text.parse::<MsgId>(), Ok(id));
            }
        }
        assert_ne!(MsgId::new(1, 7), MsgId::new(2, 7));
        assert_ne!(MsgId::new(1, 7), MsgId::new(1, 8));
    }

    #[test]
    fn legacy_ids_keep_their_decimal_value_and_never_equal_new_ones() {
        let old = MsgId::legacy(4_294_967_296);
        assert_eq!(old.to_string(), "4294967296");
        assert_eq!("4294967296".parse::<MsgId>(), Ok(old));
        assert_eq!(MsgId::legacy(u64::MAX).to_string(), u64::MAX.to_string());
        assert!(old.is_legacy());
        assert_ne!(MsgId::new(0, 4_294_967_296), old);
    }

    #[test]
    fn only_canonical_strings_parse() {
        for bad in [
            "",
            "0",
            "007",
            "-1",
            "18446744073709551616",
            "0123456789abcdef0123456789abcdef",
            "A123456789abcdef0123456789abcdef",
            "a123456789abcdef0123456789abcdeF",
            "a123456789abcdef0123456789abcde",
            "a123456789abcdef0123456789abcdefa",
            "g123456789abcdef0123456789abcdef",
            "1e5",
        ] {
            assert_eq!(bad.parse::<MsgId>(), Err(InvalidMsgId), "{bad:?}");
        }
    }

    #[test]
    fn the_wire_form_is_a_string() {
        let id = MsgId::new(0xfeed, 42);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<MsgId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<MsgId>("42").is_err(), "no numbers");
    }
}

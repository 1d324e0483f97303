//! The peer protocol: what two users' daemons exchange in a private session.
//!
//! The server brokers a session (its `private_ready`): both daemons get the
//! same one-time token and each the other's static public key. The asker dials the callee's peer port and runs the Noise
//! handshake [`NOISE_PARAMS`] as initiator, with the callee's key as the
//! known responder key and the token's 32 bytes as the pre-shared key; the
//! callee learns the caller's key from the first message and takes the
//! token of the session agreed with that key. Nothing is sent in the clear
//! after that: every [`PeerFrame`] travels as NDJSON inside Noise transport
//! messages, each a record of a 2-byte big-endian length and at most
//! [`MAX_RECORD_LEN`] bytes of ciphertext.
//!
//! Inside, the caller opens with [`PeerFrame::Hello`]; the callee answers
//! [`PeerFrame::Welcome`] or [`PeerFrame::Refused`] (then closes). After the
//! welcome both sides are equal: each may send `message` (answered by `ack`
//! once stored), `ping` (answered by `pong`) and `bye`. Lines have the same
//! 64 KiB limit as everywhere ([`crate::JsonLines`]). `docs/PROTOCOL.md`
//! ("Peer protocol") is the reference for other implementations.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Version of the peer protocol, sent in `hello` and `welcome`. Version 1
/// was cleartext NDJSON with the token in `hello`; 2 runs inside Noise.
pub const PEER_VERSION: u32 = 2;

/// The Noise protocol of the handshake and the transport.
pub const NOISE_PARAMS: &str = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";

/// Length of a static public key and of a token, in bytes (64 hex digits).
pub const KEY_LEN: usize = 32;

/// Largest record, length prefix excluded: Noise's message limit, which
/// the 2-byte length can express.
pub const MAX_RECORD_LEN: usize = 65_535;

/// What sealing adds to a transport record (the ChaChaPoly tag).
pub const TAG_LEN: usize = 16;

/// Largest plaintext in one transport record.
pub const MAX_RECORD_PLAINTEXT: usize = MAX_RECORD_LEN - TAG_LEN;

/// Largest handshake record. Both handshake messages carry empty payloads
/// (96 and 48 bytes); a caller cannot make the callee buffer more than this
/// before it has proved anything.
pub const MAX_HANDSHAKE_LEN: usize = 256;

/// Reads a key or a token: exactly 64 hex digits (either case).
pub fn decode_key(hex: &str) -> Option<[u8; KEY_LEN]> {
    let hex = hex.as_bytes();
    if hex.len() != 2 * KEY_LEN {
        return None;
    }
    let mut key = [0u8; KEY_LEN];
    for (byte, pair) in key.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some(key)
}

/// A key as it goes on the wire: 64 lowercase hex digits.
pub fn encode_key(key: &[u8; KEY_LEN]) -> String {
    use std::fmt::Write;
    key.iter()
        .fold(String::with_capacity(2 * KEY_LEN), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// A static public key as a client advertises it at login (`peer_key`): 64
/// hex digits on the wire, refused at parse time when malformed. Boxed so
/// that a `login` frame stays no larger than a `send`: the server keeps room
/// for a decoded frame in every connection, idle ones included.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerKey(Box<[u8; KEY_LEN]>);

impl PeerKey {
    pub fn new(key: [u8; KEY_LEN]) -> Self {
        Self(Box::new(key))
    }

    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        encode_key(&self.0)
    }
}

/// Public: shown in full.
impl std::fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerKey({})", self.to_hex())
    }
}

impl Serialize for PeerKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for PeerKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let hex = String::deserialize(deserializer)?;
        decode_key(&hex)
            .map(Self::new)
            .ok_or_else(|| serde::de::Error::custom("a key is 64 hex digits"))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Numbers a side gives its own messages in one session, echoed by `ack`.
pub type PeerMsgId = u64;

/// Frames both daemons send on a peer connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PeerFrame {
    /// The caller's first frame inside the secure channel: its version and
    /// who it is. The token is not in it: it was the handshake's key.
    Hello {
        version: u32,
        from: String,
    },
    /// The callee accepted the caller; the session is open.
    Welcome {
        version: u32,
        user: String,
    },
    /// The callee refused the connection; it closes next.
    Refused {
        code: RefusedCode,
        message: String,
    },
    /// A private message. The receiver stores it, then sends `ack`. No
    /// timestamp: the receiver stamps it with its own clock.
    Message {
        id: PeerMsgId,
        text: String,
    },
    /// Message `id` is stored on the receiver's side.
    Ack {
        id: PeerMsgId,
    },
    /// Keep-alive; answered with `pong`.
    Ping,
    Pong,
    /// The sender ends the session; it closes next.
    Bye,
}

/// Why a callee refused a peer connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusedCode {
    /// The first frame was not `hello`.
    HelloRequired,
    /// The caller speaks another peer protocol version.
    VersionMismatch,
    /// `from` is not the user whose key completed the handshake.
    WrongUser,
    /// The frame was not valid JSON, UTF-8 or a known frame.
    InvalidCommand,
    /// A line over the frame limit.
    FrameTooLarge,
    #[serde(other)]
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(frame: PeerFrame, wire: serde_json::Value) {
        assert_eq!(serde_json::to_value(&frame).unwrap(), wire);
        let back: PeerFrame = serde_json::from_value(wire).unwrap();
        assert_eq!(back, frame);
    }

    #[test]
    fn wire_forms() {
        round_trip(
            PeerFrame::Hello {
                version: 2,
                from: "hans".into(),
            },
            json!({"type": "hello", "version": 2, "from": "hans"}),
        );
        round_trip(
            PeerFrame::Welcome {
                version: 1,
                user: "luke".into(),
            },
            json!({"type": "welcome", "version": 1, "user": "luke"}),
        );
        round_trip(
            PeerFrame::Refused {
                code: RefusedCode::WrongUser,
                message: "no".into(),
            },
            json!({"type": "refused", "code": "wrong_user", "message": "no"}),
        );
        round_trip(
            PeerFrame::Message {
                id: 3,
                text: "psst".into(),
            },
            json!({"type": "message", "id": 3, "text": "psst"}),
        );
        round_trip(PeerFrame::Ack { id: 3 }, json!({"type": "ack", "id": 3}));
        round_trip(PeerFrame::Ping, json!({"type": "ping"}));
        round_trip(PeerFrame::Pong, json!({"type": "pong"}));
        round_trip(PeerFrame::Bye, json!({"type": "bye"}));
    }

    #[test]
    fn keys_are_64_hex_digits() {
        let key: [u8; KEY_LEN] = std::array::from_fn(|i| (i * 9) as u8);
        let hex = encode_key(&key);
        assert_eq!(hex.len(), 64);
        assert_eq!(&hex[..6], "000912");
        assert_eq!(decode_key(&hex), Some(key));
        assert_eq!(decode_key(&hex.to_uppercase()), Some(key));
        for bad in [
            "",
            "00",
            &hex[..63],
            &format!("{hex}0"),
            &format!("{}g", &hex[..63]),
        ] {
            assert_eq!(decode_key(bad), None, "{bad:?}");
        }
        // Multi-byte characters never make a digit, nor a panic.
        assert_eq!(decode_key(&"é".repeat(32)), None);
    }

    #[test]
    fn a_peer_key_is_hex_on_the_wire_and_nothing_else_parses() {
        let key = PeerKey::new([0xab; KEY_LEN]);
        let wire = serde_json::to_value(&key).unwrap();
        assert_eq!(wire, json!("ab".repeat(32)));
        assert_eq!(serde_json::from_value::<PeerKey>(wire).unwrap(), key);
        let upper = json!("AB".repeat(32));
        assert_eq!(serde_json::from_value::<PeerKey>(upper).unwrap(), key);
        for bad in [json!("ab"), json!(3), json!("zz".repeat(32)), json!(null)] {
            assert!(serde_json::from_value::<PeerKey>(bad).is_err());
        }
        assert_eq!(std::mem::size_of::<Option<PeerKey>>(), 8);
    }

    #[test]
    fn the_limits_add_up() {
        assert_eq!(MAX_RECORD_LEN, u16::MAX as usize);
        assert_eq!(MAX_RECORD_PLAINTEXT + TAG_LEN, MAX_RECORD_LEN);
    }

    #[test]
    fn unknown_refusal_codes_are_tolerated() {
        let f: PeerFrame =
            serde_json::from_value(json!({"type": "refused", "code": "later", "message": "x"}))
                .unwrap();
        assert!(matches!(
            f,
            PeerFrame::Refused {
                code: RefusedCode::Unknown,
                ..
            }
        ));
    }
}

//! The peer protocol: frames between two users' daemons in a private session.
//!
//! The server brokers a session (see [`crate::server::ServerFrame::PrivateReady`])
//! and hands both daemons the same one-time token; the asker dials the
//! callee's peer port and opens with [`PeerFrame::Hello`] carrying that token.
//! The callee answers [`PeerFrame::Welcome`] or [`PeerFrame::Refused`] (then
//! closes). After the welcome both sides are equal: each may send `message`
//! (answered by `ack` once stored), `ping` (answered by `pong`) and `bye`.
//! Framing is the same NDJSON with the same 64 KiB limit as everywhere
//! ([`crate::JsonLines`]). `docs/PROTOCOL.md` ("Peer protocol") is the
//! reference for other implementations.

use serde::{Deserialize, Serialize};

use crate::Secret;

/// Version of the peer protocol, sent in `hello` and `welcome`.
pub const PEER_VERSION: u32 = 1;

/// Numbers a side gives its own messages in one session, echoed by `ack`.
pub type PeerMsgId = u64;

/// Frames both daemons send on a peer connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PeerFrame {
    /// The caller's first frame: who it is and the token the server gave it.
    Hello {
        version: u32,
        from: String,
        token: Secret,
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
    /// No valid, unused, unexpired token for this caller.
    BadToken,
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
                version: 1,
                from: "hans".into(),
                token: "ab12".into(),
            },
            json!({"type": "hello", "version": 1, "from": "hans", "token": "ab12"}),
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
                code: RefusedCode::BadToken,
                message: "no".into(),
            },
            json!({"type": "refused", "code": "bad_token", "message": "no"}),
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
    fn the_token_is_redacted_in_debug_output() {
        let hello = PeerFrame::Hello {
            version: 1,
            from: "hans".into(),
            token: "0123456789abcdef".into(),
        };
        assert!(!format!("{hello:?}").contains("0123456789abcdef"));
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

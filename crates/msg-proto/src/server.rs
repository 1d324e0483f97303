//! The server protocol: frames between a client (normally `msgd`) and `msg-server`.
//!
//! A connection starts with the client's [`ClientFrame::Hello`], answered by
//! [`ServerFrame::Hello`]. Requests carry a client-chosen `id` that the reply
//! echoes; events the server pushes on its own carry none. `docs/PROTOCOL.md`
//! describes every frame, the order of events and the delivery guarantees.

use serde::{Deserialize, Serialize};

use crate::{ErrorCode, MsgId, Refusal, RequestId, Secret, Timestamp};

/// Longest `client_id` a `send` may carry, in bytes.
pub const MAX_CLIENT_ID_LEN: usize = 128;

/// Frames a client sends to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Must be the first frame on a connection.
    Hello {
        version: u32,
        /// Free-form client name and version, for the server's logs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
    },
    /// Log in. `peer_port` is the TCP port of the client's listener for
    /// private sessions, if it has one.
    Login {
        id: RequestId,
        user: String,
        password: Secret,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer_port: Option<u16>,
    },
    /// Create an account and log in (only with `--allow-register`).
    Register {
        id: RequestId,
        user: String,
        password: Secret,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer_port: Option<u16>,
    },
    /// A direct message; the reply is [`ServerFrame::Sent`].
    Send {
        id: RequestId,
        to: String,
        text: String,
        /// Chosen by the sending client, unique per message (at most
        /// [`MAX_CLIENT_ID_LEN`] bytes). Passed through to the recipient, so a
        /// send retried after a lost reply can be recognised there.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    Broadcast {
        id: RequestId,
        text: String,
    },
    /// Users online now; the reply is [`ServerFrame::Users`].
    Who {
        id: RequestId,
    },
    /// Users online at any moment in the last `secs` seconds.
    WhoSince {
        id: RequestId,
        secs: u64,
    },
    Block {
        id: RequestId,
        user: String,
    },
    Unblock {
        id: RequestId,
        user: String,
    },
    /// End the session; the server replies `ok` and closes the connection.
    Logout {
        id: RequestId,
    },
    /// Keep-alive. Answered with `pong`; not user activity.
    Ping,
    /// The client has durably stored message `msg_id`; the server may forget it.
    Ack {
        msg_id: MsgId,
    },
    /// The user did something the server cannot see (sent a private message):
    /// resets the inactivity timer. Carries no content.
    Activity,
    /// Ask `user` for a private session.
    PrivateRequest {
        id: RequestId,
        user: String,
    },
    /// Accept the pending private-session request from `user`.
    PrivateAccept {
        id: RequestId,
        user: String,
    },
    /// Decline the pending private-session request from `user`.
    PrivateDecline {
        id: RequestId,
        user: String,
    },
    /// The private session with `user` has ended (stopped or the peer vanished).
    PrivateEnd {
        id: RequestId,
        user: String,
    },
}

impl ClientFrame {
    /// The id a reply to this frame must carry, if it is a request.
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            Self::Login { id, .. }
            | Self::Register { id, .. }
            | Self::Send { id, .. }
            | Self::Broadcast { id, .. }
            | Self::Who { id }
            | Self::WhoSince { id, .. }
            | Self::Block { id, .. }
            | Self::Unblock { id, .. }
            | Self::Logout { id }
            | Self::PrivateRequest { id, .. }
            | Self::PrivateAccept { id, .. }
            | Self::PrivateDecline { id, .. }
            | Self::PrivateEnd { id, .. } => Some(*id),
            Self::Hello { .. } | Self::Ping | Self::Ack { .. } | Self::Activity => None,
        }
    }

    /// Whether the frame is something the user did, which resets the
    /// inactivity timer. Keep-alives and acks of received messages are not.
    pub fn is_user_activity(&self) -> bool {
        !matches!(self, Self::Hello { .. } | Self::Ping | Self::Ack { .. })
    }
}

/// Why the server ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogoutReason {
    /// The client asked (`logout`).
    Requested,
    /// No user command for the inactivity timeout.
    Timeout,
    /// The server is shutting down.
    Shutdown,
    /// The client read too slowly and its queue overflowed.
    SlowConsumer,
    #[serde(other)]
    Unknown,
}

/// Why a private session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrivateEndReason {
    /// One side stopped it.
    Stopped,
    /// The peer logged out, timed out or disconnected.
    LoggedOut,
    /// One side blocked the other.
    Blocked,
    #[serde(other)]
    Unknown,
}

/// Frames the server sends: replies (with the request's `id`) and events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Hello {
        version: u32,
        server: String,
    },
    /// Successful `login` or `register`. Queued offline messages follow as
    /// `message` events, oldest first.
    Welcome {
        id: RequestId,
        user: String,
        message: String,
    },
    /// Success without data; `message` is the text to show, if any.
    Ok {
        id: RequestId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// The reply to `send`: delivered to the recipient's client, or stored
    /// durably for an offline recipient (`queued`).
    Sent {
        id: RequestId,
        msg_id: MsgId,
        queued: bool,
    },
    /// The reply to `who` and `who_since`: sorted usernames.
    Users {
        id: RequestId,
        users: Vec<String>,
    },
    /// A refused request (with its `id`) or a bad frame (without).
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        code: ErrorCode,
        message: String,
    },
    /// A direct message. The client must `ack` it once stored.
    Message {
        msg_id: MsgId,
        from: String,
        text: String,
        at: Timestamp,
        /// The sender's `client_id`, if it gave one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    Broadcast {
        from: String,
        text: String,
        at: Timestamp,
    },
    /// `user` logged in (`online: true`) or out.
    Presence {
        user: String,
        online: bool,
        at: Timestamp,
    },
    /// The server ended this session; the connection closes after this frame.
    LoggedOut {
        reason: LogoutReason,
        message: String,
    },
    /// `from` asks for a private session; answer with `private_accept` or
    /// `private_decline` within the request timeout.
    PrivateRequest {
        from: String,
        at: Timestamp,
    },
    /// A private session with `peer` is agreed. The asker receives `addr`
    /// (where to dial) and the token to present; the callee receives the same
    /// token without `addr`, to check the caller. Tokens are single-use.
    PrivateReady {
        peer: String,
        /// Redacted in `Debug` output, so logging a frame cannot leak it.
        token: Secret,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        addr: Option<String>,
        /// Seconds the token stays valid.
        expires_in: u64,
    },
    PrivateDeclined {
        peer: String,
    },
    /// The request to or from `peer` was not answered in time.
    PrivateExpired {
        peer: String,
    },
    /// The private session with `peer` is over.
    PrivateEnded {
        peer: String,
        reason: PrivateEndReason,
    },
    Pong,
}

impl ServerFrame {
    pub fn error(id: Option<RequestId>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            id,
            code,
            message: message.into(),
        }
    }

    /// The error reply that carries `refusal`.
    pub fn refusal(id: Option<RequestId>, refusal: Refusal) -> Self {
        Self::Error {
            id,
            code: ErrorCode::parse(&refusal.code),
            message: refusal.message,
        }
    }

    pub fn ok(id: RequestId, message: Option<String>) -> Self {
        Self::Ok { id, message }
    }

    /// The request this frame answers, if it is a reply.
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            Self::Welcome { id, .. }
            | Self::Ok { id, .. }
            | Self::Sent { id, .. }
            | Self::Users { id, .. } => Some(*id),
            Self::Error { id, .. } => *id,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip_client(frame: ClientFrame, expected: serde_json::Value) {
        assert_eq!(serde_json::to_value(&frame).unwrap(), expected);
        let back: ClientFrame = serde_json::from_value(expected).unwrap();
        assert_eq!(back, frame);
    }

    fn round_trip_server(frame: ServerFrame, expected: serde_json::Value) {
        assert_eq!(serde_json::to_value(&frame).unwrap(), expected);
        let back: ServerFrame = serde_json::from_value(expected).unwrap();
        assert_eq!(back, frame);
    }

    #[test]
    fn client_frames_round_trip() {
        round_trip_client(
            ClientFrame::Hello {
                version: 1,
                agent: None,
            },
            json!({"type": "hello", "version": 1}),
        );
        round_trip_client(
            ClientFrame::Login {
                id: 1,
                user: "hans".into(),
                password: "falcon*solo".into(),
                peer_port: Some(4000),
            },
            json!({"type": "login", "id": 1, "user": "hans", "password": "falcon*solo", "peer_port": 4000}),
        );
        round_trip_client(
            ClientFrame::Register {
                id: 2,
                user: "rey".into(),
                password: "jakku".into(),
                peer_port: None,
            },
            json!({"type": "register", "id": 2, "user": "rey", "password": "jakku"}),
        );
        round_trip_client(
            ClientFrame::Send {
                id: 3,
                to: "luke".into(),
                text: "hi".into(),
                client_id: None,
            },
            json!({"type": "send", "id": 3, "to": "luke", "text": "hi"}),
        );
        round_trip_client(
            ClientFrame::Send {
                id: 3,
                to: "luke".into(),
                text: "hi".into(),
                client_id: Some("c-1".into()),
            },
            json!({"type": "send", "id": 3, "to": "luke", "text": "hi", "client_id": "c-1"}),
        );
        round_trip_client(
            ClientFrame::Broadcast {
                id: 4,
                text: "all".into(),
            },
            json!({"type": "broadcast", "id": 4, "text": "all"}),
        );
        round_trip_client(ClientFrame::Who { id: 5 }, json!({"type": "who", "id": 5}));
        round_trip_client(
            ClientFrame::WhoSince { id: 6, secs: 30 },
            json!({"type": "who_since", "id": 6, "secs": 30}),
        );
        round_trip_client(
            ClientFrame::Block {
                id: 7,
                user: "vader".into(),
            },
            json!({"type": "block", "id": 7, "user": "vader"}),
        );
        round_trip_client(
            ClientFrame::Unblock {
                id: 8,
                user: "vader".into(),
            },
            json!({"type": "unblock", "id": 8, "user": "vader"}),
        );
        round_trip_client(
            ClientFrame::Logout { id: 9 },
            json!({"type": "logout", "id": 9}),
        );
        round_trip_client(ClientFrame::Ping, json!({"type": "ping"}));
        round_trip_client(
            ClientFrame::Ack { msg_id: 77 },
            json!({"type": "ack", "msg_id": 77}),
        );
        round_trip_client(ClientFrame::Activity, json!({"type": "activity"}));
        round_trip_client(
            ClientFrame::PrivateRequest {
                id: 10,
                user: "luke".into(),
            },
            json!({"type": "private_request", "id": 10, "user": "luke"}),
        );
        round_trip_client(
            ClientFrame::PrivateAccept {
                id: 11,
                user: "hans".into(),
            },
            json!({"type": "private_accept", "id": 11, "user": "hans"}),
        );
        round_trip_client(
            ClientFrame::PrivateDecline {
                id: 12,
                user: "hans".into(),
            },
            json!({"type": "private_decline", "id": 12, "user": "hans"}),
        );
        round_trip_client(
            ClientFrame::PrivateEnd {
                id: 13,
                user: "hans".into(),
            },
            json!({"type": "private_end", "id": 13, "user": "hans"}),
        );
    }

    #[test]
    fn server_frames_round_trip() {
        round_trip_server(
            ServerFrame::Hello {
                version: 1,
                server: "msg-server 0.1.0".into(),
            },
            json!({"type": "hello", "version": 1, "server": "msg-server 0.1.0"}),
        );
        round_trip_server(
            ServerFrame::Welcome {
                id: 1,
                user: "hans".into(),
                message: "Welcome".into(),
            },
            json!({"type": "welcome", "id": 1, "user": "hans", "message": "Welcome"}),
        );
        round_trip_server(ServerFrame::ok(2, None), json!({"type": "ok", "id": 2}));
        round_trip_server(
            ServerFrame::ok(2, Some("vader is blocked".into())),
            json!({"type": "ok", "id": 2, "message": "vader is blocked"}),
        );
        round_trip_server(
            ServerFrame::Sent {
                id: 3,
                msg_id: 9,
                queued: true,
            },
            json!({"type": "sent", "id": 3, "msg_id": 9, "queued": true}),
        );
        round_trip_server(
            ServerFrame::Users {
                id: 4,
                users: vec!["luke".into(), "yoda".into()],
            },
            json!({"type": "users", "id": 4, "users": ["luke", "yoda"]}),
        );
        round_trip_server(
            ServerFrame::error(Some(5), ErrorCode::InvalidUser, "Error. Invalid user"),
            json!({"type": "error", "id": 5, "code": "invalid_user", "message": "Error. Invalid user"}),
        );
        round_trip_server(
            ServerFrame::error(None, ErrorCode::InvalidCommand, "Error. Invalid command"),
            json!({"type": "error", "code": "invalid_command", "message": "Error. Invalid command"}),
        );
        round_trip_server(
            ServerFrame::Message {
                msg_id: 6,
                from: "hans".into(),
                text: "hi".into(),
                at: 1700,
                client_id: Some("c-9".into()),
            },
            json!({"type": "message", "msg_id": 6, "from": "hans", "text": "hi", "at": 1700, "client_id": "c-9"}),
        );
        round_trip_server(
            ServerFrame::Broadcast {
                from: "hans".into(),
                text: "all".into(),
                at: 1,
            },
            json!({"type": "broadcast", "from": "hans", "text": "all", "at": 1}),
        );
        round_trip_server(
            ServerFrame::Presence {
                user: "luke".into(),
                online: false,
                at: 2,
            },
            json!({"type": "presence", "user": "luke", "online": false, "at": 2}),
        );
        round_trip_server(
            ServerFrame::LoggedOut {
                reason: LogoutReason::Timeout,
                message: "You have been logged out due to inactivity".into(),
            },
            json!({"type": "logged_out", "reason": "timeout", "message": "You have been logged out due to inactivity"}),
        );
        round_trip_server(
            ServerFrame::PrivateRequest {
                from: "hans".into(),
                at: 3,
            },
            json!({"type": "private_request", "from": "hans", "at": 3}),
        );
        round_trip_server(
            ServerFrame::PrivateReady {
                peer: "luke".into(),
                token: "abc".into(),
                addr: Some("127.0.0.1:4000".into()),
                expires_in: 60,
            },
            json!({"type": "private_ready", "peer": "luke", "token": "abc", "addr": "127.0.0.1:4000", "expires_in": 60}),
        );
        round_trip_server(
            ServerFrame::PrivateDeclined {
                peer: "luke".into(),
            },
            json!({"type": "private_declined", "peer": "luke"}),
        );
        round_trip_server(
            ServerFrame::PrivateExpired {
                peer: "luke".into(),
            },
            json!({"type": "private_expired", "peer": "luke"}),
        );
        round_trip_server(
            ServerFrame::PrivateEnded {
                peer: "luke".into(),
                reason: PrivateEndReason::LoggedOut,
            },
            json!({"type": "private_ended", "peer": "luke", "reason": "logged_out"}),
        );
        round_trip_server(ServerFrame::Pong, json!({"type": "pong"}));
    }

    #[test]
    fn passwords_never_show_in_debug_output() {
        let frame = ClientFrame::Login {
            id: 1,
            user: "hans".into(),
            password: "falcon*solo".into(),
            peer_port: None,
        };
        let debug = format!("{frame:?}");
        assert!(!debug.contains("falcon"), "{debug}");
        assert!(debug.contains("hans"));
    }

    #[test]
    fn unknown_fields_are_ignored_and_unknown_reasons_tolerated() {
        let frame: ServerFrame = serde_json::from_value(
            json!({"type": "logged_out", "reason": "moon_phase", "message": "bye", "extra": 1}),
        )
        .unwrap();
        assert_eq!(
            frame,
            ServerFrame::LoggedOut {
                reason: LogoutReason::Unknown,
                message: "bye".into()
            }
        );
    }

    #[test]
    fn keepalives_and_acks_are_not_activity() {
        assert!(!ClientFrame::Ping.is_user_activity());
        assert!(!ClientFrame::Ack { msg_id: 1 }.is_user_activity());
        assert!(ClientFrame::Activity.is_user_activity());
        assert!(ClientFrame::Who { id: 1 }.is_user_activity());
        assert_eq!(ClientFrame::Who { id: 7 }.request_id(), Some(7));
        assert_eq!(ClientFrame::Ping.request_id(), None);
    }

    #[test]
    fn request_ids_are_found_on_replies_only() {
        assert_eq!(ServerFrame::ok(4, None).request_id(), Some(4));
        assert_eq!(ServerFrame::Pong.request_id(), None);
        assert_eq!(
            ServerFrame::error(None, ErrorCode::InvalidCommand, "x").request_id(),
            None
        );
    }
}

//! Frames the server sends: replies to requests (with their `id`) and
//! events it pushes on its own (without).

use serde::{Deserialize, Serialize};

use crate::{ErrorCode, MsgId, Refusal, RequestId, Secret, Timestamp};

/// Why the server ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogoutReason {
    /// Never sent by the server (a `logout` is answered with `ok`); kept so
    /// that clients written against older documents still parse it.
    Requested,
    /// No user command for the inactivity timeout.
    Timeout,
    /// The server is shutting down.
    Shutdown,
    /// The client read too slowly and its queue overflowed.
    SlowConsumer,
    /// The account's device tokens were revoked (`msg-server revoke` or
    /// `msg-server passwd`): the session ended; log in with the password.
    Revoked,
    #[serde(other)]
    Unknown,
}

/// One login or logout in a [`ServerFrame::PresenceBatch`], written as a
/// three-item array `["user", online, at]`: a batch may list thousands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceEvent(pub String, pub bool, pub Timestamp);

impl PresenceEvent {
    pub fn user(&self) -> &str {
        &self.0
    }

    pub fn online(&self) -> bool {
        self.1
    }

    pub fn at(&self) -> Timestamp {
        self.2
    }
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
    /// Successful `login`, `register` or `resume`. Queued offline messages
    /// follow as `message` events, oldest first.
    Welcome {
        id: RequestId,
        user: String,
        message: String,
        /// The device token a `login` with `device` asked for (64 hex
        /// digits), sent only here and only once. Redacted in `Debug`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<Secret>,
    },
    /// The reply to `account`: whether `user` exists, whether this server
    /// lets unknown users register, and for how many more seconds the
    /// account is blocked, if it is.
    Account {
        id: RequestId,
        user: String,
        exists: bool,
        registration: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        blocked_for: Option<u64>,
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
        /// Seconds until the same request may succeed (`login_blocked`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
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
    /// `user` logged in (`online: true`) or out. Sent to clients that
    /// greeted with protocol version 1; later versions get
    /// [`ServerFrame::PresenceBatch`].
    Presence {
        user: String,
        online: bool,
        at: Timestamp,
    },
    /// Several logins and logouts, oldest first: what happened since the
    /// client was last told (protocol version 2 and later).
    PresenceBatch {
        events: Vec<PresenceEvent>,
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
    /// (where to dial); the callee receives `caller_ip` instead. Both get the
    /// same one-time token, the pre-shared key of their Noise handshake, and
    /// the other side's public key, which its daemon must prove it holds.
    PrivateReady {
        peer: String,
        /// 256 bits, 64 hex digits. Redacted in `Debug` output, so logging
        /// a frame cannot leak it.
        token: Secret,
        /// The other side's static public key as it gave it at login (64 hex
        /// digits); a daemon that gets none refuses the session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer_key: Option<String>,
        /// To the asker: where to dial the callee (`IP:port`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        addr: Option<String>,
        /// To the callee: the IP address the server sees for the asker, the
        /// only one its daemon lets in for this session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller_ip: Option<String>,
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
            retry_after: None,
        }
    }

    /// An `error` frame as the refusal it carries; any other frame as itself.
    pub fn into_refusal(self) -> Result<Self, Refusal> {
        match self {
            Self::Error {
                code,
                message,
                retry_after,
                ..
            } => Err(Refusal {
                code: code.as_str().into(),
                message,
                retry_after,
                fingerprint: None,
            }),
            frame => Ok(frame),
        }
    }

    /// The error reply that carries `refusal`.
    pub fn refusal(id: Option<RequestId>, refusal: Refusal) -> Self {
        Self::Error {
            id,
            code: ErrorCode::parse(&refusal.code),
            message: refusal.message,
            retry_after: refusal.retry_after,
        }
    }

    pub fn ok(id: RequestId, message: Option<String>) -> Self {
        Self::Ok { id, message }
    }

    /// The request this frame answers, if it is a reply.
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            Self::Welcome { id, .. }
            | Self::Account { id, .. }
            | Self::Ok { id, .. }
            | Self::Sent { id, .. }
            | Self::Users { id, .. } => Some(*id),
            Self::Error { id, .. } => *id,
            _ => None,
        }
    }
}

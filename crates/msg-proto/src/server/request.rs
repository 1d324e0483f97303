//! Frames a client sends to the server.
//!
//! Requests with fields are structs of their own (wrapped by a
//! [`ClientFrame`] variant, with the fields beside `"type"` on the wire), so
//! that the server can hold a request, queue it or hand it to its handler
//! without taking it apart and building it again.

use serde::{Deserialize, Serialize};

use crate::peer::PeerKey;
use crate::{MsgId, RequestId, Secret};

/// Longest `client_id` a `send` may carry, in bytes.
pub const MAX_CLIENT_ID_LEN: usize = 128;

/// `login` and `register`. `peer_port` is the TCP port of the client's
/// listener for private sessions, if it has one; `peer_key` the public half
/// of the static key its peer connections prove they hold, without which the
/// server brokers no private session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginRequest {
    pub id: RequestId,
    pub user: String,
    pub password: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_port: Option<u16>,
    /// X25519 public key, 64 hex digits on the wire; anything else makes
    /// the frame malformed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_key: Option<PeerKey>,
    /// Asks for a device token: a label for the device (at most
    /// [`MAX_DEVICE_LABEL_LEN`] bytes, e.g. `msgd@host`). The `welcome` of a
    /// successful login then carries the token, once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// Longest device label a `login` may carry, in bytes.
pub const MAX_DEVICE_LABEL_LEN: usize = 64;

/// `resume`: a login with a device token instead of the password.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeRequest {
    pub id: RequestId,
    pub user: String,
    /// 64 lowercase hex digits, as the `welcome` gave it.
    pub token: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_key: Option<PeerKey>,
}

/// A direct message; the reply is [`crate::server::ServerFrame::Sent`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendRequest {
    pub id: RequestId,
    pub to: String,
    pub text: String,
    /// Chosen by the sending client, unique per message (at most
    /// [`MAX_CLIENT_ID_LEN`] bytes). Passed through to the recipient, so a
    /// send retried after a lost reply can be recognised there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BroadcastRequest {
    pub id: RequestId,
    pub text: String,
}

/// Users online at any moment in the last `secs` seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhoSinceRequest {
    pub id: RequestId,
    pub secs: u64,
}

/// A request about one other user: block, unblock and the private-session
/// requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRequest {
    pub id: RequestId,
    pub user: String,
}

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
    /// Log in.
    Login(LoginRequest),
    /// Create an account and log in (only with `--allow-register`).
    Register(LoginRequest),
    /// What a login as `user` would meet before its password is checked,
    /// so a client asks for a password only when one can help; the reply
    /// is `account`. Allowed before login.
    Account(UserRequest),
    /// Log in with a device token.
    Resume(ResumeRequest),
    /// A direct message; the reply is `sent`.
    Send(SendRequest),
    Broadcast(BroadcastRequest),
    /// Users online now; the reply is `users`.
    Who {
        id: RequestId,
    },
    WhoSince(WhoSinceRequest),
    Block(UserRequest),
    Unblock(UserRequest),
    /// End the session; the server replies `ok` and closes the connection.
    /// With `revoke_device`, the device token the session was logged in
    /// with (or was given at its login) is revoked too.
    Logout {
        id: RequestId,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        revoke_device: bool,
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
    PrivateRequest(UserRequest),
    /// Accept the pending private-session request from `user`.
    PrivateAccept(UserRequest),
    /// Decline the pending private-session request from `user`.
    PrivateDecline(UserRequest),
    /// The private session with `user` has ended (stopped or the peer vanished).
    PrivateEnd(UserRequest),
}

impl ClientFrame {
    /// The id a reply to this frame must carry, if it is a request.
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            Self::Login(LoginRequest { id, .. })
            | Self::Register(LoginRequest { id, .. })
            | Self::Account(UserRequest { id, .. })
            | Self::Resume(ResumeRequest { id, .. })
            | Self::Send(SendRequest { id, .. })
            | Self::Broadcast(BroadcastRequest { id, .. })
            | Self::Who { id }
            | Self::WhoSince(WhoSinceRequest { id, .. })
            | Self::Block(UserRequest { id, .. })
            | Self::Unblock(UserRequest { id, .. })
            | Self::Logout { id, .. }
            | Self::PrivateRequest(UserRequest { id, .. })
            | Self::PrivateAccept(UserRequest { id, .. })
            | Self::PrivateDecline(UserRequest { id, .. })
            | Self::PrivateEnd(UserRequest { id, .. }) => Some(*id),
            Self::Hello { .. } | Self::Ping | Self::Ack { .. } | Self::Activity => None,
        }
    }

    /// Whether the frame is something the user did, which resets the
    /// inactivity timer. Keep-alives and acks of received messages are not.
    pub fn is_user_activity(&self) -> bool {
        !matches!(
            self,
            Self::Hello { .. } | Self::Ping | Self::Ack { .. } | Self::Account(_)
        )
    }
}

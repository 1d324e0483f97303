//! Every text a user sees from msgd itself, in one place, so that the same
//! event reads the same wherever it is reported (a `msg` reply, the inbox,
//! `msg watch`, a peer's refusal). Texts the server sends are passed through
//! as they come.

// Sessions with the server.

/// What commands that need a session say while there is none.
pub const NOT_LOGGED_IN: &str = "Not logged in. Run `msg login USER`";
pub const CONNECTION_LOST: &str = "The connection to the server was lost";
pub const NOT_A_MSG_SERVER: &str = "The server does not speak the msg protocol";
pub const RECONNECTING: &str = "Reconnecting to the server; try again shortly";
pub const SHUTTING_DOWN: &str = "msgd is shutting down";
pub const STOPPED: &str = "msgd stopped";
pub const UNEXPECTED_REPLY: &str = "Unexpected reply from the server";

// Why msgd waits before it logs in again (`msg status`: `connection:
// waiting to log in again: REASON, next try in N s`).

pub const WAIT_STARTING: &str = msg_proto::control::WAITING_STARTING;
pub const TOKEN_REVOKED: &str = "This device is no longer logged in (its token was revoked on the server). Run `msg login USER`";
pub const WAIT_CONNECTION_LOST: &str = "connection lost";
pub const WAIT_UNREACHABLE: &str = "cannot reach the server";
pub const WAIT_OLD_SESSION: &str = "the server still holds the previous session";
pub const WAIT_ACCOUNT_BLOCKED: &str = "account blocked";
pub const WAIT_INBOX_UNWRITABLE: &str = "the inbox cannot be written (disk full?)";

/// What requests and `msg login` are told while msgd waits for `reason`.
pub fn waiting_to_log_in(reason: &str, secs: u64) -> String {
    format!("Not connected: waiting to log in again ({reason}, next try in {secs} s)")
}

pub fn cannot_reach(server: &str) -> String {
    format!("Cannot reach the server at {server}")
}

pub fn already_logged_in(user: &str) -> String {
    format!("Already logged in as {user}")
}

pub fn logged_in_as_other(user: &str) -> String {
    format!("Already logged in as {user}. Run `msg logout` first")
}

pub fn presence(user: &str, online: bool) -> String {
    format!("{user} logged {}", if online { "in" } else { "out" })
}

// The control socket.

pub const INVALID_COMMAND: &str = "Error. Invalid command";
pub const PERMISSION_DENIED: &str = "Permission denied: msgd belongs to another user";
pub const EMPTY_MESSAGE: &str = "Error. Message is empty";
pub const MESSAGE_TOO_LONG: &str = "Error. Message too long";
pub const INBOX_UNREADABLE: &str = "The inbox cannot be read";

pub fn control_version_mismatch(theirs: u32, ours: u32) -> String {
    format!(
        "msg and msgd versions differ (control protocol {theirs}, msgd speaks {ours}); restart msgd with `msg daemon stop`"
    )
}

pub fn watcher_skipped(n: u64) -> String {
    format!("({n} items skipped; see `msg inbox --all`)")
}

// Private sessions.

pub fn private_request(from: &str) -> String {
    format!("{from} would like to private message")
}

pub fn private_started(peer: &str) -> String {
    format!("Start private messaging with {peer}")
}

pub fn private_stopped(peer: &str) -> String {
    format!("Private messaging with {peer} stopped")
}

/// The direct connection broke (a crashed peer, a network failure) without
/// either side stopping the session.
pub fn private_connection_lost(peer: &str) -> String {
    format!("Private messaging with {peer} stopped (connection lost)")
}

pub fn private_declined(peer: &str) -> String {
    format!("{peer} declined private messaging")
}

/// Our request to `peer` went unanswered.
pub fn private_unanswered(peer: &str) -> String {
    format!("Error. {peer} did not answer")
}

/// `from`'s request to us went unanswered.
pub fn private_request_expired(from: &str) -> String {
    format!("The private messaging request from {from} expired")
}

pub fn private_unreachable(peer: &str) -> String {
    format!("Error. Cannot connect to {peer} for private messaging")
}

/// What answered at `peer`'s address did not prove the key the server gave
/// for `peer`'s msgd (or did not hold the session's token).
pub fn private_unverified(peer: &str) -> String {
    format!("Error. Cannot verify {peer}'s msgd for private messaging")
}

/// The server gave no key for `peer`, or a token too short to be a key: it
/// is too old to broker a secure session.
pub fn private_insecure(peer: &str) -> String {
    format!("Error. The server is too old to set up private messaging with {peer} securely")
}

pub fn private_not_enabled(peer: &str) -> String {
    format!("Error. Private messaging to {peer} not enabled")
}

pub fn no_private_session(peer: &str) -> String {
    format!("Error. No private session with {peer}")
}

pub fn private_unconfirmed(peer: &str) -> String {
    format!("Error. {peer} did not confirm the private message")
}

// Refusals sent to a peer daemon that calls us.

pub const PEER_HELLO_REQUIRED: &str = "Error. The first frame must be hello";
pub const PEER_WRONG_USER: &str = "Error. This private session was agreed with another user";

pub fn peer_version_mismatch(theirs: u32, ours: u32) -> String {
    format!("Error. Peer protocol version {theirs} is not supported (this daemon speaks {ours})")
}

/// The title of a broadcast's notification.
pub fn broadcast_title(from: &str) -> String {
    format!("{from} (broadcast)")
}

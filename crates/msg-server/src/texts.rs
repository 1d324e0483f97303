//! Every text a user sees from the server, in one place.

pub const WELCOME: &str = "Welcome to the greatest messaging application ever!";
pub const INVALID_PASSWORD: &str = "Invalid Password. Please try again";
pub const ACCOUNT_BLOCKED: &str =
    "Invalid Password. Your account has been blocked. Please try again later";
pub const LOGIN_BLOCKED: &str =
    "Your account is blocked due to multiple login failures. Please try again later";
pub const INVALID_USER: &str = "Error. Invalid user";
pub const ALREADY_LOGGED_IN: &str = "This user is already logged in";
pub const NOT_LOGGED_IN: &str = "Error. Not logged in";
pub const ALREADY_AUTHENTICATED: &str = "Error. Already logged in on this connection";
pub const REGISTRATION_DISABLED: &str = "Error. Registration is disabled on this server";
pub const USER_EXISTS: &str = "Error. This user already exists";
pub const INVALID_USERNAME: &str = "Error. Invalid username (1-32 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit)";
pub const INVALID_PASSWORD_FORMAT: &str = "Error. Invalid password (empty or contains a newline)";
pub const CANNOT_MESSAGE_SELF: &str = "Error. Cannot message yourself";
pub const BLOCKED_BY_RECIPIENT: &str =
    "Your message could not be delivered as the recipient has blocked you";
pub const BROADCAST_PARTLY_BLOCKED: &str = "Your message could not be delivered to some recipients";
pub const EMPTY_MESSAGE: &str = "Error. Message is empty";
pub const MESSAGE_TOO_LONG: &str = "Error. Message too long";
pub const CANNOT_BLOCK_SELF: &str = "Error. Cannot block self";
pub const CANNOT_PRIVATE_SELF: &str = "Error. Cannot start private messaging with self";
pub const INACTIVITY_LOGOUT: &str = "You have been logged out due to inactivity";
pub const SHUTDOWN_LOGOUT: &str = "The server is shutting down";
pub const LEASE_LOST_LOGOUT: &str =
    "Disconnected: this server node lost its hold on your session; connecting again";
pub const CLUSTER_UNAVAILABLE: &str =
    "Error. The server cannot reach its shared database right now; try again";
pub const SLOW_CONSUMER_LOGOUT: &str = "Disconnected: messages were not read fast enough";
pub const REVOKED_LOGOUT: &str =
    "Logged out: this account's devices were signed out on the server; log in with the password";
pub const BAD_TOKEN: &str = "Error. This device is no longer logged in (token unknown or revoked); log in with the password";
pub const LOGGED_OUT: &str = "You have been logged out";
pub const INVALID_COMMAND: &str = "Error. Invalid command";
pub const FRAME_TOO_LARGE: &str = "Error. Frame too large";
pub const HELLO_REQUIRED: &str = "Error. The first frame must be hello";
pub const LOGIN_TIMEOUT: &str = "Error. Login timed out";
pub const STORE_FAILED: &str = "Error. The server could not store this; try again";
pub const QUEUE_UNREADABLE: &str =
    "Error. The server cannot read your offline messages right now; they stay queued";

pub fn already_blocked(user: &str) -> String {
    format!("Error. {user} is already blocked")
}

pub fn not_blocked(user: &str) -> String {
    format!("Error. {user} was not blocked")
}

pub fn blocked(user: &str) -> String {
    format!("{user} is blocked")
}

pub fn unblocked(user: &str) -> String {
    format!("{user} is unblocked")
}

pub fn offline(user: &str) -> String {
    format!("Error. {user} is offline")
}

pub fn has_blocked_you(user: &str) -> String {
    format!("Error. {user} has blocked you")
}

pub fn no_private_request(user: &str) -> String {
    format!("Error. No private messaging request from {user}")
}

pub fn private_request_pending(user: &str) -> String {
    format!("Error. A private messaging request to {user} is already pending")
}

pub fn private_unavailable(user: &str) -> String {
    format!("Error. {user} cannot accept private messaging right now")
}

pub fn queue_full(user: &str) -> String {
    format!("Error. {user}'s offline queue is full; try again later")
}

pub fn too_many_failed_logins(secs: u64) -> String {
    format!("Error. Too many failed logins from your address; try again in {secs} seconds")
}

pub fn too_many_registrations(secs: u64) -> String {
    format!("Error. Too many registrations from your address; try again in {secs} seconds")
}

/// `private_unavailable` for a user whose client gave no `peer_key`: it
/// cannot talk privately without cleartext, which is not offered.
pub fn private_too_old(user: &str) -> String {
    format!("Error. {user}'s msgd is too old to talk privately")
}

/// `private_unavailable` for an asker whose own client gave no `peer_key`.
pub const PRIVATE_YOURS_TOO_OLD: &str = "Error. Your msgd is too old to talk privately";

pub fn version_mismatch(theirs: u32, oldest: u32, newest: u32) -> String {
    format!(
        "Error. Protocol version {theirs} is not supported (this server speaks versions {oldest} to {newest})"
    )
}

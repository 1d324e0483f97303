//! Stable machine codes for every error a user or script can meet, and
//! [`Refusal`], the one error type that carries a code with its text.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// The machine-readable half of an error; the human text travels beside it.
///
/// Codes are stable: scripts match on them. Clients must tolerate codes they
/// do not know yet, which deserialize as [`ErrorCode::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Wrong password (first and second consecutive failure).
    InvalidPassword,
    /// Third consecutive failure: the account is now blocked for a while.
    AccountBlocked,
    /// A login attempt while the account is blocked.
    LoginBlocked,
    /// The named user does not exist.
    InvalidUser,
    /// The user already has a session elsewhere.
    AlreadyLoggedIn,
    /// A command that needs a session was sent before logging in.
    NotLoggedIn,
    /// A second login on a connection that already has a session.
    AlreadyAuthenticated,
    /// `register` while the server runs without `--allow-register`.
    RegistrationDisabled,
    /// `register` of a name that already has an account.
    UserExists,
    /// A username outside 1–32 characters of `[A-Za-z0-9_.-]`.
    InvalidUsername,
    /// An empty password or one containing a newline.
    InvalidPasswordFormat,
    CannotMessageSelf,
    BlockedByRecipient,
    EmptyMessage,
    MessageTooLong,
    CannotBlockSelf,
    AlreadyBlocked,
    NotBlocked,
    UserOffline,
    CannotPrivateSelf,
    /// The other user has blocked the asker (private sessions).
    BlockedYou,
    /// `private accept/decline` without a pending request from that user.
    NoPrivateRequest,
    /// The callee's daemon has no peer listener to connect to.
    PrivateUnavailable,
    /// `private_request` while the same request is still unanswered.
    PrivateRequestPending,
    /// Malformed JSON, invalid UTF-8, an unknown type or missing fields.
    InvalidCommand,
    /// A frame over [`crate::MAX_FRAME_LEN`].
    FrameTooLarge,
    /// The first frame was not `hello`.
    HelloRequired,
    /// The peer speaks another protocol version.
    VersionMismatch,
    /// The server could not complete the request (e.g. its store failed).
    Internal,
    /// The server cannot read the user's offline queue (a damaged store);
    /// the messages stay queued and the session goes on without them.
    QueueUnreadable,
    /// The recipient's offline queue is at its quota (messages or bytes);
    /// nothing was stored.
    RecipientQueueFull,
    /// Too many registrations or wrong passwords from one address; see
    /// `retry_after`.
    RateLimited,
    /// A `resume` with a device token the server does not know (wrong,
    /// revoked, or of another user): log in with the password.
    BadToken,
    /// A code this build does not know; newer peers may send more.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidPassword => "invalid_password",
            Self::AccountBlocked => "account_blocked",
            Self::LoginBlocked => "login_blocked",
            Self::InvalidUser => "invalid_user",
            Self::AlreadyLoggedIn => "already_logged_in",
            Self::NotLoggedIn => "not_logged_in",
            Self::AlreadyAuthenticated => "already_authenticated",
            Self::RegistrationDisabled => "registration_disabled",
            Self::UserExists => "user_exists",
            Self::InvalidUsername => "invalid_username",
            Self::InvalidPasswordFormat => "invalid_password_format",
            Self::CannotMessageSelf => "cannot_message_self",
            Self::BlockedByRecipient => "blocked_by_recipient",
            Self::EmptyMessage => "empty_message",
            Self::MessageTooLong => "message_too_long",
            Self::CannotBlockSelf => "cannot_block_self",
            Self::AlreadyBlocked => "already_blocked",
            Self::NotBlocked => "not_blocked",
            Self::UserOffline => "user_offline",
            Self::CannotPrivateSelf => "cannot_private_self",
            Self::BlockedYou => "blocked_you",
            Self::NoPrivateRequest => "no_private_request",
            Self::PrivateUnavailable => "private_unavailable",
            Self::PrivateRequestPending => "private_request_pending",
            Self::InvalidCommand => "invalid_command",
            Self::FrameTooLarge => "frame_too_large",
            Self::HelloRequired => "hello_required",
            Self::VersionMismatch => "version_mismatch",
            Self::Internal => "internal",
            Self::QueueUnreadable => "queue_unreadable",
            Self::RecipientQueueFull => "recipient_queue_full",
            Self::RateLimited => "rate_limited",
            Self::BadToken => "bad_token",
            Self::Unknown => "unknown",
        }
    }
}

impl ErrorCode {
    /// Every known code, for parsing.
    pub const ALL: [ErrorCode; 33] = [
        Self::InvalidPassword,
        Self::AccountBlocked,
        Self::LoginBlocked,
        Self::InvalidUser,
        Self::AlreadyLoggedIn,
        Self::NotLoggedIn,
        Self::AlreadyAuthenticated,
        Self::RegistrationDisabled,
        Self::UserExists,
        Self::InvalidUsername,
        Self::InvalidPasswordFormat,
        Self::CannotMessageSelf,
        Self::BlockedByRecipient,
        Self::EmptyMessage,
        Self::MessageTooLong,
        Self::CannotBlockSelf,
        Self::AlreadyBlocked,
        Self::NotBlocked,
        Self::UserOffline,
        Self::CannotPrivateSelf,
        Self::BlockedYou,
        Self::NoPrivateRequest,
        Self::PrivateUnavailable,
        Self::PrivateRequestPending,
        Self::InvalidCommand,
        Self::FrameTooLarge,
        Self::HelloRequired,
        Self::VersionMismatch,
        Self::Internal,
        Self::QueueUnreadable,
        Self::RecipientQueueFull,
        Self::RateLimited,
        Self::BadToken,
    ];

    /// The code for its wire name; [`ErrorCode::Unknown`] for any other.
    pub fn parse(code: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|known| known.as_str() == code)
            .unwrap_or(Self::Unknown)
    }
}

impl From<ErrorCode> for Cow<'static, str> {
    fn from(code: ErrorCode) -> Self {
        Cow::Borrowed(code.as_str())
    }
}

/// A refused request or a failed operation, the way every part of msg
/// reports one: a stable machine code (an [`ErrorCode`], or one of the
/// local side's own codes) and the text a person sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub code: Cow<'static, str>,
    pub message: String,
    /// Seconds after which the same request may succeed (a login block, a
    /// rate limit), when the refusing side knows.
    pub retry_after: Option<u64>,
    /// The server certificate's SHA-256 fingerprint, for a refusal about
    /// trusting it (`untrusted_certificate`, `certificate_changed`).
    pub fingerprint: Option<String>,
}

impl Refusal {
    pub fn new(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            retry_after: None,
            fingerprint: None,
        }
    }

    /// The same refusal, naming the certificate it is about.
    pub fn with_fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.fingerprint = Some(fingerprint.into());
        self
    }

    /// The same refusal, saying when to try again.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Whether this refusal carries `code`.
    pub fn is(&self, code: impl Into<Cow<'static, str>>) -> bool {
        self.code == code.into()
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_str_matches_serde() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn every_code_parses_back() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), code);
        }
        assert_eq!(ErrorCode::parse("from_the_future"), ErrorCode::Unknown);
    }

    #[test]
    fn refusals_compare_by_code() {
        let refusal = Refusal::new(ErrorCode::InvalidUser, "Error. Invalid user");
        assert!(refusal.is(ErrorCode::InvalidUser));
        assert!(refusal.is("invalid_user"));
        assert!(!refusal.is(ErrorCode::UserOffline));
        assert_eq!(refusal.to_string(), "Error. Invalid user");
    }

    #[test]
    fn unknown_codes_are_tolerated() {
        let code: ErrorCode = serde_json::from_str("\"from_the_future\"").unwrap();
        assert_eq!(code, ErrorCode::Unknown);
    }
}

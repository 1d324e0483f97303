//! The control protocol: what the `msg` CLI and its user's `msgd` exchange over
//! the local socket.
//!
//! Every connection starts with [`Request::Hello`], answered by
//! [`Reply::Hello`] (or an error on a version mismatch). Then the CLI sends
//! one request and reads its reply; `inbox` answers with a stream of
//! [`Reply::Item`] closed by [`Reply::End`], and `watch` with items until the
//! CLI hangs up. Framing is the same NDJSON as everywhere ([`crate::JsonLines`]).

use serde::{Deserialize, Serialize};

use crate::{MsgId, Secret, Timestamp};

/// Version of the control protocol, checked on every control connection.
pub const CONTROL_VERSION: u32 = 1;

/// Error codes the daemon adds to the server's [`crate::ErrorCode`]s. The CLI
/// maps them to exit codes.
/// `Status::waiting` while msgd, just started, logs in with its saved
/// device token: `msg login` waits for that to settle before it answers.
pub const WAITING_STARTING: &str = "logging in with the saved device token";

pub mod codes {
    /// The daemon holds no session (exit 3).
    pub const NOT_LOGGED_IN: &str = "not_logged_in";
    /// The server ended the session for inactivity (exit 3).
    pub const TIMEOUT: &str = "timeout";
    /// The server cannot be reached right now (exit 4).
    pub const SERVER_UNREACHABLE: &str = "server_unreachable";
    /// The daemon is not running or does not answer (exit 4).
    pub const DAEMON_UNREACHABLE: &str = "daemon_unreachable";
    /// Something listens on the control socket, but not this user's own
    /// msgd (another user's socket or directory): nothing is sent (exit 4).
    pub const UNTRUSTED_DAEMON: &str = "untrusted_daemon";
    /// `msg login` while another user is logged in (exit 1).
    pub const LOGGED_IN_AS_OTHER: &str = "logged_in_as_other";
    /// The two sides speak different control protocol versions.
    pub const VERSION_MISMATCH: &str = "version_mismatch";
    /// A malformed or unexpected request.
    pub const INVALID_COMMAND: &str = "invalid_command";
    /// The daemon failed internally (e.g. its inbox could not be written).
    pub const INTERNAL: &str = "internal";
    /// The command line or its input was wrong (the CLI's own code; exit 2).
    pub const USAGE: &str = "usage";
    /// No open private session with that user (`msg private send`).
    pub const PRIVATE_NOT_ENABLED: &str = "private_not_enabled";
    pub const NO_PRIVATE_SESSION: &str = "no_private_session";
    pub const PRIVATE_DECLINED: &str = "private_declined";
    pub const PRIVATE_EXPIRED: &str = "private_expired";
    /// The session was agreed but the peer's daemon could not be reached
    /// or refused the connection.
    pub const PRIVATE_UNREACHABLE: &str = "private_unreachable";
    /// The server's TLS certificate is trusted neither by a CA nor by a
    /// pin; the reply's `fingerprint` is the certificate's, for `msg login`
    /// to show and, if the user accepts it, to send back in
    /// `login.fingerprint` (exit 1).
    pub const UNTRUSTED_CERTIFICATE: &str = "untrusted_certificate";
    /// The certificate differs from the one pinned for that server: refused
    /// (exit 1); `fingerprint` is the new one, the text names both.
    pub const CERTIFICATE_CHANGED: &str = "certificate_changed";
    /// A password would go over plain TCP to a server that is not on this
    /// machine, without `--insecure` (exit 2).
    pub const INSECURE_TRANSPORT: &str = "insecure_transport";
    /// The server address is not `HOST:PORT`, `tcp://HOST:PORT` or
    /// `tls://HOST:PORT`, or a trust setting cannot be used (exit 2).
    pub const BAD_SERVER: &str = "bad_server";
}

/// Requests from `msg` to `msgd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Must be the first frame on a control connection.
    Hello {
        version: u32,
    },
    /// Log in (or create the account, with `register`) on `server`.
    Login {
        user: String,
        password: Secret,
        server: String,
        #[serde(default)]
        register: bool,
        /// How to trust the server's certificate beyond the system's roots
        /// and the pins in `known_servers` (all optional).
        #[serde(default, flatten)]
        trust: Trust,
    },
    /// What logging in as `user` on `server` would meet before the
    /// password; the reply is `account`.
    Account {
        user: String,
        server: String,
        /// As for `login`: the connection is made the same way.
        #[serde(default)]
        trust: Trust,
    },
    Logout,
    Status,
    Send {
        to: String,
        text: String,
    },
    Broadcast {
        text: String,
    },
    /// `since`: users online at any moment in the last that many seconds.
    Who {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
    },
    Block {
        user: String,
    },
    Unblock {
        user: String,
    },
    /// List the inbox: unread items, or all with `all`; marks them read unless `peek`.
    Inbox {
        #[serde(default)]
        all: bool,
        #[serde(default)]
        peek: bool,
    },
    /// Stream every new item until the CLI hangs up.
    Watch,
    PrivateStart {
        user: String,
    },
    PrivateAccept {
        user: String,
    },
    PrivateDecline {
        user: String,
    },
    PrivateSend {
        user: String,
        text: String,
    },
    PrivateStop {
        user: String,
    },
    PrivateList,
    /// Log out if needed and stop the daemon.
    Shutdown,
    /// Names to offer when completing a USER argument: users online now and
    /// recent correspondents, answered from memory (reply `users`).
    Names,
}

/// What `msg login` adds to the trust in a TLS server, and whether a
/// password may cross plain TCP to another machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trust {
    /// A CA certificate file (PEM) trusted for this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Pin this SHA-256 fingerprint for the server (given with
    /// `--fingerprint` or accepted at the prompt); kept on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Send the password over plain TCP to a non-loopback address.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

/// Replies from `msgd` to `msg`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    Hello {
        version: u32,
        daemon: String,
    },
    /// Success; `message` is the text to show, if any.
    Done {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// A direct message was delivered, or stored for an offline recipient.
    Sent {
        msg_id: MsgId,
        queued: bool,
    },
    Users {
        users: Vec<String>,
    },
    /// The answer to `account`.
    Account {
        exists: bool,
        registration: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        blocked_for: Option<u64>,
    },
    /// Boxed: the largest reply, kept out of the size of every other.
    Status(Box<Status>),
    Private(PrivateList),
    /// One inbox item (of an `inbox` listing or a `watch` stream).
    Item(InboxItem),
    /// The end of an `inbox` listing.
    End,
    Error {
        code: String,
        message: String,
        /// Seconds until the same request may succeed, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
        /// The server certificate's fingerprint (`untrusted_certificate`,
        /// `certificate_changed`: the one the server showed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fingerprint: Option<String>,
    },
}

impl Reply {
    pub fn error(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Error {
            code: code.into(),
            message: message.into(),
            retry_after: None,
            fingerprint: None,
        }
    }

    pub fn done(message: impl Into<String>) -> Self {
        Self::Done {
            message: Some(message.into()),
        }
    }
}

/// The link between the daemon and the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    LoggedOut,
    Online,
    /// The connection dropped; the daemon is logging in again.
    Reconnecting,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoggedOut => "logged out",
            Self::Online => "online",
            Self::Reconnecting => "reconnecting",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    #[serde(default)]
    pub server: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    pub state: LinkState,
    pub unread: u64,
    #[serde(default)]
    pub private: Vec<String>,
    /// Running `msg watch` streams.
    #[serde(default)]
    pub watchers: u64,
    /// While `state` is `reconnecting`: why msgd waits before it logs in
    /// again (e.g. `account blocked`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// While waiting: whole seconds until the next try.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in: Option<u64>,
    /// When logged out: why the last session ended, if the server ended it
    /// or refused to resume it (e.g. the device token was revoked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateList {
    /// Agreed private sessions.
    pub sessions: Vec<String>,
    /// Users who asked us and wait for `accept`/`decline`.
    pub incoming: Vec<String>,
    /// Users we asked who have not answered yet.
    pub outgoing: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    Message,
    Broadcast,
    Private,
    Presence,
    System,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Broadcast => "broadcast",
            Self::Private => "private",
            Self::Presence => "presence",
            Self::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "message" => Self::Message,
            "broadcast" => Self::Broadcast,
            "private" => Self::Private,
            "presence" => Self::Presence,
            "system" => Self::System,
            _ => return None,
        })
    }
}

/// One thing that arrived: a message, a broadcast, a presence notice or a
/// session event. `id` is the daemon's inbox id; `at` the server's time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxItem {
    pub id: u64,
    pub kind: ItemKind,
    pub from: Option<String>,
    pub text: String,
    pub at: Timestamp,
}

impl InboxItem {
    /// The one-line human form: `luke: hi`, `luke (broadcast): hi`,
    /// `luke(private): hi`, or the text alone for notices.
    pub fn line(&self) -> String {
        match (self.kind, &self.from) {
            (ItemKind::Message, Some(from)) => format!("{from}: {}", self.text),
            (ItemKind::Broadcast, Some(from)) => format!("{from} (broadcast): {}", self.text),
            (ItemKind::Private, Some(from)) => format!("{from}(private): {}", self.text),
            _ => self.text.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_and_replies_have_stable_shapes() {
        let req = Request::Who { since: Some(30) };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({"type": "who", "since": 30})
        );
        let req: Request = serde_json::from_value(json!({"type": "inbox"})).unwrap();
        assert_eq!(
            req,
            Request::Inbox {
                all: false,
                peek: false
            }
        );
        let reply = Reply::error(codes::NOT_LOGGED_IN, "Not logged in");
        assert_eq!(
            serde_json::to_value(&reply).unwrap(),
            json!({"type": "error", "code": "not_logged_in", "message": "Not logged in"})
        );
        let item = InboxItem {
            id: 1,
            kind: ItemKind::Message,
            from: Some("hans".into()),
            text: "hi".into(),
            at: 5,
        };
        let reply = Reply::Item(item.clone());
        let back: Reply = serde_json::from_value(serde_json::to_value(&reply).unwrap()).unwrap();
        assert_eq!(back, reply);
    }

    #[test]
    fn passwords_stay_out_of_debug_output() {
        let req = Request::Login {
            user: "hans".into(),
            password: "falcon*solo".into(),
            server: "127.0.0.1:4747".into(),
            register: false,
            trust: Default::default(),
        };
        assert!(!format!("{req:?}").contains("falcon"));
    }

    #[test]
    fn item_lines_follow_the_spec() {
        let item = |kind, from: Option<&str>, text: &str| InboxItem {
            id: 1,
            kind,
            from: from.map(Into::into),
            text: text.into(),
            at: 0,
        };
        assert_eq!(
            item(ItemKind::Message, Some("hans"), "hi").line(),
            "hans: hi"
        );
        assert_eq!(
            item(ItemKind::Broadcast, Some("hans"), "hi").line(),
            "hans (broadcast): hi"
        );
        assert_eq!(
            item(ItemKind::Private, Some("hans"), "hi").line(),
            "hans(private): hi"
        );
        assert_eq!(
            item(ItemKind::Presence, Some("hans"), "hans logged in").line(),
            "hans logged in"
        );
        for kind in [
            ItemKind::Message,
            ItemKind::Broadcast,
            ItemKind::Private,
            ItemKind::Presence,
            ItemKind::System,
        ] {
            assert_eq!(ItemKind::parse(kind.as_str()), Some(kind));
        }
    }
}

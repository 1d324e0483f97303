//! What the user sees: the texts for humans, one JSON object per reply with
//! `--json`, and the exit codes (docs/BEHAVIOUR.md, "The client side").

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use msg_proto::control::{InboxItem, codes};
use msg_proto::{Refusal, Timestamp};
use serde_json::{Value, json};

use crate::terminal;

/// The exit codes every script can rely on.
pub mod exit {
    pub const REFUSED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NOT_LOGGED_IN: u8 = 3;
    pub const UNREACHABLE: u8 = 4;
}

/// The exit code for a refusal or failure, by its code.
pub fn exit_code(failure: &Refusal) -> u8 {
    match &*failure.code {
        codes::NOT_LOGGED_IN | codes::TIMEOUT => exit::NOT_LOGGED_IN,
        codes::SERVER_UNREACHABLE
        | codes::DAEMON_UNREACHABLE
        | codes::UNTRUSTED_DAEMON
        | codes::VERSION_MISMATCH => exit::UNREACHABLE,
        codes::USAGE | codes::BAD_SERVER | codes::INSECURE_TRANSPORT => exit::USAGE,
        _ => exit::REFUSED,
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
    pub quiet: bool,
}

/// RFC 3339 (UTC, seconds) of a server timestamp in milliseconds.
pub fn rfc3339(at: Timestamp) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(at)).to_string()
}

pub fn item_json(item: &InboxItem) -> Value {
    json!({
        "id": item.id,
        "kind": item.kind.as_str(),
        "from": item.from,
        "text": item.text,
        "at": rfc3339(item.at),
    })
}

fn println(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`msg inbox | head`) is not an error worth a panic.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

impl Output {
    /// A human line (suppressed by `-q`), made safe for the terminal.
    pub fn line(&self, text: &str) {
        if !self.quiet {
            println(&terminal::safe(text));
        }
    }

    pub fn json(&self, value: &Value) {
        println(&value.to_string());
    }

    /// A success: the text for humans, `{"ok": true, ...}` for scripts.
    pub fn done(&self, message: Option<&str>, mut extra: Value) {
        if self.json {
            if let Value::Object(map) = &mut extra {
                map.insert("ok".into(), Value::Bool(true));
                if let Some(message) = message {
                    map.insert("message".into(), Value::String(message.into()));
                }
            }
            self.json(&extra);
        } else if let Some(message) = message {
            self.line(message);
        }
    }

    /// An inbox or watch item; `stamped` adds the server's time (inbox).
    pub fn item(&self, item: &InboxItem, stamped: bool) {
        if self.json {
            self.json(&item_json(item));
        } else if stamped && item.at > 0 {
            let line = format!("[{}] {}", rfc3339(item.at), item.line());
            println(&terminal::safe(&line));
        } else {
            println(&terminal::safe(&item.line()));
        }
    }

    /// Prints a failure and returns its exit code.
    pub fn fail(&self, failure: &Refusal) -> ExitCode {
        if self.json {
            let mut error = json!({"code": failure.code, "message": failure.message});
            if let Some(secs) = failure.retry_after {
                error["retry_after"] = secs.into();
            }
            if let Some(fingerprint) = &failure.fingerprint {
                error["fingerprint"] = fingerprint.as_str().into();
            }
            self.json(&json!({ "error": error }));
        } else {
            match failure.retry_after {
                Some(secs) => eprintln!(
                    "{} (in {})",
                    terminal::safe(&failure.message),
                    humantime::format_duration(Duration::from_secs(secs))
                ),
                None => eprintln!("{}", terminal::safe(&failure.message)),
            }
        }
        ExitCode::from(exit_code(failure))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_spec() {
        assert_eq!(
            exit_code(&Refusal::new("invalid_user", "Error. Invalid user")),
            1
        );
        assert_eq!(exit_code(&Refusal::new(codes::NOT_LOGGED_IN, "x")), 3);
        assert_eq!(exit_code(&Refusal::new(codes::TIMEOUT, "x")), 3);
        assert_eq!(exit_code(&Refusal::new(codes::SERVER_UNREACHABLE, "x")), 4);
        assert_eq!(exit_code(&Refusal::new(codes::DAEMON_UNREACHABLE, "x")), 4);
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20Z");
    }
}

//! Administration of a running server from the same machine: `msg-server
//! revoke` and `msg-server passwd` ask it, over a unix socket in its state
//! directory (`admin.sock`, 0600, and only the server's own user is
//! answered), to revoke a user's device tokens and end the user's session.
//! With no server running they edit the database directly.
//!
//! One request and one reply per connection, each one JSON line:
//! `{"op":"revoke"|"passwd"|"list","user":"NAME"}`, answered
//! `{"ok":true,"revoked":N,"ended":BOOL}` (or `"devices":[...]` for `list`)
//! or `{"ok":false,"error":"TEXT"}`. `passwd` also re-reads the credentials
//! file at once, so the new password works right away.
//!
//! - [`listen`]: the server's side;
//! - [`client`]: the subcommands' side, and the direct edit.

pub mod client;
#[cfg(unix)]
pub mod listen;

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The socket's file name in the state directory.
pub const SOCKET_NAME: &str = "admin.sock";
/// Longest request or reply line read, in bytes.
const MAX_LINE: usize = 64 * 1024;

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
}

/// What is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Revoke every device token of the user and end the session.
    Revoke,
    /// The same after a password change, re-reading the credentials first.
    Passwd,
    /// The user's devices: labels and times, never tokens.
    List,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Revoke => "revoke",
            Op::Passwd => "passwd",
            Op::List => "list",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Op::Revoke, Op::Passwd, Op::List]
            .into_iter()
            .find(|op| op.as_str() == s)
    }
}

/// A request as it goes on the socket.
fn request_line(op: Op, user: &str) -> String {
    let mut line = serde_json::json!({"op": op.as_str(), "user": user}).to_string();
    line.push('\n');
    line
}

/// A request read off the socket, if well-formed.
fn parse_request(line: &str) -> Option<(Op, String)> {
    let value: Value = serde_json::from_str(line).ok()?;
    let op = Op::parse(value["op"].as_str()?)?;
    let user = value["user"].as_str()?.to_owned();
    Some((op, user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_junk_is_refused() {
        let line = request_line(Op::Passwd, "hans");
        assert_eq!(
            parse_request(line.trim_end()),
            Some((Op::Passwd, "hans".into()))
        );
        assert_eq!(parse_request("{\"op\":\"drop\",\"user\":\"x\"}"), None);
        assert_eq!(parse_request("not json"), None);
        assert_eq!(parse_request("{\"op\":\"list\"}"), None);
    }
}

//! Device tokens at login: issuing one to a `login` that asks for it, and
//! `resume`, a login with a token instead of the password.
//!
//! A token has 256 random bits, so checking it is a hash lookup, not an
//! argon2 run; what keeps it from being guessed is its size and the same
//! per-address allowance of failures as wrong passwords. Account blocks
//! (wrong passwords) do not stop a token login: the device holding one
//! is not guessing, and someone else's wrong passwords must not log it out.

use msg_proto::server::{MAX_DEVICE_LABEL_LEN, ResumeRequest};
use msg_proto::{ErrorCode, Refusal, Secret, now_ms, random_hex, validate};

use crate::connection::{Connection, Flow};
use crate::store::{DeviceAnswer, DeviceOp, TokenHash, hash_token};
use crate::texts;

/// Token length in bytes (256 bits); 64 hex digits on the wire.
const TOKEN_BYTES: usize = 32;

/// A checked login, before its session is registered.
pub(super) struct Login {
    pub id: msg_proto::RequestId,
    pub user: String,
    pub peer_port: Option<u16>,
    pub peer_key: Option<String>,
}

/// The device token a session is tied to; `token` is set only when it was
/// just issued (the welcome carries it, once).
pub(super) struct Device {
    pub hash: TokenHash,
    pub token: Option<Secret>,
}

impl Connection {
    /// A new token for `user`'s device `label`, stored (durably) as its
    /// hash. `None` if the store failed: the login still succeeds, without.
    pub(super) async fn issue_token(&self, user: &str, label: &str) -> Option<Device> {
        let token = Secret(random_hex(TOKEN_BYTES));
        let hash = hash_token(token.expose());
        let op = DeviceOp::Add {
            user: user.to_owned(),
            hash,
            label: clean_label(label),
            at: now_ms(),
        };
        match self.hub.store.devices(op).await {
            Ok(Ok(_)) => Some(Device {
                hash,
                token: Some(token),
            }),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot store a device token");
                None
            }
            Err(_) => None,
        }
    }

    /// `resume`: a login with a device token.
    pub(super) async fn on_resume(&mut self, request: ResumeRequest) -> Flow {
        let ResumeRequest {
            id,
            user,
            token,
            peer_port,
            peer_key,
        } = request;
        let (_turn, hash) = match self.check_resume(&user, &token).await {
            Ok(checked) => checked,
            Err(refusal) => {
                self.refuse(Some(id), refusal);
                return Flow::Continue;
            }
        };
        let login = Login {
            id,
            user,
            peer_port,
            peer_key: peer_key.map(|key| key.to_hex()),
        };
        self.start_session(login, Some(Device { hash, token: None }))
            .await
    }

    /// The checks of a `resume`: the form of the request, the session
    /// elsewhere, the address's allowance of failures, then the lookup.
    /// Returns the account's turn (held until the session is registered,
    /// as for a password login) and the token's hash.
    async fn check_resume(
        &self,
        user: &str,
        token: &Secret,
    ) -> Result<(crate::passwords::Turn, TokenHash), Refusal> {
        if !validate::is_valid_username(user) {
            return Err(Refusal::new(
                ErrorCode::InvalidUsername,
                texts::INVALID_USERNAME,
            ));
        }
        self.hub.check_not_logged_in(user).await?;
        let turn = self.hub.passwords.turn(user).await;
        self.hub.check_not_logged_in(user).await?;
        // Reserved like a password check, given back if the token is right:
        // wrong tokens count against the address as wrong passwords do.
        let ip = self.ip;
        self.hub
            .failed_logins
            .take(ip, std::time::Instant::now())
            .map_err(|secs| {
                Refusal::new(ErrorCode::RateLimited, texts::too_many_failed_logins(secs))
                    .retry_after(secs)
            })?;
        let bad = || Refusal::new(ErrorCode::BadToken, texts::BAD_TOKEN);
        if !is_token_form(token.expose()) || !self.hub.accounts.knows(user).await {
            tracing::info!(user, "refused a device token of the wrong form or user");
            return Err(bad());
        }
        let hash = hash_token(token.expose());
        let op = DeviceOp::Use {
            user: user.to_owned(),
            hash,
            at: now_ms(),
        };
        match self.hub.store.devices(op).await {
            Ok(Ok(DeviceAnswer::Found(true))) => {
                self.hub
                    .failed_logins
                    .give_back(ip, std::time::Instant::now());
                Ok((turn, hash))
            }
            Ok(Ok(_)) => {
                tracing::info!(user, "refused an unknown or revoked device token");
                Err(bad())
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot look a device token up");
                Err(Refusal::new(ErrorCode::Internal, texts::STORE_FAILED))
            }
            Err(_) => Err(Refusal::new(ErrorCode::Internal, texts::STORE_FAILED)),
        }
    }
}

/// Whether `token` looks like one the server issues: 64 lowercase hex
/// digits (anything else cannot be one; not looked up).
fn is_token_form(token: &str) -> bool {
    token.len() == TOKEN_BYTES * 2
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The label as stored and listed: control characters replaced, cut to
/// [`MAX_DEVICE_LABEL_LEN`] bytes on a character boundary, never empty.
fn clean_label(label: &str) -> String {
    let mut out = String::new();
    for c in label.trim().chars() {
        let c = if c.is_control() { '?' } else { c };
        if out.len() + c.len_utf8() > MAX_DEVICE_LABEL_LEN {
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        "unnamed device".into()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded_and_printable() {
        assert_eq!(clean_label("msgd@host"), "msgd@host");
        assert_eq!(clean_label("  "), "unnamed device");
        assert_eq!(clean_label("a\nb\u{1b}[2J"), "a?b?[2J");
        let long = "é".repeat(100);
        let cleaned = clean_label(&long);
        assert!(cleaned.len() <= MAX_DEVICE_LABEL_LEN);
        assert!(cleaned.chars().all(|c| c == 'é'));
    }

    #[test]
    fn only_64_lowercase_hex_digits_are_tokens() {
        assert!(is_token_form(&"ab".repeat(32)));
        assert!(!is_token_form(&"AB".repeat(32)));
        assert!(!is_token_form(&"ab".repeat(31)));
        assert!(!is_token_form(""));
        assert!(!is_token_form(&"zz".repeat(32)));
    }
}

//! What `msg login` decides before and after asking for a password: the
//! server is asked first what a login would meet, so that no one types a
//! password that cannot help (an unknown name on a server without
//! registration, a blocked account), a typo never creates an account
//! without a yes, and a wrong password is asked for again.

use std::io::{BufRead, IsTerminal, Write};

use msg_proto::control::{Reply, Request, Trust, codes};
use msg_proto::{ErrorCode, Refusal};

use crate::client::Client;

/// Wrong passwords asked again on a terminal: the third in a row blocks the
/// account, so a fourth prompt could only be refused.
pub(super) const PASSWORD_TRIES: u32 = 3;

/// How the login goes on after the server's answer about the account.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Plan {
    Login,
    Register,
}

/// What the server says of the account, or `None` when it cannot say (a
/// server older than the `account` request): then the login just tries.
pub(super) async fn ask_server(
    client: &mut Client,
    user: &str,
    server: &str,
    trust: &Trust,
) -> Result<Option<(bool, bool, Option<u64>)>, Refusal> {
    let request = Request::Account {
        user: user.to_owned(),
        server: server.to_owned(),
        trust: trust.clone(),
    };
    match client.call(request).await? {
        Reply::Account {
            exists,
            registration,
            blocked_for,
        } => Ok(Some((exists, registration, blocked_for))),
        Reply::Error { code, .. } if code == codes::INVALID_COMMAND => Ok(None),
        // Other errors become the refusal they carry, fingerprint included.
        other => Err(super::unexpected(other)),
    }
}

/// Decides from the server's answer; `interactive` when a question can be
/// asked on the terminal.
pub(super) fn plan(
    user: &str,
    server: &str,
    register: bool,
    answer: (bool, bool, Option<u64>),
    interactive: bool,
) -> Result<Plan, Refusal> {
    let (exists, registration, blocked_for) = answer;
    if let Some(secs) = blocked_for {
        return Err(Refusal::new(
            ErrorCode::LoginBlocked.as_str(),
            // The server's own text; the wait is added where refusals are
            // printed, as for a refused login.
            "Your account is blocked due to multiple login failures. Please try again later",
        )
        .retry_after(secs));
    }
    match (exists, register) {
        (true, false) => Ok(Plan::Login),
        (true, true) => Err(Refusal::new(
            ErrorCode::UserExists.as_str(),
            format!(
                "Error. The account {user} already exists on {server}; log in with `msg login {user}`"
            ),
        )),
        (false, _) if !registration => Err(Refusal::new(
            ErrorCode::InvalidUser.as_str(),
            format!(
                "Error. Invalid user: {server} has no account {user} (and does not let new users register)"
            ),
        )),
        (false, true) => Ok(Plan::Register),
        (false, false) if interactive => {
            if confirm(&format!(
                "{server} has no account {user}. Create it? [y/N] "
            )) {
                Ok(Plan::Register)
            } else {
                Err(Refusal::new(
                    ErrorCode::InvalidUser.as_str(),
                    format!("Not created: {server} has no account {user}"),
                ))
            }
        }
        (false, false) => Err(Refusal::new(
            ErrorCode::InvalidUser.as_str(),
            format!(
                "Error. Invalid user: {server} has no account {user}; create it with `msg register {user}`"
            ),
        )),
    }
}

/// Whether a terminal can be asked (the password is not piped in).
pub(super) fn interactive(password_stdin: bool) -> bool {
    !password_stdin && std::io::stdin().is_terminal()
}

/// Whether a login refused with `code` is worth another password.
pub(super) fn ask_again(code: &str) -> bool {
    code == ErrorCode::InvalidPassword.as_str()
}

fn confirm(question: &str) -> bool {
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{question}");
    let _ = stderr.flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(result: Result<Plan, Refusal>) -> String {
        result.expect_err("refused").code.into_owned()
    }

    #[test]
    fn nothing_is_asked_that_cannot_help() {
        let plan =
            |register, answer, interactive| plan("ghost", "srv", register, answer, interactive);
        assert_eq!(
            plan(false, (true, false, None), false).unwrap(),
            Plan::Login
        );
        assert_eq!(
            code(plan(false, (true, false, Some(30)), true)),
            "login_blocked"
        );
        assert_eq!(
            code(plan(false, (false, false, None), true)),
            "invalid_user"
        );
        assert_eq!(code(plan(true, (false, false, None), true)), "invalid_user");
        assert_eq!(code(plan(true, (true, true, None), true)), "user_exists");
        assert_eq!(
            plan(true, (false, true, None), false).unwrap(),
            Plan::Register
        );
        // Without a terminal a typo never creates an account.
        assert_eq!(
            code(plan(false, (false, true, None), false)),
            "invalid_user"
        );
    }
}

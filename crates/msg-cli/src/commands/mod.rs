//! One function per subcommand: build the request, call msgd, print the
//! reply. Here: dispatch and what every command shares; the commands
//! themselves by group in `session` (login, logout, status, daemon),
//! `messaging` (send, broadcast, who, block), `inbox` (inbox, watch),
//! `private` and `completion`.

mod completion;
mod inbox;
mod login_flow;
mod messaging;
mod private;
mod session;

use std::process::ExitCode;

use clap::ValueEnum;
use msg_local::paths::Paths;
use msg_proto::control::{Reply, Request, codes};
use msg_proto::{ErrorCode, Refusal, validate};
use serde_json::json;

use crate::cli::{Cli, Command, PrivateCommand};
use crate::client::Client;
use crate::complete;
use crate::output::Output;

pub async fn run(cli: Cli, out: Output) -> ExitCode {
    let named = named_user(&cli.command);
    match dispatch(cli.command, out).await {
        Ok(code) => code,
        Err(failure) => out.fail(&naming(failure, named.as_deref())),
    }
}

/// The other user a command names, for an error about that user.
fn named_user(command: &Command) -> Option<String> {
    match command {
        Command::Send { user, .. }
        | Command::Block { user }
        | Command::Unblock { user }
        | Command::Private(
            PrivateCommand::Start { user }
            | PrivateCommand::Accept { user }
            | PrivateCommand::Decline { user }
            | PrivateCommand::Send { user, .. }
            | PrivateCommand::Stop { user },
        ) => Some(user.clone()),
        _ => None,
    }
}

/// The server's `Error. Invalid user` says which user: the one named.
fn naming(failure: Refusal, user: Option<&str>) -> Refusal {
    match user {
        Some(user) if failure.code == ErrorCode::InvalidUser.as_str() => Refusal {
            message: format!("{}: {user} has no account", failure.message),
            ..failure
        },
        _ => failure,
    }
}

pub(super) fn paths() -> Result<Paths, Refusal> {
    Paths::from_env().map_err(|e| Refusal::new(codes::INTERNAL, e.to_string()))
}

pub(super) fn unexpected(reply: Reply) -> Refusal {
    match reply {
        Reply::Error {
            code,
            message,
            retry_after,
            fingerprint,
        } => Refusal {
            code: code.into(),
            message,
            retry_after,
            fingerprint,
        },
        other => {
            tracing::warn!("unexpected reply: {other:?}");
            Refusal::new(codes::INTERNAL, "msgd sent an unexpected reply")
        }
    }
}

/// The words of a message joined, checked before they travel: a text over
/// the limit is refused here with its length, rather than as a frame too
/// large somewhere on the way.
pub(super) fn checked_text(words: Vec<String>) -> Result<String, Refusal> {
    let text = words.join(" ");
    match validate::message_text(&text) {
        Ok(_) => Ok(text),
        Err(validate::TextError::Empty) => Err(Refusal::new(
            ErrorCode::EmptyMessage,
            "Error. Message is empty",
        )),
        Err(validate::TextError::TooLong) => Err(Refusal::new(
            ErrorCode::MessageTooLong,
            format!(
                "Error. Message too long: {} characters, at most {}",
                text.trim().chars().count(),
                validate::MAX_TEXT_CHARS
            ),
        )),
    }
}

/// Sends a request whose success is `done`; its text, if any.
pub(super) async fn simple_reply(request: Request) -> Result<Option<String>, Refusal> {
    let mut client = Client::require(&paths()?).await?;
    match client.call(request).await? {
        Reply::Done { message } => Ok(message),
        other => Err(unexpected(other)),
    }
}

/// Sends a request whose success is `done` and prints it.
pub(super) async fn simple(out: Output, request: Request) -> Result<ExitCode, Refusal> {
    let mut client = Client::require(&paths()?).await?;
    match client.call(request).await? {
        Reply::Done { message } => {
            out.done(message.as_deref(), json!({}));
            Ok(ExitCode::SUCCESS)
        }
        other => Err(unexpected(other)),
    }
}

async fn dispatch(command: Command, out: Output) -> Result<ExitCode, Refusal> {
    match command {
        Command::Login(args) => session::login(out, args, false).await,
        Command::Register(args) => session::login(out, args, true).await,
        Command::Logout => session::logout(out).await,
        Command::Status => session::status(out).await,
        Command::Send { user, text } => messaging::send(out, user, checked_text(text)?).await,
        Command::Broadcast { text } => {
            let text = checked_text(text)?;
            let done = simple_reply(Request::Broadcast { text }).await?;
            out.done(
                Some(
                    done.as_deref()
                        .unwrap_or("Broadcast sent to everyone online"),
                ),
                json!({}),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Who { since } => messaging::who(out, since).await,
        Command::Block { user } => simple(out, Request::Block { user }).await,
        Command::Unblock { user } => simple(out, Request::Unblock { user }).await,
        Command::Inbox { all, peek } => inbox::inbox(out, all, peek).await,
        Command::Watch => inbox::watch(out).await,
        Command::Private(command) => private::private(out, command).await,
        Command::Daemon(command) => session::daemon(out, command).await,
        Command::Completions { shell } => {
            let name = shell.to_possible_value().map(|v| v.get_name().to_owned());
            if let Some(script) = name.as_deref().and_then(complete::script) {
                print!("{script}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::CompleteWords {
            shell,
            cword,
            words,
        } => {
            completion::complete_words(&shell, cword, &words).await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

//! `msg private ...`: start (waits for the answer), accept, decline, send,
//! stop, list.

use std::process::ExitCode;
use std::time::Duration;

use msg_proto::Refusal;
use msg_proto::control::{Reply, Request};
use serde_json::json;

use super::{checked_text, paths, simple, simple_reply, unexpected};
use crate::cli::PrivateCommand;
use crate::client::Client;
use crate::output::Output;

/// `msg private start` waits for the other user (up to the server's 60 s).
const PRIVATE_START_TIMEOUT: Duration = Duration::from_secs(90);

pub(super) async fn private(out: Output, command: PrivateCommand) -> Result<ExitCode, Refusal> {
    match command {
        PrivateCommand::Start { user } => {
            let mut client = Client::require(&paths()?).await?;
            match client
                .call_within(Request::PrivateStart { user }, PRIVATE_START_TIMEOUT)
                .await?
            {
                Reply::Done { message } => {
                    out.done(message.as_deref(), json!({}));
                    Ok(ExitCode::SUCCESS)
                }
                other => Err(unexpected(other)),
            }
        }
        PrivateCommand::Accept { user } => simple(out, Request::PrivateAccept { user }).await,
        PrivateCommand::Decline { user } => {
            let done = simple_reply(Request::PrivateDecline { user: user.clone() }).await?;
            let default = format!("Declined private messaging with {user}");
            out.done(Some(done.as_deref().unwrap_or(&default)), json!({}));
            Ok(ExitCode::SUCCESS)
        }
        PrivateCommand::Send { user, text } => {
            let text = checked_text(text)?;
            let done = simple_reply(Request::PrivateSend {
                user: user.clone(),
                text,
            })
            .await?;
            let default = format!("Delivered privately to {user}");
            out.done(Some(done.as_deref().unwrap_or(&default)), json!({}));
            Ok(ExitCode::SUCCESS)
        }
        PrivateCommand::Stop { user } => simple(out, Request::PrivateStop { user }).await,
        PrivateCommand::List => {
            let mut client = Client::require(&paths()?).await?;
            match client.call(Request::PrivateList).await? {
                Reply::Private(list) => {
                    if out.json {
                        out.json(&json!({"sessions": list.sessions, "incoming": list.incoming, "outgoing": list.outgoing}));
                    } else {
                        if list.sessions.is_empty()
                            && list.incoming.is_empty()
                            && list.outgoing.is_empty()
                        {
                            out.line("No private sessions or requests");
                        }
                        for user in &list.sessions {
                            out.line(&format!("{user}: private session open"));
                        }
                        for user in &list.incoming {
                            out.line(&format!("{user}: asks you (msg private accept {user})"));
                        }
                        for user in &list.outgoing {
                            out.line(&format!("{user}: waiting for an answer"));
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                other => Err(unexpected(other)),
            }
        }
    }
}

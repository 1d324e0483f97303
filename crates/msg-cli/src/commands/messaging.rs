//! The messaging commands: send, who (broadcast, block and unblock are
//! dispatched directly).

use std::process::ExitCode;

use msg_proto::Refusal;
use msg_proto::control::{Reply, Request};
use serde_json::json;

use super::{paths, unexpected};
use crate::client::Client;
use crate::output::Output;

pub(super) async fn send(out: Output, to: String, text: String) -> Result<ExitCode, Refusal> {
    let mut client = Client::require(&paths()?).await?;
    match client
        .call(Request::Send {
            to: to.clone(),
            text,
        })
        .await?
    {
        Reply::Sent { msg_id, queued } => {
            let message = if queued {
                format!("{to} is offline; the message is queued for their next login")
            } else {
                format!("Delivered to {to}")
            };
            out.done(Some(&message), json!({"msg_id": msg_id, "queued": queued}));
            Ok(ExitCode::SUCCESS)
        }
        other => Err(unexpected(other)),
    }
}

pub(super) async fn who(out: Output, since: Option<u64>) -> Result<ExitCode, Refusal> {
    let mut client = Client::require(&paths()?).await?;
    match client.call(Request::Who { since }).await? {
        Reply::Users { users } => {
            if out.json {
                out.json(&json!({"users": users}));
            } else if users.is_empty() {
                out.line(&match since {
                    None => "No one else is online".to_owned(),
                    Some(secs) => format!("No one else was online in the last {secs} s"),
                });
            } else {
                for user in &users {
                    out.line(user);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        other => Err(unexpected(other)),
    }
}

//! Reading what arrived: `msg inbox` (a listing, then marked read) and
//! `msg watch` (a stream until interrupted).

use std::process::ExitCode;

use msg_proto::Refusal;
use msg_proto::control::{Reply, Request, codes};

use super::{paths, unexpected};
use crate::client::Client;
use crate::output::Output;

pub(super) async fn inbox(out: Output, all: bool, peek: bool) -> Result<ExitCode, Refusal> {
    let mut client = Client::require(&paths()?).await?;
    client.send(Request::Inbox { all, peek }).await?;
    let mut shown = 0u64;
    loop {
        match client.next().await? {
            Some(Reply::Item(item)) => {
                out.item(&item, true);
                shown += 1;
            }
            Some(Reply::End) => {
                if shown == 0 && !out.json {
                    out.line(if all {
                        "The inbox is empty"
                    } else {
                        "No unread items (`msg inbox --all` shows the read ones)"
                    });
                }
                return Ok(ExitCode::SUCCESS);
            }
            Some(other) => return Err(unexpected(other)),
            None => {
                return Err(Refusal::new(
                    codes::DAEMON_UNREACHABLE,
                    "The connection to msgd was lost",
                ));
            }
        }
    }
}

pub(super) async fn watch(out: Output) -> Result<ExitCode, Refusal> {
    let mut client = Client::require(&paths()?).await?;
    client.send(Request::Watch).await?;
    loop {
        match client.next().await? {
            Some(Reply::Item(item)) => out.item(&item, false),
            Some(other) => return Err(unexpected(other)),
            None => {
                return Err(Refusal::new(
                    codes::DAEMON_UNREACHABLE,
                    "msgd stopped; `msg watch` ends (restart it with `msg login USER`)",
                ));
            }
        }
    }
}

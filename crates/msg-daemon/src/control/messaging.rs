//! The messaging requests, relayed to the server: send, broadcast, who,
//! block, unblock; and the names shell completion offers.

use std::collections::BTreeSet;
use std::time::Duration;

use msg_proto::control::Reply;
use msg_proto::server::ServerFrame;

use crate::replies;
use crate::state::Shared;
use crate::upstream::{ServerRequest, Upstream};

/// How long completion may wait for the server's list of online users.
const ONLINE_DEADLINE: Duration = Duration::from_millis(150);
/// Inbox items looked at for recent correspondents.
const RECENT_ITEMS: usize = 500;

pub async fn send(upstream: &Upstream, to: String, text: &str) -> Reply {
    let text = match replies::message_text(text) {
        Ok(text) => text,
        Err(reply) => return reply,
    };
    match upstream.request(ServerRequest::Send { to, text }).await {
        Ok(ServerFrame::Sent { msg_id, queued, .. }) => Reply::Sent { msg_id, queued },
        Ok(other) => replies::unexpected(other),
        Err(e) => replies::refused(e),
    }
}

pub async fn broadcast(upstream: &Upstream, text: &str) -> Reply {
    match replies::message_text(text) {
        Ok(text) => replies::relay(upstream, ServerRequest::Broadcast { text }).await,
        Err(reply) => reply,
    }
}

pub async fn who(upstream: &Upstream, since: Option<u64>) -> Reply {
    let request = match since {
        Some(secs) => ServerRequest::WhoSince { secs },
        None => ServerRequest::Who,
    };
    match upstream.request(request).await {
        Ok(ServerFrame::Users { users, .. }) => Reply::Users { users },
        Ok(other) => replies::unexpected(other),
        Err(e) => replies::refused(e),
    }
}

pub async fn block(upstream: &Upstream, user: String) -> Reply {
    replies::relay(upstream, ServerRequest::Block { user }).await
}

pub async fn unblock(upstream: &Upstream, user: String) -> Reply {
    replies::relay(upstream, ServerRequest::Unblock { user }).await
}

/// Names for completing a USER argument: the users online now (when the
/// server answers in time) and the senders of recent inbox items, sorted.
pub async fn names(shared: &Shared, upstream: &Upstream) -> Reply {
    let mut names = BTreeSet::new();
    let online = tokio::time::timeout(ONLINE_DEADLINE, upstream.request(ServerRequest::Who)).await;
    if let Ok(Ok(ServerFrame::Users { users, .. })) = online {
        names.extend(users);
    }
    let recent = shared
        .inbox_account()
        .ok()
        .flatten()
        .map(|account| shared.inbox().recent_senders(&account, RECENT_ITEMS));
    if let Some(Ok(senders)) = recent {
        names.extend(senders);
    }
    if let Some(me) = shared.status().user.as_deref() {
        names.remove(me);
    }
    Reply::Users {
        users: names.into_iter().collect(),
    }
}

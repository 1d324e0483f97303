//! The messaging requests, relayed to the server: send, broadcast, who,
//! block, unblock.

use msg_proto::control::Reply;
use msg_proto::server::ServerFrame;

use crate::replies;
use crate::upstream::{ServerRequest, Upstream};

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

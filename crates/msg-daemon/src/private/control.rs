//! What `msg private ...` asks: start (and wait for the answer), accept,
//! decline, send over the direct connection, stop, list.

use std::time::Duration;

use msg_proto::control::{Reply, codes};
use msg_proto::server::ServerFrame;
use tokio::sync::oneshot;

use crate::private::state::{PeerCommand, Private, PrivateOutcome};
use crate::replies;
use crate::texts;
use crate::upstream::{Note, ServerRequest, Upstream};

/// How long `msg private start` waits for the other user (the server's own
/// request timeout is 60 s).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(75);
/// How long `msg private send` waits for the peer's daemon to store it.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Asks `user` and waits until the session is open or refused.
pub async fn start(private: &Private, upstream: &Upstream, user: String) -> Reply {
    let (tx, rx) = oneshot::channel();
    {
        let mut state = private.state();
        if state
            .sessions
            .get(&user)
            .is_some_and(|s| s.connection.is_some())
        {
            return Reply::done(texts::private_started(&user));
        }
        // Registered before asking, so that a fast answer is not missed.
        state.waiters.insert(user.clone(), tx);
        state.outgoing.insert(user.clone());
    }
    let forget = || {
        let mut state = private.state();
        state.waiters.remove(&user);
        state.outgoing.remove(&user);
    };
    let request = ServerRequest::PrivateRequest { user: user.clone() };
    match upstream.request(request).await {
        Ok(ServerFrame::Ok { .. }) => {}
        Ok(other) => {
            forget();
            return replies::unexpected(other);
        }
        Err(e) => {
            forget();
            return replies::refused(e);
        }
    }
    match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
        Ok(Ok(PrivateOutcome::Ready)) => Reply::done(texts::private_started(&user)),
        Ok(Ok(PrivateOutcome::Declined)) => {
            Reply::error(codes::PRIVATE_DECLINED, texts::private_declined(&user))
        }
        Ok(Ok(PrivateOutcome::Expired)) | Err(_) => {
            forget();
            Reply::error(codes::PRIVATE_EXPIRED, texts::private_unanswered(&user))
        }
        Ok(Ok(PrivateOutcome::Unreachable)) => Reply::error(
            codes::PRIVATE_UNREACHABLE,
            texts::private_unreachable(&user),
        ),
        Ok(Ok(PrivateOutcome::Unverified)) => {
            Reply::error(codes::PRIVATE_UNREACHABLE, texts::private_unverified(&user))
        }
        Ok(Ok(PrivateOutcome::Insecure)) => {
            Reply::error(codes::PRIVATE_UNREACHABLE, texts::private_insecure(&user))
        }
        Ok(Ok(PrivateOutcome::Gone)) | Ok(Err(_)) => {
            Reply::error(codes::NOT_LOGGED_IN, texts::NOT_LOGGED_IN)
        }
    }
}

/// Accepts `user`'s request; the session opens once the caller connects.
pub async fn accept(private: &Private, upstream: &Upstream, user: String) -> Reply {
    let request = ServerRequest::PrivateAccept { user: user.clone() };
    let reply = replies::relay(upstream, request).await;
    if !matches!(reply, Reply::Done { .. }) {
        return reply;
    }
    private.state().incoming.remove(&user);
    Reply::done(texts::private_started(&user))
}

pub async fn decline(private: &Private, upstream: &Upstream, user: String) -> Reply {
    let request = ServerRequest::PrivateDecline { user: user.clone() };
    let reply = replies::relay(upstream, request).await;
    if matches!(reply, Reply::Done { .. }) {
        private.state().incoming.remove(&user);
    }
    reply
}

/// Sends over the direct connection only; answers once the peer stored it.
pub async fn send(private: &Private, upstream: &Upstream, user: String, text: &str) -> Reply {
    let not_enabled = || {
        Reply::error(
            codes::PRIVATE_NOT_ENABLED,
            texts::private_not_enabled(&user),
        )
    };
    let text = match replies::message_text(text) {
        Ok(text) => text,
        Err(reply) => return reply,
    };
    let Some(connection) = private.state().connection(&user) else {
        return not_enabled();
    };
    let (reply, stored) = oneshot::channel();
    let queued = connection.send(PeerCommand::Send { text, reply }).await;
    // Only the session may keep its channel open: a stop while we wait for
    // the ack must close the connection at once, not when we give up.
    drop(connection);
    if queued.is_err() {
        return not_enabled();
    }
    // Counts as activity whether or not the ack comes: the user did act.
    upstream.note(Note::Activity);
    match tokio::time::timeout(ACK_TIMEOUT, stored).await {
        Ok(Ok(())) => Reply::Done { message: None },
        // The session ended before the peer stored it.
        Ok(Err(_)) => not_enabled(),
        Err(_) => Reply::error(codes::INTERNAL, texts::private_unconfirmed(&user)),
    }
}

/// Ends the session with `user` on our side.
pub async fn stop(private: &Private, upstream: &Upstream, user: String) -> Reply {
    // Ending it locally drops the connection's channel: it says bye.
    if !private.state().end(&user, None) {
        return Reply::error(codes::NO_PRIVATE_SESSION, texts::no_private_session(&user));
    }
    // The peer also learns it from the bye; the server must be told either
    // way, so that it stops pairing us.
    let request = ServerRequest::PrivateEnd { user: user.clone() };
    if let Err(e) = upstream.request(request).await {
        tracing::info!(
            "the server was not told that the private session ended: {}",
            e.message
        );
    }
    Reply::done(texts::private_stopped(&user))
}

pub fn list(private: &Private) -> Reply {
    Reply::Private(private.state().list())
}

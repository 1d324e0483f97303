//! The control server: accepts `msg` connections on the local socket, checks
//! who is calling, does the version handshake and serves requests.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use interprocess::local_socket::tokio::{Listener, Stream, prelude::*};
use msg_proto::control::{CONTROL_VERSION, InboxItem, ItemKind, Reply, Request, Status, codes};
use msg_proto::server::ServerFrame;
use msg_proto::validate::{self, TextError};
use msg_proto::{ErrorCode, JsonLines, Refusal};
use tokio::sync::{broadcast, oneshot};
use tokio_util::codec::Framed;

use crate::link::{LinkHandle, Note, ServerRequest};
use crate::state::{NOT_LOGGED_IN, PeerCommand, PrivateOutcome, Shared};

type Conn = Framed<Stream, JsonLines<Request, Reply>>;

/// How long `msg private start` waits for the other user (the server's own
/// request timeout is 60 s).
const PRIVATE_ANSWER_TIMEOUT: Duration = Duration::from_secs(75);
/// How long `msg private send` waits for the peer's daemon to store it.
const PRIVATE_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts control connections until shutdown.
pub async fn serve(listener: Listener, shared: Arc<Shared>, link: LinkHandle) {
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(stream) => {
                    let (shared, link) = (Arc::clone(&shared), link.clone());
                    tokio::spawn(async move {
                        if let Err(e) = handle(stream, shared, link).await {
                            tracing::debug!("control connection ended: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("accepting a control connection failed: {e}");
                    // Do not spin if the error persists (e.g. out of fds).
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

fn authorized(stream: &Stream) -> bool {
    #[cfg(unix)]
    {
        match msg_local::socket::peer_is_uid(stream, msg_local::socket::current_uid()) {
            Ok(same) => same,
            Err(e) => {
                tracing::warn!("cannot read the caller's credentials: {e}");
                false
            }
        }
    }
    #[cfg(not(unix))]
    {
        // Named pipes: the pipe's ACL is the check (see `socket`).
        let _ = stream;
        true
    }
}

async fn handle(stream: Stream, shared: Arc<Shared>, link: LinkHandle) -> std::io::Result<()> {
    let allowed = authorized(&stream);
    let mut conn: Conn = Framed::new(stream, JsonLines::new());
    if !allowed {
        tracing::warn!("refused a control connection from another user");
        // Take the caller's hello first: closing with it unread would reset
        // the connection and the caller might never see why.
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.next()).await;
        return conn
            .send(Reply::error(
                "permission_denied",
                "Permission denied: msgd belongs to another user",
            ))
            .await;
    }
    match conn.next().await {
        Some(Ok(Ok(Request::Hello { version }))) if version == CONTROL_VERSION => {
            let daemon = format!("msgd {}", env!("CARGO_PKG_VERSION"));
            conn.send(Reply::Hello {
                version: CONTROL_VERSION,
                daemon,
            })
            .await?;
        }
        Some(Ok(Ok(Request::Hello { version }))) => {
            let message = format!(
                "msg and msgd versions differ (control protocol {version}, msgd speaks {CONTROL_VERSION}); restart msgd with `msg daemon stop`"
            );
            return conn
                .send(Reply::error(codes::VERSION_MISMATCH, message))
                .await;
        }
        Some(Ok(_)) => {
            return conn
                .send(Reply::error(
                    codes::INVALID_COMMAND,
                    "Error. Invalid command",
                ))
                .await;
        }
        Some(Err(e)) => return Err(e),
        None => return Ok(()),
    }
    while let Some(frame) = conn.next().await {
        let request = match frame? {
            Ok(request) => request,
            Err(e) => {
                tracing::debug!("bad control frame: {e}");
                conn.send(Reply::error(
                    codes::INVALID_COMMAND,
                    "Error. Invalid command",
                ))
                .await?;
                continue;
            }
        };
        match request {
            Request::Watch => return watch(conn, &shared).await,
            Request::Inbox { all, peek } => inbox(&mut conn, &shared, all, peek).await?,
            Request::Shutdown => {
                // Log out first so that the others see us leave.
                let _ = link.logout().await;
                conn.send(Reply::done("msgd stopped")).await?;
                shared.shutdown.cancel();
                return Ok(());
            }
            request => {
                let reply = answer(request, &shared, &link).await;
                conn.send(reply).await?;
            }
        }
    }
    Ok(())
}

fn link_error(e: Refusal) -> Reply {
    Reply::Error {
        code: e.code.into_owned(),
        message: e.message,
    }
}

fn text_error(e: TextError) -> Reply {
    match e {
        TextError::Empty => {
            Reply::error(ErrorCode::EmptyMessage.as_str(), "Error. Message is empty")
        }
        TextError::TooLong => Reply::error(
            ErrorCode::MessageTooLong.as_str(),
            "Error. Message too long",
        ),
    }
}

/// Relays a request whose reply is `ok` with a text.
async fn simple(link: &LinkHandle, request: ServerRequest) -> Reply {
    match link.request(request).await {
        Ok(ServerFrame::Ok { message, .. }) => Reply::Done { message },
        Ok(other) => unexpected(other),
        Err(e) => link_error(e),
    }
}

fn unexpected(frame: ServerFrame) -> Reply {
    tracing::warn!("unexpected reply from the server: {frame:?}");
    Reply::error(codes::INTERNAL, "Unexpected reply from the server")
}

async fn answer(request: Request, shared: &Shared, link: &LinkHandle) -> Reply {
    match request {
        Request::Hello { .. } => Reply::error(codes::INVALID_COMMAND, "Error. Invalid command"),
        Request::Login {
            user,
            password,
            server,
            register,
        } => match link.login(server, user, password, register).await {
            Ok(welcome) => Reply::done(welcome),
            Err(e) => link_error(e),
        },
        Request::Logout => match link.logout().await {
            Ok(()) => Reply::Done { message: None },
            Err(e) => link_error(e),
        },
        Request::Status => status(shared),
        Request::Send { to, text } => {
            let text = match validate::message_text(&text) {
                Ok(text) => text.to_owned(),
                Err(e) => return text_error(e),
            };
            match link.request(ServerRequest::Send { to, text }).await {
                Ok(ServerFrame::Sent { msg_id, queued, .. }) => Reply::Sent { msg_id, queued },
                Ok(other) => unexpected(other),
                Err(e) => link_error(e),
            }
        }
        Request::Broadcast { text } => match validate::message_text(&text) {
            Ok(text) => {
                simple(
                    link,
                    ServerRequest::Broadcast {
                        text: text.to_owned(),
                    },
                )
                .await
            }
            Err(e) => text_error(e),
        },
        Request::Who { since } => {
            let request = match since {
                Some(secs) => ServerRequest::WhoSince { secs },
                None => ServerRequest::Who,
            };
            match link.request(request).await {
                Ok(ServerFrame::Users { users, .. }) => Reply::Users { users },
                Ok(other) => unexpected(other),
                Err(e) => link_error(e),
            }
        }
        Request::Block { user } => simple(link, ServerRequest::Block { user }).await,
        Request::Unblock { user } => simple(link, ServerRequest::Unblock { user }).await,
        Request::PrivateStart { user } => private_start(shared, link, user).await,
        Request::PrivateAccept { user } => {
            let reply = simple(link, ServerRequest::PrivateAccept { user: user.clone() }).await;
            if !matches!(reply, Reply::Done { .. }) {
                return reply;
            }
            shared.private().incoming.remove(&user);
            Reply::done(format!("Start private messaging with {user}"))
        }
        Request::PrivateDecline { user } => {
            let reply = simple(link, ServerRequest::PrivateDecline { user: user.clone() }).await;
            if matches!(reply, Reply::Done { .. }) {
                shared.private().incoming.remove(&user);
            }
            reply
        }
        Request::PrivateSend { user, text } => private_send(shared, link, user, &text).await,
        Request::PrivateStop { user } => {
            // Ending it locally drops the connection's channel: it says bye.
            if !shared.private().end(&user, None) {
                return Reply::error(
                    codes::NO_PRIVATE_SESSION,
                    format!("Error. No private session with {user}"),
                );
            }
            // The peer also learns it from the bye; the server must be told
            // either way, so that it stops pairing us.
            if let Err(e) = link
                .request(ServerRequest::PrivateEnd { user: user.clone() })
                .await
            {
                tracing::info!(
                    "the server was not told that the private session ended: {}",
                    e.message
                );
            }
            Reply::done(format!("Private messaging with {user} stopped"))
        }
        Request::PrivateList => Reply::Private(shared.private().list()),
        // Handled by the connection loop.
        Request::Watch | Request::Inbox { .. } | Request::Shutdown => {
            Reply::error(codes::INVALID_COMMAND, "Error. Invalid command")
        }
    }
}

/// Sends over the direct connection only; answers once the peer stored it.
async fn private_send(shared: &Shared, link: &LinkHandle, user: String, text: &str) -> Reply {
    let not_enabled = || {
        Reply::error(
            codes::PRIVATE_NOT_ENABLED,
            format!("Error. Private messaging to {user} not enabled"),
        )
    };
    let text = match validate::message_text(text) {
        Ok(text) => text.to_owned(),
        Err(e) => return text_error(e),
    };
    let Some(peer) = shared.private().link(&user) else {
        return not_enabled();
    };
    let (reply, stored) = oneshot::channel();
    if peer.send(PeerCommand::Send { text, reply }).await.is_err() {
        return not_enabled();
    }
    // Counts as activity whether or not the ack comes: the user did act.
    link.note(Note::Activity);
    match tokio::time::timeout(PRIVATE_ACK_TIMEOUT, stored).await {
        Ok(Ok(())) => Reply::Done { message: None },
        // The session ended before the peer stored it.
        Ok(Err(_)) => not_enabled(),
        Err(_) => Reply::error(
            codes::INTERNAL,
            format!("Error. {user} did not confirm the private message"),
        ),
    }
}

async fn private_start(shared: &Shared, link: &LinkHandle, user: String) -> Reply {
    let (tx, rx) = oneshot::channel();
    {
        let mut private = shared.private();
        if private
            .sessions
            .get(&user)
            .is_some_and(|s| s.link.is_some())
        {
            return Reply::done(format!("Start private messaging with {user}"));
        }
        // Registered before asking, so that a fast answer is not missed.
        private.waiters.insert(user.clone(), tx);
        private.outgoing.insert(user.clone());
    }
    let forget = |shared: &Shared| {
        let mut private = shared.private();
        private.waiters.remove(&user);
        private.outgoing.remove(&user);
    };
    match link
        .request(ServerRequest::PrivateRequest { user: user.clone() })
        .await
    {
        Ok(ServerFrame::Ok { .. }) => {}
        Ok(other) => {
            forget(shared);
            return unexpected(other);
        }
        Err(e) => {
            forget(shared);
            return link_error(e);
        }
    }
    match tokio::time::timeout(PRIVATE_ANSWER_TIMEOUT, rx).await {
        Ok(Ok(PrivateOutcome::Ready)) => {
            Reply::done(format!("Start private messaging with {user}"))
        }
        Ok(Ok(PrivateOutcome::Declined)) => Reply::error(
            codes::PRIVATE_DECLINED,
            format!("{user} declined private messaging"),
        ),
        Ok(Ok(PrivateOutcome::Expired)) | Err(_) => {
            forget(shared);
            Reply::error(
                codes::PRIVATE_EXPIRED,
                format!("Error. {user} did not answer"),
            )
        }
        Ok(Ok(PrivateOutcome::Unreachable)) => Reply::error(
            codes::PRIVATE_UNREACHABLE,
            format!("Error. Cannot connect to {user} for private messaging"),
        ),
        Ok(Ok(PrivateOutcome::Gone)) | Ok(Err(_)) => {
            Reply::error(codes::NOT_LOGGED_IN, NOT_LOGGED_IN)
        }
    }
}

fn status(shared: &Shared) -> Reply {
    let link = shared.status().clone();
    let unread = match shared.inbox_account() {
        Ok(Some(account)) => shared.inbox().unread(&account).unwrap_or(0),
        _ => 0,
    };
    Reply::Status(Status {
        pid: std::process::id(),
        server: link.server,
        user: link.user,
        state: link.state,
        unread,
        private: shared.private().sessions.keys().cloned().collect(),
        watchers: shared.events.receiver_count() as u64,
    })
}

async fn inbox(conn: &mut Conn, shared: &Shared, all: bool, peek: bool) -> std::io::Result<()> {
    let listed = (|| {
        let Some(account) = shared.inbox_account()? else {
            return Ok((None, Vec::new()));
        };
        let items = shared.inbox().list(&account, all)?;
        Ok::<_, crate::inbox::InboxError>((Some(account), items))
    })();
    let (account, items) = match listed {
        Ok(listed) => listed,
        Err(e) => {
            tracing::error!("{e}");
            return conn
                .send(Reply::error(codes::INTERNAL, "The inbox cannot be read"))
                .await;
        }
    };
    let last = items.last().map(|item| item.id);
    for item in items {
        conn.feed(Reply::Item(item)).await?;
    }
    conn.send(Reply::End).await?;
    // Marked read only once the listing reached the CLI.
    if let (false, Some(account), Some(last)) = (peek, account, last)
        && let Err(e) = shared.inbox().mark_read(&account, last)
    {
        tracing::error!("{e}");
    }
    Ok(())
}

async fn watch(mut conn: Conn, shared: &Shared) -> std::io::Result<()> {
    let mut events = shared.events.subscribe();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(item) => conn.send(Reply::Item(item)).await?,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("a watcher fell behind by {n} items");
                    let text = format!("({n} items skipped; see `msg inbox --all`)");
                    let note = InboxItem { id: 0, kind: ItemKind::System, from: None, text, at: 0 };
                    conn.send(Reply::Item(note)).await?;
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            // The CLI hung up (or sent something): end the stream.
            _ = conn.next() => return Ok(()),
            () = shared.shutdown.cancelled() => return Ok(()),
        }
    }
}

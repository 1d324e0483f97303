//! The control server: accepts `msg` connections on the local socket, checks
//! who is calling, does the version handshake and hands each request to the
//! module for its kind: `session` (login, logout, status, stopping msgd),
//! `messaging` (send, broadcast, who, block, unblock), `inbox` (inbox,
//! watch) and the private-session requests in [`crate::private::control`].

mod inbox;
mod messaging;
mod session;

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use interprocess::local_socket::tokio::{Listener, Stream, prelude::*};
use msg_proto::JsonLines;
use msg_proto::control::{CONTROL_VERSION, Reply, Request, codes};
use tokio_util::codec::Framed;

use crate::link::LinkHandle;
use crate::private::{self, Private};
use crate::replies;
use crate::state::Shared;
use crate::texts;

type Conn = Framed<Stream, JsonLines<Request, Reply>>;

/// How long a refused caller gets to send its hello, so that it reads why.
const REFUSED_HELLO_WAIT: Duration = Duration::from_secs(5);
/// Pause after a failed accept, so that a persistent error (e.g. out of
/// file descriptors) does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What every control connection works with.
#[derive(Clone)]
pub struct Context {
    pub shared: Arc<Shared>,
    pub private: Arc<Private>,
    pub link: LinkHandle,
}

/// Accepts control connections until shutdown.
pub async fn serve(listener: Listener, context: Context) {
    loop {
        tokio::select! {
            () = context.shared.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(stream) => {
                    let context = context.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle(stream, &context).await {
                            tracing::debug!("control connection ended: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("accepting a control connection failed: {e}");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
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

async fn handle(stream: Stream, context: &Context) -> std::io::Result<()> {
    let allowed = authorized(&stream);
    let mut conn: Conn = Framed::new(stream, JsonLines::new());
    if !allowed {
        tracing::warn!("refused a control connection from another user");
        // Take the caller's hello first: closing with it unread would reset
        // the connection and the caller might never see why.
        let _ = tokio::time::timeout(REFUSED_HELLO_WAIT, conn.next()).await;
        return conn
            .send(Reply::error("permission_denied", texts::PERMISSION_DENIED))
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
            let message = texts::control_version_mismatch(version, CONTROL_VERSION);
            return conn
                .send(Reply::error(codes::VERSION_MISMATCH, message))
                .await;
        }
        Some(Ok(_)) => return conn.send(replies::invalid_command()).await,
        Some(Err(e)) => return Err(e),
        None => return Ok(()),
    }
    while let Some(frame) = conn.next().await {
        let request = match frame? {
            Ok(request) => request,
            Err(e) => {
                tracing::debug!("bad control frame: {e}");
                conn.send(replies::invalid_command()).await?;
                continue;
            }
        };
        match request {
            // Streams of their own.
            Request::Watch => return inbox::watch(conn, &context.shared).await,
            Request::Inbox { all, peek } => {
                inbox::list(&mut conn, &context.shared, all, peek).await?
            }
            Request::Shutdown => {
                let reply = session::shutdown(&context.link).await;
                conn.send(reply).await?;
                context.shared.shutdown.cancel();
                return Ok(());
            }
            request => {
                let reply = dispatch(request, context).await;
                conn.send(reply).await?;
            }
        }
    }
    Ok(())
}

/// The reply to a request answered with one reply.
async fn dispatch(request: Request, context: &Context) -> Reply {
    let Context {
        shared,
        private,
        link,
    } = context;
    let upstream = link.upstream();
    match request {
        Request::Login {
            user,
            password,
            server,
            register,
            trust,
        } => session::login(link, user, password, server, register, trust).await,
        Request::Account {
            user,
            server,
            trust,
        } => session::account(&server, &user, &trust).await,
        Request::Logout => session::logout(link).await,
        Request::Status => session::status(shared, private),
        Request::Send { to, text } => messaging::send(upstream, to, &text).await,
        Request::Broadcast { text } => messaging::broadcast(upstream, &text).await,
        Request::Who { since } => messaging::who(upstream, since).await,
        Request::Block { user } => messaging::block(upstream, user).await,
        Request::Unblock { user } => messaging::unblock(upstream, user).await,
        Request::PrivateStart { user } => private::control::start(private, upstream, user).await,
        Request::PrivateAccept { user } => private::control::accept(private, upstream, user).await,
        Request::PrivateDecline { user } => {
            private::control::decline(private, upstream, user).await
        }
        Request::PrivateSend { user, text } => {
            private::control::send(private, upstream, user, &text).await
        }
        Request::PrivateStop { user } => private::control::stop(private, upstream, user).await,
        Request::PrivateList => private::control::list(private),
        Request::Names => messaging::names(shared, upstream).await,
        // Only the first frame; the streams are the connection loop's.
        Request::Hello { .. } | Request::Watch | Request::Inbox { .. } | Request::Shutdown => {
            replies::invalid_command()
        }
    }
}

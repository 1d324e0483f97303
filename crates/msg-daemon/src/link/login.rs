//! Logging in and logging in again: connecting, the `hello` and `login`
//! exchange, and after a dropped connection reconnecting with backoff, with
//! the credentials held in memory, until it works or is refused for good.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use msg_proto::control::{LinkState, codes};
use msg_proto::server::{ClientFrame, LoginRequest, ServerFrame};
use msg_proto::{ErrorCode, JsonLines, PROTOCOL_VERSION, Refusal, Secret};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};
use tokio_util::codec::Framed;

use crate::link::handle::Command;
use crate::link::online::Retries;
use crate::link::{Conn, Link, Session, lost, refuse, unreachable};
use crate::texts;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl Link {
    /// Connects, says hello and logs in. On success the link is online.
    pub(super) async fn connect_and_login(
        &mut self,
        server: &str,
        user: &str,
        password: &Secret,
        register: bool,
    ) -> Result<(Conn, String), Refusal> {
        let stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(server)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::info!("cannot connect to the server: {e}");
                return Err(unreachable(server));
            }
            Err(_) => return Err(unreachable(server)),
        };
        let _ = stream.set_nodelay(true);
        // The peer listener follows the family we reach the server with:
        // the server hands out the address it sees for this connection.
        let peer_port = match (&self.peers, stream.local_addr()) {
            (Some(peers), Ok(local)) => peers.port_for(local.ip()).await,
            _ => None,
        };
        let mut conn = Framed::new(stream, JsonLines::new());
        let login = LoginRequest {
            id: self.id(),
            user: user.into(),
            password: password.clone(),
            peer_port,
        };
        let login = if register {
            ClientFrame::Register(login)
        } else {
            ClientFrame::Login(login)
        };
        let hello = ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            agent: Some(format!("msgd {}", env!("CARGO_PKG_VERSION"))),
        };
        let exchange = async {
            conn.send(hello).await.map_err(|_| lost())?;
            match next_frame(&mut conn).await?.into_refusal()? {
                ServerFrame::Hello { .. } => {}
                _ => {
                    tracing::warn!("unexpected answer to hello");
                    return Err(Refusal::new(
                        codes::INVALID_COMMAND,
                        texts::NOT_A_MSG_SERVER,
                    ));
                }
            }
            conn.send(login).await.map_err(|_| lost())?;
            loop {
                match next_frame(&mut conn).await?.into_refusal()? {
                    ServerFrame::Welcome {
                        user: name,
                        message,
                        ..
                    } => {
                        tracing::info!("logged in as {name}");
                        return Ok(message);
                    }
                    ServerFrame::Pong => {}
                    // Nothing else is expected yet; not logged, it may carry a text.
                    _ => tracing::debug!("ignoring a frame before the welcome"),
                }
            }
        };
        let welcome = timeout(REPLY_TIMEOUT, exchange)
            .await
            .map_err(|_| unreachable(server))??;
        {
            let mut status = self.shared.status();
            status.server = Some(server.to_owned());
            status.user = Some(user.to_owned());
            status.state = LinkState::Online;
            status.ended = None;
        }
        if let Err(e) = self.shared.inbox().set_last_account(user) {
            tracing::warn!("{e}");
        }
        Ok((conn, welcome))
    }

    /// Tries to log in again until it works, the session is refused for good,
    /// or the user logs out or stops the daemon.
    pub(super) async fn reconnect(
        &mut self,
        session: &Session,
        retries: &mut Retries,
    ) -> Option<Conn> {
        let mut backoff = FIRST_BACKOFF;
        loop {
            retries.expire();
            if !self.wait_offline(backoff, session).await {
                return None;
            }
            match self
                .connect_and_login(&session.server, &session.user, &session.password, false)
                .await
            {
                Ok((conn, _)) => {
                    tracing::info!("logged in again after reconnecting");
                    return Some(conn);
                }
                Err(e)
                    if e.code == codes::SERVER_UNREACHABLE
                        || e.code == ErrorCode::AlreadyLoggedIn.as_str()
                        || e.code == ErrorCode::Internal.as_str() =>
                {
                    // The server may still hold our dead connection's session.
                    tracing::debug!("reconnect failed: {}", e.message);
                }
                Err(e) => {
                    tracing::warn!("logging in again was refused: {}", e.message);
                    self.shared.status().ended = Some(e.clone());
                    self.shared.tell_account(&session.user, None, &e.message);
                    return None;
                }
            }
            self.shared.status().state = LinkState::Reconnecting;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Waits `backoff`, answering commands meanwhile; false when the user
    /// logged out or the daemon stops.
    async fn wait_offline(&mut self, backoff: Duration, session: &Session) -> bool {
        let wait = sleep(backoff);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => return true,
                command = self.commands.recv() => match command {
                    None => return false,
                    Some(Command::Logout { reply }) => {
                        let _ = reply.send(Ok(()));
                        return false;
                    }
                    Some(Command::Login { reply, .. }) => {
                        let busy = Refusal::new(codes::SERVER_UNREACHABLE, texts::RECONNECTING);
                        let _ = reply.send(Err(busy));
                    }
                },
                Some(outgoing) = self.upstream.recv() => {
                    refuse(outgoing, unreachable(&session.server));
                }
            }
        }
    }
}

async fn next_frame(conn: &mut Conn) -> Result<ServerFrame, Refusal> {
    loop {
        match conn.next().await {
            Some(Ok(Ok(frame))) => return Ok(frame),
            Some(Ok(Err(e))) => tracing::warn!("bad frame from the server: {e}"),
            None | Some(Err(_)) => return Err(lost()),
        }
    }
}

//! Logging in and logging in again: connecting, the `hello` and `login`
//! exchange, and after a dropped connection reconnecting with backoff, with
//! the credentials held in memory, until it works or is refused for good.
//! A blocked account is not refused for good: while msgd holds the right
//! password, someone else's wrong ones must not log its user out for good,
//! so it waits out the block (the server says how long) and tries again.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use msg_proto::control::{LinkState, codes};
use msg_proto::server::{ClientFrame, ServerFrame};
use msg_proto::{ErrorCode, JsonLines, PROTOCOL_VERSION, Refusal};
use tokio::time::{Instant, sleep, timeout};
use tokio_util::codec::Framed;

use crate::link::handle::Command;
use crate::link::online::Retries;
use crate::link::resume::Credentials;
use crate::link::transport::Dialer;
use crate::link::{Conn, Link, Session, lost, refuse, unreachable};
use crate::state::{WaitReason, Waiting};
use crate::texts;
use msg_local::backoff::{self, Backoff};

pub(super) const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait between two checks whether the inbox can be written.
const INBOX_PROBE_MAX: Duration = Duration::from_secs(5);

impl Link {
    /// Connects, says hello and logs in. On success the link is online.
    pub(super) async fn connect_and_login(
        &mut self,
        dialer: &Dialer,
        user: &str,
        credentials: Credentials<'_>,
    ) -> Result<(Conn, String), Refusal> {
        let server = &dialer.server();
        let (stream, local) = dialer.connect().await?;
        // The peer listener follows the family we reach the server with:
        // the server hands out the address it sees for this connection.
        let peer_port = match &self.peers {
            Some(peers) => peers.port_for(local.ip()).await,
            None => None,
        };
        // With the port, the public key our peer connections prove we hold:
        // the server hands it to whoever we talk to privately.
        let peer_key = self
            .peers
            .as_ref()
            .filter(|_| peer_port.is_some())
            .map(|peers| peers.public_key());
        let mut conn = Framed::new(stream, JsonLines::new());
        let login = self.login_frame(user, credentials, peer_port, peer_key);
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
                        token,
                        ..
                    } => {
                        tracing::info!("logged in as {name}");
                        return Ok((message, token));
                    }
                    ServerFrame::Pong => {}
                    // Nothing else is expected yet; not logged, it may carry a text.
                    _ => tracing::debug!("ignoring a frame before the welcome"),
                }
            }
        };
        let (welcome, token) = timeout(REPLY_TIMEOUT, exchange)
            .await
            .map_err(|_| unreachable(server))??;
        if let Some(token) = token {
            self.save_token(server, user, &token);
        }
        {
            let mut status = self.shared.status();
            status.server = Some(server.to_owned());
            status.user = Some(user.to_owned());
            status.state = LinkState::Online;
            status.ended = None;
            status.waiting = None;
        }
        if let Err(e) = self.shared.inbox().set_last_account(user) {
            tracing::warn!("{e}");
        }
        Ok((conn, welcome))
    }

    /// Tries to log in again until it works, the session is refused for good,
    /// or the user logs out or stops the daemon. `why` the last connection
    /// ended; `msg status` shows the reason for each wait.
    pub(super) async fn reconnect(
        &mut self,
        session: &Session,
        retries: &mut Retries,
        backoff: &mut Backoff,
        why: WaitReason,
    ) -> Option<Conn> {
        let mut why = why;
        let mut delay = backoff.next_delay();
        loop {
            retries.expire();
            self.shared.status().waiting = Some(Waiting {
                reason: why,
                until: Instant::now() + delay,
            });
            if !self.wait_offline(delay, session).await {
                return None;
            }
            if why == WaitReason::InboxUnwritable {
                // Logging in would only bring messages we cannot store.
                if let Err(e) = self.shared.inbox().probe_writable() {
                    tracing::debug!("the inbox still cannot be written: {e}");
                    // A probe is local and cheap: try again soon.
                    delay = backoff.next_delay().min(INBOX_PROBE_MAX);
                    continue;
                }
                tracing::info!("the inbox can be written again");
            }
            let mut token = None;
            let Some(credentials) = self.credentials(session, &mut token) else {
                // No password and no token (deleted meanwhile): nothing to
                // log in with.
                let refusal = Refusal::new(codes::NOT_LOGGED_IN, texts::NOT_LOGGED_IN);
                self.shared.status().ended = Some(refusal);
                return None;
            };
            match self
                .connect_and_login(&session.dialer, &session.user, credentials)
                .await
            {
                Ok((conn, _)) => {
                    tracing::info!("logged in again after reconnecting");
                    return Some(conn);
                }
                Err(e) if e.code == ErrorCode::LoginBlocked.as_str() => {
                    // Someone made the server block the account (wrong
                    // passwords); ours is still right: wait out the block.
                    tracing::warn!(
                        retry_after = e.retry_after,
                        "logging in again was refused: the account is blocked"
                    );
                    why = WaitReason::AccountBlocked;
                    delay = match e.retry_after {
                        Some(secs) => backoff::after_server_asked(secs),
                        None => backoff.next_delay(),
                    };
                }
                Err(e)
                    if e.code == codes::SERVER_UNREACHABLE
                        || e.code == ErrorCode::AlreadyLoggedIn.as_str()
                        || e.code == ErrorCode::Internal.as_str() =>
                {
                    // The server may still hold our dead connection's session.
                    tracing::debug!("reconnect failed: {}", e.message);
                    why = if e.code == codes::SERVER_UNREACHABLE {
                        WaitReason::Unreachable
                    } else {
                        WaitReason::OldSession
                    };
                    delay = backoff.next_delay();
                }
                Err(e) => {
                    tracing::warn!("logging in again was refused: {}", e.message);
                    let e = if e.code == ErrorCode::BadToken.as_str() {
                        self.token_refused(session)
                    } else {
                        e
                    };
                    self.shared.status().ended = Some(e.clone());
                    self.shared.tell_account(&session.user, None, &e.message);
                    return None;
                }
            }
            self.shared.status().state = LinkState::Reconnecting;
        }
    }

    /// Waits `delay`, answering commands meanwhile; false when the user
    /// logged out or the daemon stops.
    async fn wait_offline(&mut self, delay: Duration, session: &Session) -> bool {
        let wait = sleep(delay);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => return true,
                command = self.commands.recv() => match command {
                    None => return false,
                    Some(Command::Logout { revoke, reply }) => {
                        if revoke {
                            // The server cannot be told now; the token is
                            // gone from here at least.
                            self.forget_token(session);
                        }
                        let _ = reply.send(Ok(()));
                        return false;
                    }
                    Some(Command::Login { reply, .. }) => {
                        let _ = reply.send(Err(self.waiting_refusal(session, true)));
                    }
                },
                Some(outgoing) = self.upstream.recv() => {
                    refuse(outgoing, self.waiting_refusal(session, false));
                }
            }
        }
    }

    /// What a login or a request is told while the link waits: that it
    /// reconnects, or, for a wait that is not a blip, why and how long.
    fn waiting_refusal(&self, session: &Session, login: bool) -> Refusal {
        let waiting = self.shared.status().waiting.clone();
        match waiting {
            Some(w)
                if matches!(
                    w.reason,
                    WaitReason::AccountBlocked | WaitReason::InboxUnwritable
                ) =>
            {
                let text = texts::waiting_to_log_in(w.reason.text(), w.secs_left());
                Refusal::new(codes::SERVER_UNREACHABLE, text)
            }
            _ if login => Refusal::new(codes::SERVER_UNREACHABLE, texts::RECONNECTING),
            _ => unreachable(&session.dialer.server()),
        }
    }
}

pub(super) async fn next_frame(conn: &mut Conn) -> Result<ServerFrame, Refusal> {
    loop {
        match conn.next().await {
            Some(Ok(Ok(frame))) => return Ok(frame),
            Some(Ok(Err(e))) => tracing::warn!("bad frame from the server: {e}"),
            None | Some(Err(_)) => return Err(lost()),
        }
    }
}

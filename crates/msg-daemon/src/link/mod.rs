//! The server link: one task that owns the TCP connection to msg-server.
//!
//! The control side talks to it through [`LinkHandle`] (login, logout) and
//! everyone through the upstream queue (requests, notes). It logs in, relays
//! requests and their replies, stores what the server pushes (in the inbox,
//! *then* acks), pings, and when the connection drops it reconnects with
//! backoff and logs in again with the credentials it holds in memory,
//! unless the server ended the session (logout, timeout, lockout).
//!
//! Here: the task's states (logged out, in a session). `handle`: the
//! handle and starting the task; `login`: logging in and reconnecting;
//! `resume`: the device token: logging in with it (at start-up, and when
//! no password is held) and forgetting it when the server refuses it;
//! `msg_local::backoff`: how long to wait between tries; `online`: a logged-in
//! connection, its pending requests and send retries; `inbound`: what the
//! server pushes, one function per event; `burst`: storing what arrived
//! together in one transaction before acking it.
//!
//! When the inbox cannot be written (a full disk), nothing is acked: the
//! link drops the connection, so that the server keeps the messages for
//! the next login, waits until a write goes through again, and logs in
//! again. `msg status` shows why it waits.

mod burst;
mod handle;
mod inbound;
mod login;
mod online;
mod probe;
mod resume;
#[cfg(test)]
mod tests;
mod transport;
mod trust;

use std::sync::Arc;

use msg_proto::control::{LinkState, codes};
use msg_proto::server::{ClientFrame, ServerFrame};
use msg_proto::{JsonLines, Refusal, RequestId, Secret};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::Framed;

use crate::device_token::DeviceTokens;
use crate::private::{self, PeerListener, Private};
use crate::state::{Shared, WaitReason};
use crate::texts;
use crate::upstream::Outgoing;

use handle::Command;
pub use handle::{LinkHandle, spawn};
use msg_local::backoff::Backoff;
use online::Retries;
pub use probe::{AccountInfo, account_info};
use resume::Credentials;
use transport::{Dialer, Stream};

type Conn = Framed<Stream, JsonLines<ServerFrame, ClientFrame>>;

fn unreachable(server: &str) -> Refusal {
    Refusal::new(codes::SERVER_UNREACHABLE, texts::cannot_reach(server))
}

fn lost() -> Refusal {
    Refusal::new(codes::SERVER_UNREACHABLE, texts::CONNECTION_LOST)
}

/// Credentials held in memory only, for logging in again after a drop;
/// without the password (a session resumed with the device token), the
/// saved token is used.
struct Session {
    /// The server and the trust settled at login, reused by reconnects.
    dialer: Arc<Dialer>,
    user: String,
    password: Option<Secret>,
}

/// Why a session loop returned.
enum End {
    /// Over for good: logged out by the user or the server.
    Over,
    /// The connection dropped (or the server restarts): log in again.
    Lost,
    /// The inbox could not be written: nothing more is acked; log in again
    /// once it can be.
    Unwritable,
    /// The daemon is stopping.
    Stop,
}

struct Link {
    shared: Arc<Shared>,
    private: Arc<Private>,
    commands: mpsc::Receiver<Command>,
    upstream: mpsc::Receiver<Outgoing>,
    next_id: RequestId,
    /// Whose port is advertised at login.
    peers: Option<Arc<PeerListener>>,
    /// Where the device token is kept; `None`: no token is asked for.
    tokens: Option<DeviceTokens>,
}

impl Link {
    fn id(&mut self) -> RequestId {
        self.next_id += 1;
        self.next_id
    }

    /// Why a request cannot be served now: the reason the server ended the
    /// last session, or that there is none.
    fn not_logged_in(&self) -> Refusal {
        match &self.shared.status().ended {
            Some(ended) => ended.clone(),
            None => Refusal::new(codes::NOT_LOGGED_IN, texts::NOT_LOGGED_IN),
        }
    }

    /// Logged out: serves logins until the handles are gone. With a saved
    /// device token, first logs in with it.
    async fn run(mut self) {
        if self.resume_at_start().await {
            return;
        }
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    None => return,
                    Some(Command::Login { server, user, password, register, trust, reply }) => {
                        let dialer = match transport::dialer(&server, &trust) {
                            Ok(dialer) => Arc::new(dialer),
                            Err(e) => {
                                let _ = reply.send(Err(e));
                                continue;
                            }
                        };
                        let credentials = Credentials::Password {
                            password: &password,
                            register,
                            ask_token: true,
                        };
                        match self.connect_and_login(&dialer, &user, credentials).await {
                            Ok((conn, welcome)) => {
                                let _ = reply.send(Ok(welcome));
                                let session = Session { dialer, user, password: Some(password) };
                                if self.session(conn, session).await {
                                    return;
                                }
                            }
                            Err(e) => {
                                let _ = reply.send(Err(e));
                            }
                        }
                    }
                    Some(Command::Logout { reply, .. }) => {
                        let _ = reply.send(Err(self.not_logged_in()));
                    }
                },
                Some(outgoing) = self.upstream.recv() => {
                    refuse(outgoing, self.not_logged_in());
                }
            }
        }
    }

    /// Runs a logged-in session across reconnections. True when the daemon
    /// is stopping.
    pub(super) async fn session(&mut self, mut conn: Conn, session: Session) -> bool {
        let mut retries = Retries::default();
        // Across connections: a server that drops us right after each login
        // must see the waits grow.
        let mut backoff = Backoff::new();
        loop {
            let started = Instant::now();
            let end = self.online(&mut conn, &session, &mut retries).await;
            // Closed now, not when a new one replaces it: the server must see
            // us go (and keep what we did not ack for the next login).
            drop(conn);
            backoff.session_ended(started.elapsed());
            let why = match end {
                End::Over => {
                    self.logged_out(&session.user);
                    return false;
                }
                End::Stop => return true,
                End::Lost => {
                    tracing::info!("connection to the server lost; reconnecting");
                    WaitReason::ConnectionLost
                }
                End::Unwritable => {
                    tracing::warn!("the inbox cannot be written; logging in again once it can");
                    WaitReason::InboxUnwritable
                }
            };
            // The server ends a dropped session's private sessions.
            private::events::end_all(&self.private, &session.user);
            self.shared.status().state = LinkState::Reconnecting;
            match self
                .reconnect(&session, &mut retries, &mut backoff, why)
                .await
            {
                Some(new_conn) => conn = new_conn,
                None => {
                    retries.give_up_all();
                    self.logged_out(&session.user);
                    return self.commands.is_closed();
                }
            }
        }
    }

    fn logged_out(&self, user: &str) {
        private::events::end_all(&self.private, user);
        let mut status = self.shared.status();
        status.state = LinkState::LoggedOut;
        status.user = None;
        status.waiting = None;
    }
}

/// Answers a request with `refusal` (notes are dropped: nobody waits).
fn refuse(outgoing: Outgoing, refusal: Refusal) {
    if let Outgoing::Request { reply, .. } = outgoing {
        let _ = reply.send(Err(refusal));
    }
}

//! One client connection: greeting, login, the command loop and its timers.
//!
//! Reading and writing are separate tasks. The reader (this module's
//! [`Connection`]) decodes frames and acts on them; everything sent to the
//! client, its own replies and events routed by the hub alike, goes through
//! the connection's [`Outbox`] to the writer task, which batches whatever is
//! queued into one write. Generic over the byte stream so TLS can slot in.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use msg_proto::server::{
    ClientFrame, LogoutReason, MAX_CLIENT_ID_LEN, RequestId, Secret, ServerFrame,
};
use msg_proto::validate::{self, TextError};
use msg_proto::{ErrorCode, FrameError, JsonLines, PROTOCOL_VERSION};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::accounts::AccountsError;
use crate::hub::{ConnId, DRAIN_PAGE, Hub, Refusal, SessionSpec};
use crate::outbox::{self, Outbox};
use crate::texts;

/// Most bytes gathered into one socket write.
const MAX_WRITE_BATCH: usize = 64 * 1024;
/// How long queued frames (a last error, `logged_out`) may take to reach a
/// closing client.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Read buffer a connection starts with; it grows only for large frames, so
/// idle sessions stay small.
const INITIAL_READ_BUFFER: usize = 256;

type Frames<R> = FramedRead<R, JsonLines<ClientFrame, ServerFrame>>;

enum Phase {
    /// Waiting for `hello`.
    Greeting,
    /// Greeted, not logged in.
    Anonymous,
    /// Logged in as this user.
    Session(String),
}

/// Whether to keep the connection open after a frame.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// Serves one client until it leaves, misbehaves, times out or the server
/// shuts down.
pub async fn serve<S>(hub: Arc<Hub>, stream: S, peer: SocketAddr, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let (out, rx) = Outbox::new(hub.config.outbox_capacity, hub.config.max_outstanding_sends);
    let closing = CancellationToken::new();
    let kick = CancellationToken::new();
    let writer = tokio::spawn(write_loop(write, rx, closing.clone(), kick.clone()));
    let now = Instant::now();
    let mut conn = Connection {
        id: hub.next_conn_id(),
        frames: FramedRead::with_capacity(read, JsonLines::new(), INITIAL_READ_BUFFER),
        kick,
        rate: RateLimiter::new(hub.config.max_frames_per_sec),
        hub,
        peer,
        out,
        phase: Phase::Greeting,
        bad_frames: 0,
        opened: now,
        last_heard: now,
        last_active: now,
    };
    tracing::debug!(conn = conn.id, "connection opened");
    conn.run(&shutdown).await;
    if let Phase::Session(user) = &conn.phase {
        conn.hub.end_session(user, conn.id);
        tracing::info!(user = %user, conn = conn.id, "session ended");
    }
    // Other holders of this outbox (replies owed to this client) must not
    // keep the writer alive: tell it to flush and stop.
    closing.cancel();
    let _ = writer.await;
    tracing::debug!(conn = conn.id, "connection closed");
}

struct Connection<R> {
    hub: Arc<Hub>,
    id: ConnId,
    peer: SocketAddr,
    frames: Frames<R>,
    out: Outbox,
    /// Cancelled by the hub when this client cannot keep up, or by the
    /// writer when the client can no longer be written to.
    kick: CancellationToken,
    rate: RateLimiter,
    phase: Phase,
    bad_frames: u32,
    opened: Instant,
    /// Any frame at all, pings included.
    last_heard: Instant,
    /// Last user command, for the inactivity timeout.
    last_active: Instant,
}

enum Deadline {
    Login,
    Dead,
    Idle,
}

impl<R: AsyncRead + Unpin> Connection<R> {
    async fn run(&mut self, shutdown: &CancellationToken) {
        loop {
            let (deadline, at) = self.next_deadline();
            let item = tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    if matches!(self.phase, Phase::Session(_)) {
                        self.out.push(&ServerFrame::LoggedOut {
                            reason: LogoutReason::Shutdown,
                            message: texts::SHUTDOWN_LOGOUT.into(),
                        });
                    }
                    return;
                }
                _ = self.kick.cancelled() => {
                    tracing::info!(conn = self.id, "disconnecting: the client is not reading or is gone");
                    return;
                }
                _ = tokio::time::sleep_until(at) => {
                    self.on_deadline(deadline);
                    return;
                }
                item = self.frames.next() => item,
            };
            let flow = match item {
                None => Flow::Close,
                Some(Err(e)) => {
                    tracing::debug!(conn = self.id, error = %e, "read failed");
                    Flow::Close
                }
                Some(Ok(Err(bad))) => {
                    self.last_heard = Instant::now();
                    self.on_bad_frame(bad).await
                }
                Some(Ok(Ok(frame))) => {
                    self.last_heard = Instant::now();
                    if frame.is_user_activity() {
                        self.last_active = self.last_heard;
                    }
                    self.on_frame(frame).await
                }
            };
            if flow == Flow::Close {
                return;
            }
            if let Some(wait) = self.rate.take() {
                tokio::time::sleep(wait).await;
            }
        }
    }

    fn next_deadline(&self) -> (Deadline, Instant) {
        let config = &self.hub.config;
        let dead = (Deadline::Dead, self.last_heard + config.dead_timeout);
        match self.phase {
            Phase::Greeting | Phase::Anonymous => {
                let login = self.opened + config.login_timeout;
                if login <= dead.1 {
                    (Deadline::Login, login)
                } else {
                    dead
                }
            }
            Phase::Session(_) => match config.idle_timeout {
                Some(idle) if self.last_active + idle <= dead.1 => {
                    (Deadline::Idle, self.last_active + idle)
                }
                _ => dead,
            },
        }
    }

    fn on_deadline(&self, deadline: Deadline) {
        match deadline {
            Deadline::Login => {
                self.out.push(&ServerFrame::error(
                    None,
                    ErrorCode::NotLoggedIn,
                    texts::LOGIN_TIMEOUT,
                ));
            }
            Deadline::Idle => {
                if let Phase::Session(user) = &self.phase {
                    tracing::info!(user = %user, "logging out an inactive user");
                }
                self.out.push(&ServerFrame::LoggedOut {
                    reason: LogoutReason::Timeout,
                    message: texts::INACTIVITY_LOGOUT.into(),
                });
            }
            Deadline::Dead => {
                tracing::info!(conn = self.id, "closing a silent connection");
            }
        }
    }

    async fn reply(&self, frame: ServerFrame) {
        self.out.send(&frame).await;
    }

    async fn refuse(&self, id: Option<RequestId>, refusal: Refusal) {
        self.reply(refusal.into_frame(id)).await;
    }

    async fn on_bad_frame(&mut self, bad: FrameError) -> Flow {
        self.bad_frames += 1;
        tracing::debug!(conn = self.id, error = %bad, "bad frame");
        let (code, message) = match bad {
            FrameError::TooLong { .. } => (ErrorCode::FrameTooLarge, texts::FRAME_TOO_LARGE),
            _ => (ErrorCode::InvalidCommand, texts::INVALID_COMMAND),
        };
        self.reply(ServerFrame::error(None, code, message)).await;
        if self.bad_frames >= self.hub.config.max_bad_frames {
            tracing::warn!(
                conn = self.id,
                "closing a connection that keeps sending bad frames"
            );
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    async fn on_frame(&mut self, frame: ClientFrame) -> Flow {
        match (&self.phase, frame) {
            (_, ClientFrame::Ping) => {
                self.reply(ServerFrame::Pong).await;
                Flow::Continue
            }
            (Phase::Greeting, ClientFrame::Hello { version, .. }) => self.on_hello(version).await,
            (Phase::Greeting, _) => {
                self.reply(ServerFrame::error(
                    None,
                    ErrorCode::HelloRequired,
                    texts::HELLO_REQUIRED,
                ))
                .await;
                Flow::Close
            }
            (
                Phase::Anonymous,
                ClientFrame::Login {
                    id,
                    user,
                    password,
                    peer_port,
                },
            ) => Box::pin(self.on_login(id, user, password, peer_port, false)).await,
            (
                Phase::Anonymous,
                ClientFrame::Register {
                    id,
                    user,
                    password,
                    peer_port,
                },
            ) => Box::pin(self.on_login(id, user, password, peer_port, true)).await,
            (
                Phase::Session(_),
                ClientFrame::Login { id, .. } | ClientFrame::Register { id, .. },
            ) => {
                let refusal = Refusal::new(
                    ErrorCode::AlreadyAuthenticated,
                    texts::ALREADY_AUTHENTICATED,
                );
                self.refuse(Some(id), refusal).await;
                Flow::Continue
            }
            (_, ClientFrame::Hello { .. }) => {
                self.on_bad_frame(FrameError::InvalidFrame("second hello".into()))
                    .await
            }
            (Phase::Anonymous, frame) => {
                if let Some(id) = frame.request_id() {
                    let refusal = Refusal::new(ErrorCode::NotLoggedIn, texts::NOT_LOGGED_IN);
                    self.refuse(Some(id), refusal).await;
                }
                Flow::Continue
            }
            (Phase::Session(user), frame) => {
                let user = user.clone();
                // Boxed, like the login handlers: their states (store waits,
                // the queue drain) would otherwise be part of this task's
                // future, which every idle session carries (1,320 → 904
                // bytes); boxed, they cost one allocation per command.
                Box::pin(self.on_command(&user, frame)).await
            }
        }
    }

    async fn on_hello(&mut self, version: u32) -> Flow {
        if version != PROTOCOL_VERSION {
            self.reply(ServerFrame::error(
                None,
                ErrorCode::VersionMismatch,
                texts::version_mismatch(version, PROTOCOL_VERSION),
            ))
            .await;
            return Flow::Close;
        }
        self.reply(ServerFrame::Hello {
            version: PROTOCOL_VERSION,
            server: concat!("msg-server ", env!("CARGO_PKG_VERSION")).into(),
        })
        .await;
        self.phase = Phase::Anonymous;
        Flow::Continue
    }

    async fn on_login(
        &mut self,
        id: RequestId,
        user: String,
        password: Secret,
        peer_port: Option<u16>,
        register: bool,
    ) -> Flow {
        let checked = if register {
            self.check_registration(&user, password).await
        } else {
            self.check_password(&user, password).await
        };
        if let Err(refusal) = checked {
            self.refuse(Some(id), refusal).await;
            return Flow::Continue;
        }
        let spec = SessionSpec {
            conn: self.id,
            out: self.out.clone(),
            kick: self.kick.clone(),
            ip: self.peer.ip(),
            peer_port,
        };
        let first_page = match self.hub.begin_session(&user, spec) {
            Ok(page) => page,
            Err(refusal) => {
                self.refuse(Some(id), refusal).await;
                return Flow::Continue;
            }
        };
        tracing::info!(user = %user, conn = self.id, "logged in");
        self.phase = Phase::Session(user.clone());
        self.last_active = Instant::now();
        self.reply(ServerFrame::Welcome {
            id,
            user: user.clone(),
            message: texts::WELCOME.into(),
        })
        .await;
        // A client that stops reading while its queue drains must not pin
        // this task forever.
        let drained = tokio::time::timeout(
            self.hub.config.dead_timeout,
            self.drain_queue(&user, first_page),
        )
        .await;
        if !matches!(drained, Ok(true)) {
            return Flow::Close;
        }
        self.hub.finish_drain(&user, self.id);
        Flow::Continue
    }

    /// Writes the user's offline queue, oldest first. The messages stay in
    /// the store until the client acknowledges each one.
    async fn drain_queue(&self, user: &str, mut page: crate::hub::QueuePage) -> bool {
        loop {
            let messages = match page.await {
                Ok(Ok(messages)) => messages,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot read the offline queue");
                    return false;
                }
                Err(_) => return false,
            };
            let full_page = messages.len() == DRAIN_PAGE;
            let last = messages.last().map(|m| m.id);
            for m in messages {
                let frame = ServerFrame::Message {
                    msg_id: m.id,
                    from: m.sender,
                    text: m.text,
                    at: m.at,
                    client_id: m.client_id,
                };
                if !self.out.send(&frame).await {
                    return false;
                }
            }
            match (full_page, last) {
                (true, Some(last)) => page = self.hub.store.pending_after(user, last, DRAIN_PAGE),
                _ => return true,
            }
        }
    }

    async fn check_password(&self, user: &str, password: Secret) -> Result<(), Refusal> {
        if !self.hub.accounts.exists(user) {
            return Err(Refusal::new(ErrorCode::InvalidUser, texts::INVALID_USER));
        }
        self.hub.check_login_block(user)?;
        let hub = self.hub.clone();
        let name = user.to_owned();
        // argon2 is slow on purpose; keep it off the async workers.
        let verified =
            tokio::task::spawn_blocking(move || hub.accounts.verify(&name, password.expose()))
                .await
                .unwrap_or(None);
        match verified {
            Some(true) => Ok(()),
            Some(false) => {
                let (refusal, durable) = self.hub.login_failed(user);
                if let Some(durable) = durable
                    && let Ok(Err(e)) = durable.await
                {
                    tracing::error!(error = %e, "the login block is only in memory");
                }
                Err(refusal)
            }
            // Removed from the file in the meantime.
            None => Err(Refusal::new(ErrorCode::InvalidUser, texts::INVALID_USER)),
        }
    }

    async fn check_registration(&self, user: &str, password: Secret) -> Result<(), Refusal> {
        if !self.hub.config.allow_register {
            return Err(Refusal::new(
                ErrorCode::RegistrationDisabled,
                texts::REGISTRATION_DISABLED,
            ));
        }
        if !validate::is_valid_username(user) {
            return Err(Refusal::new(
                ErrorCode::InvalidUsername,
                texts::INVALID_USERNAME,
            ));
        }
        if !validate::is_valid_password(password.expose()) {
            return Err(Refusal::new(
                ErrorCode::InvalidPasswordFormat,
                texts::INVALID_PASSWORD_FORMAT,
            ));
        }
        let hub = self.hub.clone();
        let name = user.to_owned();
        let registered =
            tokio::task::spawn_blocking(move || hub.accounts.register(&name, password.expose()))
                .await;
        match registered {
            Ok(Ok(())) => {
                tracing::info!(user, "registered a new account");
                Ok(())
            }
            Ok(Err(AccountsError::UserExists)) => {
                Err(Refusal::new(ErrorCode::UserExists, texts::USER_EXISTS))
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "registration failed");
                Err(Refusal::new(ErrorCode::Internal, texts::STORE_FAILED))
            }
            Err(_) => Err(Refusal::new(ErrorCode::Internal, texts::STORE_FAILED)),
        }
    }

    async fn on_command(&mut self, user: &str, frame: ClientFrame) -> Flow {
        let hub = &self.hub;
        let (id, result) = match frame {
            ClientFrame::Send {
                id,
                to,
                text,
                client_id,
            } => {
                let text = match checked_text(&text) {
                    Ok(text) => text.to_owned(),
                    Err(refusal) => {
                        self.refuse(Some(id), refusal).await;
                        return Flow::Continue;
                    }
                };
                if client_id
                    .as_ref()
                    .is_some_and(|c| c.len() > MAX_CLIENT_ID_LEN)
                {
                    let refusal = Refusal::new(ErrorCode::InvalidCommand, texts::INVALID_COMMAND);
                    self.refuse(Some(id), refusal).await;
                    return Flow::Continue;
                }
                // The `sent` reply comes later, when the message is delivered
                // or stored; reserve its place now.
                let Some(slot) = self.out.reserve_reply().await else {
                    return Flow::Close;
                };
                if let Err((refusal, slot)) = hub.send(user, &to, text, client_id, (slot, id)) {
                    slot.fill(&refusal.into_frame(Some(id)));
                }
                return Flow::Continue;
            }
            ClientFrame::Broadcast { id, text } => {
                let result = checked_text(&text).map(|text| {
                    let skipped = hub.broadcast(user, text.to_owned());
                    ServerFrame::ok(id, skipped.then(|| texts::BROADCAST_PARTLY_BLOCKED.into()))
                });
                (id, result)
            }
            ClientFrame::Who { id } => (
                id,
                Ok(ServerFrame::Users {
                    id,
                    users: hub.who(user),
                }),
            ),
            ClientFrame::WhoSince { id, secs } => {
                let users = hub.who_since(user, secs);
                (id, Ok(ServerFrame::Users { id, users }))
            }
            ClientFrame::Block { id, user: target } => {
                let result = hub.block(user, &target).await;
                (id, result.map(|text| ServerFrame::ok(id, Some(text))))
            }
            ClientFrame::Unblock { id, user: target } => {
                let result = hub.unblock(user, &target).await;
                (id, result.map(|text| ServerFrame::ok(id, Some(text))))
            }
            ClientFrame::Logout { id } => {
                tracing::info!(user, "logged out");
                // Everything this client acknowledged is durable before it
                // is told it is logged out.
                if let Ok(Err(e)) = hub.store.barrier().await {
                    tracing::error!(error = %e, "store barrier failed at logout");
                }
                self.reply(ServerFrame::ok(id, Some(texts::LOGGED_OUT.into())))
                    .await;
                return Flow::Close;
            }
            ClientFrame::Ack { msg_id } => {
                hub.ack(user, msg_id);
                return Flow::Continue;
            }
            ClientFrame::Activity => return Flow::Continue,
            ClientFrame::PrivateRequest { id, user: callee } => (
                id,
                hub.private_request(user, &callee)
                    .map(|()| ServerFrame::ok(id, None)),
            ),
            ClientFrame::PrivateAccept { id, user: asker } => (
                id,
                hub.private_accept(user, &asker)
                    .map(|()| ServerFrame::ok(id, None)),
            ),
            ClientFrame::PrivateDecline { id, user: asker } => (
                id,
                hub.private_decline(user, &asker)
                    .map(|()| ServerFrame::ok(id, None)),
            ),
            ClientFrame::PrivateEnd { id, user: other } => {
                hub.private_end(user, &other);
                (id, Ok(ServerFrame::ok(id, None)))
            }
            // Handled before a session exists or in `on_frame`.
            ClientFrame::Hello { .. }
            | ClientFrame::Ping
            | ClientFrame::Login { .. }
            | ClientFrame::Register { .. } => return Flow::Continue,
        };
        match result {
            Ok(frame) => self.reply(frame).await,
            Err(refusal) => self.refuse(Some(id), refusal).await,
        }
        Flow::Continue
    }
}

fn checked_text(text: &str) -> Result<&str, Refusal> {
    validate::message_text(text).map_err(|e| match e {
        TextError::Empty => Refusal::new(ErrorCode::EmptyMessage, texts::EMPTY_MESSAGE),
        TextError::TooLong => Refusal::new(ErrorCode::MessageTooLong, texts::MESSAGE_TOO_LONG),
    })
}

/// A token bucket over frames: bursts up to one second's worth, then the
/// reader slows to the allowed rate.
struct RateLimiter {
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    fn new(per_sec: u32) -> Self {
        Self {
            per_sec: f64::from(per_sec),
            tokens: f64::from(per_sec),
            last: Instant::now(),
        }
    }

    /// Takes a token; returns how long to pause when the bucket is empty.
    fn take(&mut self) -> Option<Duration> {
        if self.per_sec <= 0.0 {
            return None;
        }
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + refill).min(self.per_sec) - 1.0;
        self.last = now;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.per_sec))
    }
}

/// Writes queued lines, batching whatever is waiting into one write. On
/// `closing`, writes what is already queued (bounded by [`CLOSE_GRACE`]) and
/// shuts the stream down. A failed write cancels `broken`, so the reader ends
/// the session instead of queueing for a dead socket.
async fn write_loop<W: AsyncWrite>(
    write: W,
    mut rx: outbox::Receiver,
    closing: CancellationToken,
    broken: CancellationToken,
) {
    tokio::pin!(write);
    let mut buf = BytesMut::new();
    loop {
        let first = tokio::select! {
            biased;
            line = rx.recv() => match line {
                Some(line) => line,
                None => break,
            },
            _ = closing.cancelled() => break,
        };
        buf.extend_from_slice(&first);
        while buf.len() < MAX_WRITE_BATCH {
            match rx.try_recv() {
                Ok(line) => buf.extend_from_slice(&line),
                Err(_) => break,
            }
        }
        let written = {
            let pending = write.write_all(&buf);
            tokio::pin!(pending);
            tokio::select! {
                result = &mut pending => result.is_ok(),
                _ = closing.cancelled() => {
                    matches!(tokio::time::timeout(CLOSE_GRACE, &mut pending).await, Ok(Ok(())))
                }
            }
        };
        buf.clear();
        if rx.is_empty() || buf.capacity() > MAX_WRITE_BATCH {
            // Don't keep a burst's buffer for a session going quiet: with
            // thousands of sessions it was half of their memory.
            buf = BytesMut::new();
            rx.release_idle();
        }
        if !written {
            broken.cancel();
            return;
        }
    }
    while let Ok(line) = rx.try_recv() {
        buf.extend_from_slice(&line);
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if !buf.is_empty() {
            write.write_all(&buf).await?;
        }
        write.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_allows_a_burst_then_paces() {
        let mut limiter = RateLimiter::new(10);
        for _ in 0..10 {
            assert_eq!(limiter.take(), None);
        }
        let wait = limiter.take().expect("the eleventh frame waits");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert_eq!(RateLimiter::new(0).take(), None);
    }
}

//! One client connection: greeting, login, the command loop and its timers.
//!
//! One task per connection does everything: it decodes frames from the
//! socket and acts on them, and writes whatever is queued in its [`Outbox`]
//! (its own replies and events routed by the hub alike), woken by the
//! outbox when others queue something. A single task, no per-connection
//! buffers while idle and one shared allocation for the queue keep an idle
//! session to about 3 KB of server memory (see BENCHMARKS.md).
//!
//! Reading pauses (TCP back-pressure) while the queue is long, while the
//! client has too many `send`s awaiting their reply (after [`HELD_BUDGET`]
//! bytes of frames behind them), and when the client exceeds its frame
//! rate; writing never pauses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::future::BoxFuture;
use msg_proto::server::{
    BroadcastRequest, ClientFrame, LoginRequest, LogoutReason, MAX_CLIENT_ID_LEN, SendRequest,
    ServerFrame, UserRequest, WhoSinceRequest,
};
use msg_proto::validate::{self, TextError};
use msg_proto::{ErrorCode, FrameError, PROTOCOL_VERSION, Refusal};
use msg_proto::{RequestId, Secret};
use tokio::io::Ready;
use tokio::net::TcpStream;
use tokio::sync::oneshot::error::RecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::accounts::AccountsError;
use crate::hub::{ConnId, DRAIN_PAGE, Hub, QueuePage, SessionSpec};
use crate::outbox::{Outbox, ReplySlot};
use crate::store::{StoreError, StoredMessage};
use crate::texts;
use crate::wire::{Decoded, Wire};

/// How long queued frames (a last error, `logged_out`) may take to reach a
/// closing client.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Frames (by approximate size) read and held while a `send` waits for a
/// reply slot, before reading pauses. Reading on lets the acks a client
/// wrote after its sends through: they may be what completes the sends of
/// the user it is talking to, whose acks complete ours.
const HELD_BUDGET: usize = 64 * 1024;
/// Accounting overhead of one held frame.
const HELD_FRAME_COST: usize = 64;
/// A deadline that is not due.
const FAR_FUTURE: Duration = Duration::from_secs(365 * 24 * 3600);

enum Phase {
    /// Waiting for `hello`.
    Greeting,
    /// Greeted, not logged in.
    Anonymous,
    /// Logged in as this user.
    Session(Arc<str>),
}

/// Whether to keep the connection open after a frame.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// How a frame was handled: at once (most commands), or by a boxed future
/// for the few that wait (password checks, the store). Boxed, their states
/// are not part of the connection task, which every idle session carries;
/// the commands on the hot path (`send`, `ack`) allocate nothing for it.
enum Step<'a> {
    Done(Flow),
    Later(BoxFuture<'a, Flow>),
}

impl Step<'_> {
    async fn run(self) -> Flow {
        match self {
            Step::Done(flow) => flow,
            Step::Later(pending) => pending.await,
        }
    }
}

/// A `send` ready to be handed to the hub.
struct OutgoingSend {
    id: RequestId,
    to: String,
    text: String,
    client_id: Option<String>,
}

/// Frames read after a `send` that found no reply slot (the send first), or
/// while the offline queue is delivered, in order, each with what it counts
/// against [`HELD_BUDGET`]. Acks are never held.
#[derive(Default)]
struct Held {
    frames: std::collections::VecDeque<(Decoded, usize)>,
    bytes: usize,
}

impl Held {
    /// `line_len`: the bytes the frame took on the wire.
    fn push_back(&mut self, item: Decoded, line_len: usize) {
        let cost = HELD_FRAME_COST + line_len;
        self.bytes += cost;
        self.frames.push_back((item, cost));
    }

    fn push_front(&mut self, item: Decoded, cost: usize) {
        self.bytes += cost;
        self.frames.push_front((item, cost));
    }

    fn pop_front(&mut self) -> Option<(Decoded, usize)> {
        let (item, cost) = self.frames.pop_front()?;
        self.bytes -= cost;
        Some((item, cost))
    }
}

/// Where a login's offline-queue delivery is.
enum Drain {
    /// Waiting for a page from the store.
    Waiting(QueuePage),
    /// Queueing a page's messages as the client reads; `next` is the
    /// following page, already asked for, if there may be one.
    Writing {
        messages: std::vec::IntoIter<StoredMessage>,
        next: Option<QueuePage>,
    },
}

/// Serves one client until it leaves, misbehaves, times out or the server
/// shuts down.
///
/// The connection's long-lived parts are allocated here, on the caller's
/// (accepting) thread, next to the task itself, rather than on a worker in
/// the middle of transient allocations, where each would pin a page.
pub fn serve(
    hub: Arc<Hub>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let now = Instant::now();
    let mut conn = Connection {
        id: hub.next_conn_id(),
        wire: Wire::new(stream),
        out: Outbox::new(hub.config.outbox_capacity, hub.config.max_outstanding_sends),
        rate: RateLimiter::new(hub.config.max_frames_per_sec),
        hub,
        peer,
        phase: Phase::Greeting,
        bad_frames: 0,
        opened: now,
        last_heard: now,
        last_active: now,
        resume_reading_at: None,
        held: None,
        drain: None,
        drain_progress: now,
        paused: false,
        broken: false,
    };
    tracing::debug!(conn = conn.id, "connection opened");
    async move {
        conn.run(&shutdown).await;
        if let Phase::Session(user) = &conn.phase {
            conn.hub.end_session(user, conn.id);
            tracing::info!(user = %user, conn = conn.id, "session ended");
        }
        conn.close().await;
        tracing::debug!(conn = conn.id, "connection closed");
    }
}

struct Connection {
    hub: Arc<Hub>,
    id: ConnId,
    peer: SocketAddr,
    wire: Wire,
    out: Outbox,
    rate: RateLimiter,
    phase: Phase,
    bad_frames: u32,
    opened: Instant,
    /// Any frame at all, pings included.
    last_heard: Instant,
    /// Last user command, for the inactivity timeout.
    last_active: Instant,
    /// Reading is paused until then (frame rate exceeded).
    resume_reading_at: Option<Instant>,
    /// `Some` while a `send` waits for a reply slot, or frames wait for the
    /// offline queue to be delivered.
    held: Option<Box<Held>>,
    /// `Some` while the offline queue is being delivered after login.
    drain: Option<Box<Drain>>,
    /// When the drain last got anywhere (a page read, lines written).
    drain_progress: Instant,
    /// Reading is paused by the server (not the client's silence), so the
    /// dead-connection timer is off.
    paused: bool,
    /// Writing failed: nothing more can reach the client.
    broken: bool,
}

/// What ended a wait of the connection task.
enum Event {
    Shutdown,
    Timer,
    Socket(std::io::Result<Ready>),
    Page(Result<Result<Vec<StoredMessage>, StoreError>, RecvError>),
    Woken,
}

enum Deadline {
    Login,
    Dead,
    Idle,
    DrainStalled,
    ResumeReading,
}

impl Connection {
    async fn run(&mut self, shutdown: &CancellationToken) {
        // Both live across turns: registering a fresh timer and shutdown
        // waiter on every wake-up cost more than the wake-up's write.
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let timer = tokio::time::sleep_until(self.next_deadline().1);
        tokio::pin!(timer);
        loop {
            if self.out.is_kicked() {
                tracing::info!(conn = self.id, "disconnecting: the client is not reading");
                return;
            }
            if self.drain_due() {
                self.step_drain();
            }
            if self.replay_due() && self.replay_held().await == Flow::Close {
                return;
            }
            let taking = self.may_take_frames();
            if taking {
                if let Some((item, line_len)) = self.wire.next_frame() {
                    if self.on_item(item, line_len).run().await == Flow::Close {
                        return;
                    }
                    continue;
                }
                // A client may half-close after its last requests: they
                // are all answered first, held and deferred ones included.
                if self.wire.finished()
                    && self.held.is_none()
                    && self.drain.is_none()
                    && self.out.all_replies_in()
                {
                    return;
                }
            }
            // Written once every frame already read has been handled, so a
            // burst of requests (or acks during a drain) shares one write.
            let unwritten = self.out.queued();
            let all_written = match self.wire.try_flush(&self.out) {
                Ok(done) => done,
                Err(e) => {
                    tracing::debug!(conn = self.id, error = %e, "write failed");
                    self.broken = true;
                    return;
                }
            };
            if self.drain.is_some() && self.out.queued() < unwritten {
                self.drain_progress = Instant::now();
            }
            if (!taking && self.may_take_frames()) || self.drain_due() || self.replay_due() {
                // The write made room: go round again rather than wait.
                continue;
            }
            let reading = taking && !self.wire.at_eof();
            if reading && self.paused {
                // The client could not be heard while paused.
                self.last_heard = Instant::now();
            }
            self.paused = !reading;
            let (deadline, at) = self.next_deadline();
            // Deadlines mostly move later (every frame pushes them); the
            // timer is only moved earlier here and catches up when it fires.
            if at < timer.deadline() {
                timer.as_mut().reset(at);
            }
            let wire = &self.wire;
            let drain = &mut self.drain;
            // Timers before the socket, so a client that never stops sending
            // still meets its deadlines; the wake-up (something queued, a
            // reply slot freed) last, since every turn writes anyway.
            let event = tokio::select! {
                biased;
                _ = &mut cancelled => Event::Shutdown,
                _ = &mut timer => Event::Timer,
                page = std::future::poll_fn(|cx| match drain.as_deref_mut() {
                    Some(Drain::Waiting(page)) => std::pin::Pin::new(page).poll(cx),
                    _ => Poll::Pending,
                }) => Event::Page(page),
                ready = std::future::poll_fn(|cx| wire.poll_ready(cx, reading, !all_written)) => {
                    Event::Socket(ready)
                }
                _ = self.out.woken() => Event::Woken,
            };
            match event {
                Event::Shutdown => {
                    if matches!(self.phase, Phase::Session(_)) {
                        self.out.reply(&ServerFrame::LoggedOut {
                            reason: LogoutReason::Shutdown,
                            message: texts::SHUTDOWN_LOGOUT.into(),
                        });
                    }
                    return;
                }
                Event::Timer if Instant::now() < at => timer.as_mut().reset(at),
                Event::Timer => {
                    if let Deadline::ResumeReading = deadline {
                        self.resume_reading_at = None;
                    } else {
                        self.on_deadline(deadline);
                        return;
                    }
                }
                Event::Socket(Ok(ready)) => {
                    // While the offline queue goes out, writing comes first;
                    // the client's acks are read when the socket is full.
                    let write_first = ready.is_writable() && self.drain.is_some();
                    if ready.is_readable()
                        && !write_first
                        && let Err(e) = self.wire.try_read()
                    {
                        tracing::debug!(conn = self.id, error = %e, "read failed");
                        return;
                    }
                }
                Event::Socket(Err(e)) => {
                    tracing::debug!(conn = self.id, error = %e, "socket failed");
                    return;
                }
                Event::Page(page) => {
                    if !self.on_page(page) {
                        return;
                    }
                }
                Event::Woken => {}
            }
        }
    }

    /// Own replies may fill half the queue; the rest is room for events.
    fn high_water(&self) -> usize {
        (self.out.capacity() / 2).max(1)
    }

    /// Whether the offline queue should be topped up: from half the
    /// high-water mark, so it goes out in large writes rather than a few
    /// lines at a time.
    fn drain_due(&self) -> bool {
        matches!(self.drain.as_deref(), Some(Drain::Writing { .. }))
            && self.out.queued() <= self.high_water() / 2
    }

    /// Whether held frames can be handled: a reply slot is free and the
    /// queue has room.
    fn replay_due(&self) -> bool {
        self.held.is_some()
            && self.drain.is_none()
            && self.out.has_reply_room()
            && self.out.queued() < self.high_water()
    }

    /// Whether to take the next frame: not while paused by the frame rate,
    /// by too many frames held behind a waiting `send`, or by too many of
    /// the client's own replies unwritten.
    fn may_take_frames(&self) -> bool {
        self.held
            .as_ref()
            .is_none_or(|held| held.bytes < HELD_BUDGET)
            && self.resume_reading_at.is_none()
            && self.out.queued() < self.high_water()
    }

    /// A frame (or a bad one) has arrived.
    fn on_item(&mut self, item: Decoded, line_len: usize) -> Step<'_> {
        self.last_heard = Instant::now();
        if item.as_ref().is_ok_and(ClientFrame::is_user_activity) {
            self.last_active = self.last_heard;
        }
        if let Some(wait) = self.rate.take() {
            self.resume_reading_at = Some(self.last_heard + wait);
        }
        // Behind a `send` waiting for a reply slot, or the offline queue,
        // frames wait their turn; acks never do (they complete the sends
        // others are waiting on, and the drain's messages).
        if (self.held.is_some() || self.drain.is_some())
            && !matches!(item, Ok(ClientFrame::Ack { .. }))
        {
            self.held
                .get_or_insert_with(Box::default)
                .push_back(item, line_len);
            return Step::Done(Flow::Continue);
        }
        self.handle(item)
    }

    fn handle(&mut self, item: Decoded) -> Step<'_> {
        match item {
            Ok(frame) => self.on_frame(frame),
            Err(bad) => Step::Done(self.on_bad_frame(bad)),
        }
    }

    /// A reply slot has come free: handles held frames in order until a
    /// send finds no slot again or the queue reaches its high-water mark.
    async fn replay_held(&mut self) -> Flow {
        let Some(mut held) = self.held.take() else {
            return Flow::Continue;
        };
        while self.out.queued() < self.high_water()
            && let Some((item, _)) = held.pop_front()
        {
            if self.handle(item).run().await == Flow::Close {
                return Flow::Close;
            }
            if let Some(stalled) = self.held.take() {
                // That send stalled again; it goes back in front of the rest.
                for (item, cost) in stalled.frames.into_iter().rev() {
                    held.push_front(item, cost);
                }
                break;
            }
        }
        if !held.frames.is_empty() {
            self.held = Some(held);
        }
        Flow::Continue
    }

    /// The earliest of the deadlines that apply now.
    fn next_deadline(&self) -> (Deadline, Instant) {
        let config = &self.hub.config;
        let phase_deadline = match self.phase {
            Phase::Greeting | Phase::Anonymous => {
                Some((Deadline::Login, self.opened + config.login_timeout))
            }
            Phase::Session(_) => config
                .idle_timeout
                .map(|idle| (Deadline::Idle, self.last_active + idle)),
        };
        // While the server itself is not reading, silence proves nothing; a
        // dead peer then shows up as a failed write or at the other
        // deadlines.
        let dead = (!self.paused).then(|| (Deadline::Dead, self.last_heard + config.dead_timeout));
        let resume = self
            .resume_reading_at
            .map(|at| (Deadline::ResumeReading, at));
        // Live messages to the user wait for the drain (and their senders
        // for a reply): a client that stops reading it cannot stall them.
        let drain = self.drain.is_some().then(|| {
            (
                Deadline::DrainStalled,
                self.drain_progress + config.dead_timeout,
            )
        });
        [resume, phase_deadline, dead, drain]
            .into_iter()
            .flatten()
            .min_by_key(|(_, at)| *at)
            .unwrap_or((Deadline::Dead, Instant::now() + FAR_FUTURE))
    }

    fn on_deadline(&self, deadline: Deadline) {
        match deadline {
            Deadline::Login => {
                self.out.reply(&ServerFrame::error(
                    None,
                    ErrorCode::NotLoggedIn,
                    texts::LOGIN_TIMEOUT,
                ));
            }
            Deadline::Idle => {
                if let Phase::Session(user) = &self.phase {
                    tracing::info!(user = %user, "logging out an inactive user");
                }
                self.out.reply(&ServerFrame::LoggedOut {
                    reason: LogoutReason::Timeout,
                    message: texts::INACTIVITY_LOGOUT.into(),
                });
            }
            Deadline::Dead => {
                tracing::info!(conn = self.id, "closing a silent connection");
            }
            Deadline::DrainStalled => {
                tracing::info!(
                    conn = self.id,
                    "closing: the offline queue is not being read"
                );
            }
            Deadline::ResumeReading => {}
        }
    }

    fn reply(&self, frame: ServerFrame) {
        self.out.reply(&frame);
    }

    fn refuse(&self, id: Option<RequestId>, refusal: Refusal) {
        self.reply(ServerFrame::refusal(id, refusal));
    }

    fn on_bad_frame(&mut self, bad: FrameError) -> Flow {
        self.bad_frames += 1;
        tracing::debug!(conn = self.id, error = %bad, "bad frame");
        let (code, message) = match bad {
            FrameError::TooLong { .. } => (ErrorCode::FrameTooLarge, texts::FRAME_TOO_LARGE),
            _ => (ErrorCode::InvalidCommand, texts::INVALID_COMMAND),
        };
        self.reply(ServerFrame::error(None, code, message));
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

    fn on_frame(&mut self, frame: ClientFrame) -> Step<'_> {
        let flow = match (&self.phase, frame) {
            (_, ClientFrame::Ping) => {
                self.reply(ServerFrame::Pong);
                Flow::Continue
            }
            (Phase::Greeting, ClientFrame::Hello { version, .. }) => self.on_hello(version),
            (Phase::Greeting, _) => {
                self.reply(ServerFrame::error(
                    None,
                    ErrorCode::HelloRequired,
                    texts::HELLO_REQUIRED,
                ));
                Flow::Close
            }
            (
                Phase::Anonymous,
                ClientFrame::Login(LoginRequest {
                    id,
                    user,
                    password,
                    peer_port,
                }),
            ) => {
                return Step::Later(Box::pin(
                    self.on_login(id, user, password, peer_port, false),
                ));
            }
            (
                Phase::Anonymous,
                ClientFrame::Register(LoginRequest {
                    id,
                    user,
                    password,
                    peer_port,
                }),
            ) => {
                return Step::Later(Box::pin(self.on_login(id, user, password, peer_port, true)));
            }
            (
                Phase::Session(_),
                ClientFrame::Login(LoginRequest { id, .. })
                | ClientFrame::Register(LoginRequest { id, .. }),
            ) => {
                let refusal = Refusal::new(
                    ErrorCode::AlreadyAuthenticated,
                    texts::ALREADY_AUTHENTICATED,
                );
                self.refuse(Some(id), refusal);
                Flow::Continue
            }
            (_, ClientFrame::Hello { .. }) => {
                self.on_bad_frame(FrameError::InvalidFrame("second hello".into()))
            }
            (Phase::Anonymous, frame) => {
                if let Some(id) = frame.request_id() {
                    let refusal = Refusal::new(ErrorCode::NotLoggedIn, texts::NOT_LOGGED_IN);
                    self.refuse(Some(id), refusal);
                }
                Flow::Continue
            }
            (Phase::Session(user), frame) => {
                let user = Arc::clone(user);
                return self.on_command(user, frame);
            }
        };
        Step::Done(flow)
    }

    fn on_hello(&mut self, version: u32) -> Flow {
        if version != PROTOCOL_VERSION {
            self.reply(ServerFrame::error(
                None,
                ErrorCode::VersionMismatch,
                texts::version_mismatch(version, PROTOCOL_VERSION),
            ));
            return Flow::Close;
        }
        self.reply(ServerFrame::Hello {
            version: PROTOCOL_VERSION,
            server: concat!("msg-server ", env!("CARGO_PKG_VERSION")).into(),
        });
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
            self.refuse(Some(id), refusal);
            return Flow::Continue;
        }
        let spec = SessionSpec {
            conn: self.id,
            out: self.out.clone(),
            ip: self.peer.ip(),
            peer_port,
        };
        let first_page = match self.hub.begin_session(&user, spec) {
            Ok(page) => page,
            Err(refusal) => {
                self.refuse(Some(id), refusal);
                return Flow::Continue;
            }
        };
        tracing::info!(user = %user, conn = self.id, "logged in");
        self.phase = Phase::Session(Arc::from(user.as_str()));
        self.last_active = Instant::now();
        self.reply(ServerFrame::Welcome {
            id,
            user: user.clone(),
            message: texts::WELCOME.into(),
        });
        // The run loop writes the offline queue as the client reads it,
        // reading the client's acks and commands meanwhile.
        self.drain = Some(Box::new(Drain::Waiting(first_page)));
        self.drain_progress = Instant::now();
        Flow::Continue
    }

    /// Queues the next messages of the offline queue, oldest first, up to
    /// the high-water mark; asks the store for the next page when one is
    /// used up, and ends the drain after the last. The messages stay in the
    /// store until the client acknowledges each one.
    fn step_drain(&mut self) {
        let high_water = self.high_water();
        let Some(Drain::Writing { messages, next }) = self.drain.as_deref_mut() else {
            return;
        };
        while self.out.queued() < high_water {
            let Some(m) = messages.next() else {
                self.drain = match next.take() {
                    Some(page) => Some(Box::new(Drain::Waiting(page))),
                    None => {
                        // Live messages held meanwhile follow; then the
                        // others learn that the user is online.
                        if let Phase::Session(user) = &self.phase {
                            self.hub.finish_drain(user, self.id);
                        }
                        None
                    }
                };
                return;
            };
            self.out.reply(&ServerFrame::Message {
                msg_id: m.id,
                from: m.sender,
                text: m.text,
                at: m.at,
                client_id: m.client_id,
            });
        }
    }

    /// A page of the offline queue has been read; `false` if it could not
    /// be.
    fn on_page(&mut self, page: Result<Result<Vec<StoredMessage>, StoreError>, RecvError>) -> bool {
        let messages = match page {
            Ok(Ok(messages)) => messages,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the offline queue");
                return false;
            }
            Err(_) => return false,
        };
        // Ask for the next page now, so the store reads it while this one
        // is written.
        self.drain_progress = Instant::now();
        let next = match (messages.last(), &self.phase) {
            (Some(last), Phase::Session(user)) if messages.len() == DRAIN_PAGE => {
                Some(self.hub.store.pending_after(user, last.id, DRAIN_PAGE))
            }
            _ => None,
        };
        self.drain = Some(Box::new(Drain::Writing {
            messages: messages.into_iter(),
            next,
        }));
        true
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

    fn on_command(&mut self, user: Arc<str>, frame: ClientFrame) -> Step<'_> {
        let hub = &self.hub;
        let user = &*user;
        let (id, result) = match frame {
            ClientFrame::Send(SendRequest {
                id,
                to,
                text,
                client_id,
            }) => {
                let text = match checked_text(&text) {
                    // Usually nothing was trimmed: keep the decoded string.
                    Ok(trimmed) if trimmed.len() == text.len() => text,
                    Ok(trimmed) => trimmed.to_owned(),
                    Err(refusal) => {
                        self.refuse(Some(id), refusal);
                        return Step::Done(Flow::Continue);
                    }
                };
                if client_id
                    .as_ref()
                    .is_some_and(|c| c.len() > MAX_CLIENT_ID_LEN)
                {
                    let refusal = Refusal::new(ErrorCode::InvalidCommand, texts::INVALID_COMMAND);
                    self.refuse(Some(id), refusal);
                    return Step::Done(Flow::Continue);
                }
                // The `sent` reply comes later, when the message is delivered
                // or stored; reserve its place now, or wait for one.
                match self.out.try_reserve_reply() {
                    Some(slot) => {
                        let send = OutgoingSend {
                            id,
                            to,
                            text,
                            client_id,
                        };
                        self.forward_send(user, send, slot);
                    }
                    None => {
                        // About its length on the wire.
                        let cost = HELD_FRAME_COST
                            + to.len()
                            + text.len()
                            + client_id.as_ref().map_or(0, String::len);
                        let frame = ClientFrame::Send(SendRequest {
                            id,
                            to,
                            text,
                            client_id,
                        });
                        self.held
                            .get_or_insert_with(Box::default)
                            .push_front(Ok(frame), cost);
                    }
                }
                return Step::Done(Flow::Continue);
            }
            ClientFrame::Broadcast(BroadcastRequest { id, text }) => {
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
            ClientFrame::WhoSince(WhoSinceRequest { id, secs }) => {
                let users = hub.who_since(user, secs);
                (id, Ok(ServerFrame::Users { id, users }))
            }
            ClientFrame::Block(UserRequest { id, user: target }) => {
                let user = user.to_owned();
                return Step::Later(Box::pin(async move {
                    let result = self.hub.block(&user, &target).await;
                    self.answer(id, result.map(|text| ServerFrame::ok(id, Some(text))));
                    Flow::Continue
                }));
            }
            ClientFrame::Unblock(UserRequest { id, user: target }) => {
                let user = user.to_owned();
                return Step::Later(Box::pin(async move {
                    let result = self.hub.unblock(&user, &target).await;
                    self.answer(id, result.map(|text| ServerFrame::ok(id, Some(text))));
                    Flow::Continue
                }));
            }
            ClientFrame::Logout { id } => {
                tracing::info!(user, "logged out");
                return Step::Later(Box::pin(async move {
                    // Everything this client acknowledged is durable before
                    // it is told it is logged out.
                    if let Ok(Err(e)) = self.hub.store.barrier().await {
                        tracing::error!(error = %e, "store barrier failed at logout");
                    }
                    self.reply(ServerFrame::ok(id, Some(texts::LOGGED_OUT.into())));
                    Flow::Close
                }));
            }
            ClientFrame::Ack { msg_id } => {
                hub.ack(user, msg_id);
                return Step::Done(Flow::Continue);
            }
            ClientFrame::Activity => return Step::Done(Flow::Continue),
            ClientFrame::PrivateRequest(UserRequest { id, user: callee }) => (
                id,
                hub.private_request(user, &callee)
                    .map(|()| ServerFrame::ok(id, None)),
            ),
            ClientFrame::PrivateAccept(UserRequest { id, user: asker }) => (
                id,
                hub.private_accept(user, &asker)
                    .map(|()| ServerFrame::ok(id, None)),
            ),
            ClientFrame::PrivateDecline(UserRequest { id, user: asker }) => (
                id,
                hub.private_decline(user, &asker)
                    .map(|()| ServerFrame::ok(id, None)),
            ),
            ClientFrame::PrivateEnd(UserRequest { id, user: other }) => {
                hub.private_end(user, &other);
                (id, Ok(ServerFrame::ok(id, None)))
            }
            // Handled before a session exists or in `on_frame`.
            ClientFrame::Hello { .. }
            | ClientFrame::Ping
            | ClientFrame::Login(LoginRequest { .. })
            | ClientFrame::Register(LoginRequest { .. }) => return Step::Done(Flow::Continue),
        };
        self.answer(id, result);
        Step::Done(Flow::Continue)
    }

    fn answer(&self, id: RequestId, result: Result<ServerFrame, Refusal>) {
        match result {
            Ok(frame) => self.reply(frame),
            Err(refusal) => self.refuse(Some(id), refusal),
        }
    }

    fn forward_send(&self, user: &str, send: OutgoingSend, slot: ReplySlot) {
        let OutgoingSend {
            id,
            to,
            text,
            client_id,
        } = send;
        let request = SendRequest {
            id,
            to,
            text,
            client_id,
        };
        if let Err((refusal, slot)) = self.hub.send(user, request, slot) {
            slot.fill(&ServerFrame::refusal(Some(id), refusal));
        }
    }

    /// Writes what is still queued (bounded) and ends the stream.
    async fn close(&mut self) {
        if !self.broken {
            let goodbye = async {
                self.wire.flush(&self.out).await?;
                self.wire.shutdown().await
            };
            let _ = tokio::time::timeout(CLOSE_GRACE, goodbye).await;
        }
        self.out.close();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_frames_count_their_size_on_the_wire() {
        let mut held = Held::default();
        held.push_back(Ok(ClientFrame::Ping), 16);
        assert_eq!(held.bytes, HELD_FRAME_COST + 16);
        // A big frame of any kind (not only a send) uses up the budget.
        held.push_back(Err(FrameError::InvalidUtf8), 60_000);
        held.push_back(Ok(ClientFrame::Activity), 10_000);
        assert!(held.bytes >= HELD_BUDGET);
        held.pop_front();
        held.pop_front();
        held.pop_front();
        assert_eq!(held.bytes, 0);
    }

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

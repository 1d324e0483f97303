//! The server link: one task that owns the TCP connection to msg-server.
//!
//! Control connections talk to it through [`LinkHandle`]. It logs in, relays
//! requests and their replies, stores what the server pushes (in the inbox,
//! *then* acks), pings every 15 s, and when the connection drops it
//! reconnects with backoff and logs in again with the credentials it holds in
//! memory, unless the server ended the session (logout, timeout, lockout).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use msg_proto::control::{ItemKind, LinkState, codes};
use msg_proto::server::{
    BroadcastRequest, ClientFrame, LoginRequest, LogoutReason, SendRequest, ServerFrame,
    UserRequest, WhoSinceRequest,
};
use msg_proto::{
    ErrorCode, JsonLines, PING_EVERY, PROTOCOL_VERSION, Refusal, SILENCE_LIMIT, now_ms, random_hex,
};
use msg_proto::{RequestId, Secret};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, interval_at, sleep, timeout};
use tokio_util::codec::Framed;

use crate::inbox::NewItem;
use crate::peer::{self, PeerListener};
use crate::state::{Expected, NOT_LOGGED_IN, PrivateOutcome, Shared};

type Conn = Framed<TcpStream, JsonLines<ServerFrame, ClientFrame>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a `send` whose connection dropped is retried on the next
/// connections before the user is told it may not have gone through (well
/// inside the CLI's own reply timeout).
const RETRY_WINDOW: Duration = Duration::from_secs(30);

fn unreachable(server: &str) -> Refusal {
    Refusal::new(
        codes::SERVER_UNREACHABLE,
        format!("Cannot reach the server at {server}"),
    )
}

fn lost() -> Refusal {
    Refusal::new(
        codes::SERVER_UNREACHABLE,
        "The connection to the server was lost",
    )
}

/// A request relayed to the server; the id is added by the link.
#[derive(Debug, Clone)]
pub enum ServerRequest {
    Send { to: String, text: String },
    Broadcast { text: String },
    Who,
    WhoSince { secs: u64 },
    Block { user: String },
    Unblock { user: String },
    PrivateRequest { user: String },
    PrivateAccept { user: String },
    PrivateDecline { user: String },
    PrivateEnd { user: String },
}

impl ServerRequest {
    fn frame(self, id: RequestId) -> ClientFrame {
        match self {
            Self::Send { to, text } => ClientFrame::Send(SendRequest {
                id,
                to,
                text,
                client_id: Some(new_client_id()),
            }),
            Self::Broadcast { text } => ClientFrame::Broadcast(BroadcastRequest { id, text }),
            Self::Who => ClientFrame::Who { id },
            Self::WhoSince { secs } => ClientFrame::WhoSince(WhoSinceRequest { id, secs }),
            Self::Block { user } => ClientFrame::Block(UserRequest { id, user }),
            Self::Unblock { user } => ClientFrame::Unblock(UserRequest { id, user }),
            Self::PrivateRequest { user } => ClientFrame::PrivateRequest(UserRequest { id, user }),
            Self::PrivateAccept { user } => ClientFrame::PrivateAccept(UserRequest { id, user }),
            Self::PrivateDecline { user } => ClientFrame::PrivateDecline(UserRequest { id, user }),
            Self::PrivateEnd { user } => ClientFrame::PrivateEnd(UserRequest { id, user }),
        }
    }
}

/// 128 random bits, hex: the idempotency key of one outgoing message.
fn new_client_id() -> String {
    random_hex(16)
}

type Reply<T> = oneshot::Sender<Result<T, Refusal>>;

/// Something to tell the server without waiting for an answer; dropped
/// when offline (the server's session, and its private pairs, are gone then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The user sent a private message (no content).
    Activity,
    /// The private session with this user ended on our side.
    PrivateEnd(String),
}

enum Command {
    Login {
        server: String,
        user: String,
        password: Secret,
        register: bool,
        reply: Reply<String>,
    },
    Request {
        request: ServerRequest,
        reply: Reply<ServerFrame>,
    },
    Logout {
        reply: Reply<()>,
    },
    Note(Note),
}

/// The control side's handle on the link task.
#[derive(Clone)]
pub struct LinkHandle {
    commands: mpsc::Sender<Command>,
}

impl LinkHandle {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, Refusal> {
        let (tx, rx) = oneshot::channel();
        let gone = || Refusal::new(codes::INTERNAL, "msgd is shutting down");
        self.commands.send(make(tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Logs in; the welcome text on success.
    pub async fn login(
        &self,
        server: String,
        user: String,
        password: Secret,
        register: bool,
    ) -> Result<String, Refusal> {
        self.call(|reply| Command::Login {
            server,
            user,
            password,
            register,
            reply,
        })
        .await
    }

    /// Relays a request; the server's reply (never an `error` frame: those
    /// become [`Refusal`]s).
    pub async fn request(&self, request: ServerRequest) -> Result<ServerFrame, Refusal> {
        self.call(|reply| Command::Request { request, reply }).await
    }

    pub async fn logout(&self) -> Result<(), Refusal> {
        self.call(|reply| Command::Logout { reply }).await
    }

    pub fn note(&self, note: Note) {
        if self.commands.try_send(Command::Note(note)).is_err() {
            tracing::debug!("link busy or gone; a note to the server was dropped");
        }
    }

    pub fn downgrade(&self) -> WeakLink {
        WeakLink(self.commands.downgrade())
    }
}

/// A handle that does not keep the link task alive (held by [`Shared`]).
#[derive(Clone)]
pub struct WeakLink(mpsc::WeakSender<Command>);

impl WeakLink {
    pub fn note(&self, note: Note) {
        if let Some(commands) = self.0.upgrade() {
            LinkHandle { commands }.note(note);
        }
    }
}

/// Starts the link task; the port of `peers` is advertised to the server at
/// login.
pub fn spawn(shared: Arc<Shared>, peers: Option<Arc<PeerListener>>) -> LinkHandle {
    let (tx, rx) = mpsc::channel(64);
    let handle = LinkHandle { commands: tx };
    shared.set_link(handle.downgrade());
    tokio::spawn(
        Link {
            shared,
            commands: rx,
            next_id: 1,
            peers,
        }
        .run(),
    );
    handle
}

/// Credentials held in memory only, for logging in again after a drop.
struct Session {
    server: String,
    user: String,
    password: Secret,
}

/// Why an online session loop returned.
enum End {
    /// Over for good: logged out by the user or the server.
    Over,
    /// The connection dropped (or the server restarts): log in again.
    Lost,
    /// The daemon is stopping.
    Stop,
}

enum Pending {
    Request(Reply<ServerFrame>),
    Send(UnansweredSend),
    Logout(Reply<()>),
    /// A request the daemon made itself (auto-accept); the reply is only logged.
    Internal,
}

/// A reply as the control side sees it: server errors become errors.
fn server_result(frame: ServerFrame) -> Result<ServerFrame, Refusal> {
    match frame {
        ServerFrame::Error { code, message, .. } => Err(Refusal::new(code, message)),
        frame => Ok(frame),
    }
}

/// A `send` awaiting its reply, kept whole: if the connection drops first it
/// is sent again after logging back in, with the same `client_id`, so the
/// recipient's daemon stores it once even if the first copy got through.
struct UnansweredSend {
    frame: ClientFrame,
    reply: Reply<ServerFrame>,
    first_sent: Instant,
}

impl UnansweredSend {
    fn give_up(self) {
        let _ = self.reply.send(Err(lost()));
    }
}

struct Link {
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    next_id: RequestId,
    peers: Option<Arc<PeerListener>>,
}

fn not_logged_in(shared: &Shared) -> Refusal {
    match &shared.status().ended {
        Some(ended) => ended.clone(),
        None => Refusal::new(codes::NOT_LOGGED_IN, NOT_LOGGED_IN),
    }
}

impl Link {
    fn id(&mut self) -> RequestId {
        self.next_id += 1;
        self.next_id
    }

    async fn run(mut self) {
        while let Some(command) = self.commands.recv().await {
            match command {
                Command::Login {
                    server,
                    user,
                    password,
                    register,
                    reply,
                } => {
                    match self
                        .connect_and_login(&server, &user, &password, register)
                        .await
                    {
                        Ok((conn, welcome)) => {
                            let _ = reply.send(Ok(welcome));
                            let session = Session {
                                server,
                                user,
                                password,
                            };
                            if self.session(conn, session).await {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    }
                }
                Command::Request { reply, .. } => {
                    let _ = reply.send(Err(not_logged_in(&self.shared)));
                }
                Command::Logout { reply } => {
                    let _ = reply.send(Err(not_logged_in(&self.shared)));
                }
                Command::Note(_) => {}
            }
        }
    }

    /// Connects, says hello and logs in. On success the link is online.
    async fn connect_and_login(
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
        let id = self.id();
        let login = if register {
            ClientFrame::Register(LoginRequest {
                id,
                user: user.into(),
                password: password.clone(),
                peer_port,
            })
        } else {
            ClientFrame::Login(LoginRequest {
                id,
                user: user.into(),
                password: password.clone(),
                peer_port,
            })
        };
        let hello = ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            agent: Some(format!("msgd {}", env!("CARGO_PKG_VERSION"))),
        };
        let exchange = async {
            conn.send(hello).await.map_err(|_| lost())?;
            match next_frame(&mut conn).await? {
                ServerFrame::Hello { .. } => {}
                ServerFrame::Error { code, message, .. } => {
                    return Err(Refusal::new(code, message));
                }
                other => {
                    tracing::warn!("unexpected answer to hello: {other:?}");
                    return Err(Refusal::new(
                        codes::INVALID_COMMAND,
                        "The server does not speak the msg protocol",
                    ));
                }
            }
            conn.send(login).await.map_err(|_| lost())?;
            loop {
                match next_frame(&mut conn).await? {
                    ServerFrame::Welcome {
                        user: name,
                        message,
                        ..
                    } => {
                        return Ok(message).inspect(|_| tracing::info!("logged in as {name}"));
                    }
                    ServerFrame::Error { code, message, .. } => {
                        return Err(Refusal::new(code, message));
                    }
                    ServerFrame::Pong => {}
                    other => tracing::debug!("ignoring {other:?} before welcome"),
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

    /// Runs a logged-in session across reconnections. True when the daemon
    /// is stopping.
    async fn session(&mut self, mut conn: Conn, session: Session) -> bool {
        let mut unanswered = Vec::new();
        loop {
            match self.online(&mut conn, &session, &mut unanswered).await {
                End::Over => {
                    self.logged_out(&session.user);
                    return false;
                }
                End::Stop => return true,
                End::Lost => {
                    // The server ends a dropped session's private sessions.
                    self.end_private_sessions(&session.user);
                    self.shared.status().state = LinkState::Reconnecting;
                    tracing::info!("connection to the server lost; reconnecting");
                    match self.reconnect(&session, &mut unanswered).await {
                        Some(new_conn) => conn = new_conn,
                        None => {
                            unanswered.drain(..).for_each(UnansweredSend::give_up);
                            self.logged_out(&session.user);
                            return self.commands.is_closed();
                        }
                    }
                }
            }
        }
    }

    fn logged_out(&self, user: &str) {
        self.end_private_sessions(user);
        let mut status = self.shared.status();
        status.state = LinkState::LoggedOut;
        status.user = None;
    }

    /// Ends every private session (their connections say bye) and tells the
    /// user about each.
    fn end_private_sessions(&self, user: &str) {
        let peers = self.shared.private().clear();
        for peer in peers {
            self.system_item(
                user,
                Some(&peer),
                &format!("Private messaging with {peer} stopped"),
            );
        }
    }

    /// Tries to log in again until it works, the session is refused for good,
    /// or the user logs out or stops the daemon.
    async fn reconnect(
        &mut self,
        session: &Session,
        unanswered: &mut Vec<UnansweredSend>,
    ) -> Option<Conn> {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let (keep, expired): (Vec<_>, Vec<_>) = unanswered
                .drain(..)
                .partition(|s| s.first_sent.elapsed() < RETRY_WINDOW);
            *unanswered = keep;
            expired.into_iter().for_each(UnansweredSend::give_up);
            let wait = sleep(backoff);
            tokio::pin!(wait);
            // Answer commands while waiting.
            loop {
                tokio::select! {
                    () = &mut wait => break,
                    command = self.commands.recv() => match command {
                        None => return None,
                        Some(Command::Logout { reply }) => {
                            let _ = reply.send(Ok(()));
                            return None;
                        }
                        Some(Command::Login { reply, .. }) => {
                            let busy = "Reconnecting to the server; try again shortly";
                            let _ = reply.send(Err(Refusal::new(codes::SERVER_UNREACHABLE, busy)));
                        }
                        Some(Command::Request { reply, .. }) => {
                            let _ = reply.send(Err(unreachable(&session.server)));
                        }
                        Some(Command::Note(_)) => {}
                    }
                }
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
                    self.system_item(&session.user, None, &e.message);
                    return None;
                }
            }
            self.shared.status().state = LinkState::Reconnecting;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn online(
        &mut self,
        conn: &mut Conn,
        session: &Session,
        unanswered: &mut Vec<UnansweredSend>,
    ) -> End {
        let mut pending: HashMap<RequestId, Pending> = HashMap::new();
        // Sends the last connection took down with it go out again first.
        let mut connected = true;
        for mut send in std::mem::take(unanswered) {
            let id = self.id();
            if let ClientFrame::Send(SendRequest { id: frame_id, .. }) = &mut send.frame {
                *frame_id = id;
            }
            connected = connected && conn.send(send.frame.clone()).await.is_ok();
            pending.insert(id, Pending::Send(send));
        }
        if !connected {
            return self.close_online(End::Lost, pending, unanswered);
        }
        let mut ping = interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        let mut last_heard = Instant::now();
        let end = loop {
            tokio::select! {
                frame = conn.next() => match frame {
                    None | Some(Err(_)) => break End::Lost,
                    Some(Ok(Err(e))) => tracing::warn!("bad frame from the server: {e}"),
                    Some(Ok(Ok(frame))) => {
                        last_heard = Instant::now();
                        if let Some(end) = self.on_frame(frame, conn, session, &mut pending).await {
                            break end;
                        }
                    }
                },
                command = self.commands.recv() => {
                    let Some(command) = command else { break End::Stop };
                    let (frame, waiting) = match command {
                        Command::Request { request, reply } => {
                            let id = self.id();
                            let frame = request.frame(id);
                            let waiting = match &frame {
                                ClientFrame::Send(SendRequest { .. }) => Pending::Send(UnansweredSend {
                                    frame: frame.clone(),
                                    reply,
                                    first_sent: Instant::now(),
                                }),
                                _ => Pending::Request(reply),
                            };
                            (frame, (id, waiting))
                        }
                        Command::Logout { reply } => {
                            let id = self.id();
                            (ClientFrame::Logout { id }, (id, Pending::Logout(reply)))
                        }
                        Command::Note(Note::Activity) => {
                            if conn.send(ClientFrame::Activity).await.is_err() {
                                break End::Lost;
                            }
                            continue;
                        }
                        Command::Note(Note::PrivateEnd(user)) => {
                            let id = self.id();
                            (ClientFrame::PrivateEnd(UserRequest { id, user }), (id, Pending::Internal))
                        }
                        Command::Login { user, reply, .. } => {
                            let answer = if user == session.user {
                                Ok(format!("Already logged in as {user}"))
                            } else {
                                let text = format!("Already logged in as {}. Run `msg logout` first", session.user);
                                Err(Refusal::new(codes::LOGGED_IN_AS_OTHER, text))
                            };
                            let _ = reply.send(answer);
                            continue;
                        }
                    };
                    pending.insert(waiting.0, waiting.1);
                    if conn.send(frame).await.is_err() {
                        break End::Lost;
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > SILENCE_LIMIT {
                        tracing::warn!("the server stopped answering");
                        break End::Lost;
                    }
                    if conn.send(ClientFrame::Ping).await.is_err() {
                        break End::Lost;
                    }
                }
            }
        };
        self.close_online(end, pending, unanswered)
    }

    /// Settles what still waits for a reply on a connection that is gone:
    /// sends are kept for a retry if the session goes on, the rest fail.
    fn close_online(
        &self,
        end: End,
        pending: HashMap<RequestId, Pending>,
        unanswered: &mut Vec<UnansweredSend>,
    ) -> End {
        let mut end = end;
        for (_, waiting) in pending {
            match waiting {
                Pending::Request(reply) => {
                    let _ = reply.send(Err(lost()));
                }
                Pending::Send(send) => {
                    if matches!(end, End::Lost) {
                        unanswered.push(send);
                    } else {
                        send.give_up();
                    }
                }
                Pending::Logout(reply) => {
                    // The user asked to log out; the session is gone either way.
                    let _ = reply.send(Ok(()));
                    end = End::Over;
                }
                Pending::Internal => {}
            }
        }
        end
    }

    /// Handles one frame from the server; `Some` when the session loop ends.
    async fn on_frame(
        &mut self,
        frame: ServerFrame,
        conn: &mut Conn,
        session: &Session,
        pending: &mut HashMap<RequestId, Pending>,
    ) -> Option<End> {
        let user = session.user.as_str();
        if let Some(id) = frame.request_id() {
            match pending.remove(&id) {
                Some(Pending::Request(reply)) => {
                    let _ = reply.send(server_result(frame));
                }
                Some(Pending::Send(send)) => {
                    let _ = send.reply.send(server_result(frame));
                }
                Some(Pending::Logout(reply)) => {
                    let _ = reply.send(Ok(()));
                    return Some(End::Over);
                }
                Some(Pending::Internal) => {
                    tracing::debug!("reply to an internal request: {frame:?}")
                }
                None => tracing::debug!("reply to no request: {frame:?}"),
            }
            return None;
        }
        match frame {
            ServerFrame::Message {
                msg_id,
                from,
                text,
                at,
                client_id,
            } => {
                let item = NewItem {
                    msg_id: Some(msg_id),
                    client_id: client_id.as_deref(),
                    kind: ItemKind::Message,
                    from: Some(&from),
                    text: &text,
                    at,
                };
                match self.shared.record(user, &item) {
                    Ok(stored) => {
                        // Only now, with the message on disk, may the server forget it.
                        if conn.send(ClientFrame::Ack { msg_id }).await.is_err() {
                            return Some(End::Lost);
                        }
                        if stored.is_some() {
                            self.shared.notifier.notify(&from, &text);
                        }
                    }
                    // Unacked, the server keeps it and delivers it again later.
                    Err(e) => tracing::error!("{e}; message left unacknowledged"),
                }
            }
            ServerFrame::Broadcast { from, text, at } => {
                let item = NewItem {
                    msg_id: None,
                    client_id: None,
                    kind: ItemKind::Broadcast,
                    from: Some(&from),
                    text: &text,
                    at,
                };
                if self.store(user, &item) {
                    self.shared.notifier.notify(&from, &text);
                }
            }
            ServerFrame::Presence {
                user: who,
                online,
                at,
            } => {
                let text = format!("{who} logged {}", if online { "in" } else { "out" });
                self.store(
                    user,
                    &NewItem {
                        msg_id: None,
                        client_id: None,
                        kind: ItemKind::Presence,
                        from: Some(&who),
                        text: &text,
                        at,
                    },
                );
            }
            ServerFrame::LoggedOut { reason, message } => {
                self.system_item(user, None, &message);
                return Some(match reason {
                    // A restarting or overloaded server did not end the session on purpose.
                    LogoutReason::Shutdown | LogoutReason::SlowConsumer => End::Lost,
                    LogoutReason::Timeout => {
                        self.shared.notifier.notify("msg", &message);
                        self.shared.status().ended = Some(Refusal::new(codes::TIMEOUT, message));
                        End::Over
                    }
                    LogoutReason::Requested | LogoutReason::Unknown => {
                        self.shared.status().ended =
                            Some(Refusal::new(codes::NOT_LOGGED_IN, message));
                        End::Over
                    }
                });
            }
            ServerFrame::PrivateRequest { from, at } => {
                let text = format!("{from} would like to private message");
                self.store(
                    user,
                    &NewItem {
                        msg_id: None,
                        client_id: None,
                        kind: ItemKind::System,
                        from: Some(&from),
                        text: &text,
                        at,
                    },
                );
                self.shared.notifier.notify(&from, &text);
                if self.shared.config.auto_accept_private {
                    let id = self.id();
                    pending.insert(id, Pending::Internal);
                    if conn
                        .send(ClientFrame::PrivateAccept(UserRequest { id, user: from }))
                        .await
                        .is_err()
                    {
                        return Some(End::Lost);
                    }
                } else {
                    self.shared.private().incoming.insert(from);
                }
            }
            ServerFrame::PrivateReady {
                peer,
                token,
                addr,
                expires_in,
            } => self.private_ready(peer, token, addr, expires_in),
            ServerFrame::PrivateDeclined { peer } => {
                self.private_event(
                    user,
                    &peer,
                    PrivateOutcome::Declined,
                    format!("{peer} declined private messaging"),
                );
            }
            ServerFrame::PrivateExpired { peer } => {
                let asked_by_us = self.shared.private().outgoing.contains(&peer);
                let text = if asked_by_us {
                    format!("Error. {peer} did not answer")
                } else {
                    format!("The private messaging request from {peer} expired")
                };
                self.private_event(user, &peer, PrivateOutcome::Expired, text);
            }
            ServerFrame::PrivateEnded { peer, .. } => {
                // Already over when our side ended it or the connection said bye.
                if self.shared.private().end(&peer, None) {
                    self.system_item(
                        user,
                        Some(&peer),
                        &format!("Private messaging with {peer} stopped"),
                    );
                }
            }
            ServerFrame::Pong | ServerFrame::Hello { .. } => {}
            ServerFrame::Error { code, message, .. } => {
                tracing::warn!("server error without request: {code}: {message}")
            }
            other => tracing::debug!("ignoring {other:?}"),
        }
        None
    }

    /// A session with `peer` is agreed. As the asker (with `addr`) we dial;
    /// as the callee we wait for the caller with `token`. Either way the
    /// user is told once the connection is up.
    fn private_ready(&self, peer: String, token: Secret, addr: Option<String>, expires_in: u64) {
        let mut private = self.shared.private();
        private.incoming.remove(&peer);
        private.outgoing.remove(&peer);
        match addr {
            Some(addr) => {
                let id = private.open(&peer, None);
                drop(private);
                tokio::spawn(peer::dial(Arc::clone(&self.shared), peer, id, addr, token));
            }
            None => {
                let until = Instant::now() + Duration::from_secs(expires_in);
                private.open(&peer, Some(Expected { token, until }));
                drop(private);
                self.shared.private_agreed.notify_waiters();
            }
        }
    }

    fn private_event(&self, user: &str, peer: &str, outcome: PrivateOutcome, text: String) {
        {
            let mut private = self.shared.private();
            private.incoming.remove(peer);
            private.outgoing.remove(peer);
            if let Some(waiter) = private.waiters.remove(peer) {
                let _ = waiter.send(outcome);
            }
        }
        self.system_item(user, Some(peer), &text);
    }

    /// Stores an item; false (logged) when it could not be stored or was a duplicate.
    fn store(&self, user: &str, item: &NewItem<'_>) -> bool {
        match self.shared.record(user, item) {
            Ok(stored) => stored.is_some(),
            Err(e) => {
                tracing::error!("{e}");
                false
            }
        }
    }

    fn system_item(&self, user: &str, from: Option<&str>, text: &str) {
        self.store(user, &NewItem::system(from, text, now_ms()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbox::Inbox;
    use crate::notifier::Notifier;
    use msg_local::config::Config;
    use tokio::net::TcpListener;

    type ServerSide = Framed<TcpStream, JsonLines<ClientFrame, ServerFrame>>;

    async fn recv(conn: &mut ServerSide) -> ClientFrame {
        loop {
            match timeout(Duration::from_secs(10), conn.next()).await {
                Ok(Some(Ok(Ok(ClientFrame::Ping)))) => {}
                Ok(Some(Ok(Ok(frame)))) => return frame,
                other => panic!("expected a frame, got {other:?}"),
            }
        }
    }

    /// Accepts a connection and answers hello; returns the login frame.
    async fn greet(listener: &TcpListener) -> (ServerSide, ClientFrame) {
        let (stream, _) = timeout(Duration::from_secs(10), listener.accept())
            .await
            .unwrap()
            .unwrap();
        let mut conn = Framed::new(stream, JsonLines::new());
        assert!(matches!(
            recv(&mut conn).await,
            ClientFrame::Hello {
                version: PROTOCOL_VERSION,
                ..
            }
        ));
        conn.send(ServerFrame::Hello {
            version: PROTOCOL_VERSION,
            server: "fake".into(),
        })
        .await
        .unwrap();
        let login = recv(&mut conn).await;
        (conn, login)
    }

    async fn welcome(conn: &mut ServerSide, login: &ClientFrame) {
        let ClientFrame::Login(LoginRequest {
            id,
            user,
            password,
            peer_port,
        }) = login
        else {
            panic!("{login:?}")
        };
        assert_eq!(
            password.expose(),
            "falcon*solo",
            "the password held in memory"
        );
        assert!(peer_port.is_some(), "the peer listener is advertised");
        let welcome = ServerFrame::Welcome {
            id: *id,
            user: user.clone(),
            message: "Welcome".into(),
        };
        conn.send(welcome).await.unwrap();
    }

    /// A link to a fake server, logged in as hans.
    async fn logged_in() -> (TcpListener, Arc<Shared>, LinkHandle, ServerSide) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let inbox = Inbox::open_in_memory().unwrap();
        let shared = Arc::new(Shared::new(inbox, Notifier::new(false), Config::default()));
        let peers = PeerListener::new(Arc::clone(&shared), None);
        let link = spawn(Arc::clone(&shared), Some(peers));
        let login = tokio::spawn({
            let (link, addr) = (link.clone(), addr.clone());
            async move {
                link.login(addr, "hans".into(), "falcon*solo".into(), false)
                    .await
            }
        });
        let (mut conn, frame) = greet(&listener).await;
        welcome(&mut conn, &frame).await;
        assert_eq!(login.await.unwrap().unwrap(), "Welcome");
        (listener, shared, link, conn)
    }

    async fn wait_for(shared: &Shared, what: impl Fn(&Shared) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !what(shared) {
            assert!(Instant::now() < deadline, "condition never held");
            sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn stores_before_acking_dedupes_reconnects_and_stops_at_a_refusal() {
        let (listener, shared, link, mut conn) = logged_in().await;

        // A message is acked only once it is in the inbox; a redelivery is
        // acked again but stored once.
        for _ in 0..2 {
            let message = ServerFrame::Message {
                msg_id: 7,
                from: "luke".into(),
                text: "hi".into(),
                at: 1,
                client_id: None,
            };
            conn.send(message).await.unwrap();
            assert_eq!(recv(&mut conn).await, ClientFrame::Ack { msg_id: 7 });
            let stored = shared.inbox().list("hans", true).unwrap();
            assert_eq!(stored.len(), 1);
            assert_eq!(stored[0].line(), "luke: hi");
        }

        // The connection drops: the link logs in again by itself.
        drop(conn);
        let (mut conn, frame) = greet(&listener).await;
        welcome(&mut conn, &frame).await;
        wait_for(&shared, |s| s.status().state == LinkState::Online).await;
        assert_eq!(shared.status().user.as_deref(), Some("hans"));

        // Dropped again, and this time the server refuses (lockout): over.
        drop(conn);
        let (mut conn, frame) = greet(&listener).await;
        let ClientFrame::Login(LoginRequest { id, .. }) = frame else {
            panic!("{frame:?}")
        };
        let refusal =
            ServerFrame::error(Some(id), ErrorCode::LoginBlocked, "Your account is blocked");
        conn.send(refusal).await.unwrap();
        wait_for(&shared, |s| s.status().state == LinkState::LoggedOut).await;
        let err = link.request(ServerRequest::Who).await.unwrap_err();
        assert_eq!(
            err,
            Refusal::new("login_blocked", "Your account is blocked")
        );
    }

    #[tokio::test]
    async fn a_send_cut_off_by_a_dropped_connection_is_retried_with_its_client_id() {
        let (listener, _shared, link, mut conn) = logged_in().await;

        let send = tokio::spawn({
            let link = link.clone();
            async move {
                let request = ServerRequest::Send {
                    to: "luke".into(),
                    text: "are you there".into(),
                };
                link.request(request).await
            }
        });
        let ClientFrame::Send(SendRequest {
            id: first_id,
            client_id: first_key,
            ..
        }) = recv(&mut conn).await
        else {
            panic!("expected the send")
        };
        assert!(first_key.as_ref().is_some_and(|k| k.len() == 32));
        // The server read it, then the connection died before the reply.
        drop(conn);

        let (mut conn, frame) = greet(&listener).await;
        welcome(&mut conn, &frame).await;
        let ClientFrame::Send(SendRequest {
            id,
            to,
            text,
            client_id,
        }) = recv(&mut conn).await
        else {
            panic!("expected the send again")
        };
        assert_ne!(id, first_id, "a new request id on the new connection");
        assert_eq!((to.as_str(), text.as_str()), ("luke", "are you there"));
        assert_eq!(
            client_id, first_key,
            "the same client id, so luke stores it once"
        );
        let sent = ServerFrame::Sent {
            id,
            msg_id: 9,
            queued: false,
        };
        conn.send(sent.clone()).await.unwrap();
        assert_eq!(
            send.await.unwrap().unwrap(),
            sent,
            "the user sees one success"
        );
    }

    #[tokio::test]
    async fn a_timeout_logout_ends_the_session_for_good() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shared = Arc::new(Shared::new(
            Inbox::open_in_memory().unwrap(),
            Notifier::new(false),
            Config::default(),
        ));
        let peers = PeerListener::new(Arc::clone(&shared), None);
        let link = spawn(Arc::clone(&shared), Some(peers));
        let login = tokio::spawn({
            let link = link.clone();
            async move {
                link.login(addr, "hans".into(), "falcon*solo".into(), false)
                    .await
            }
        });
        let (mut conn, frame) = greet(&listener).await;
        welcome(&mut conn, &frame).await;
        login.await.unwrap().unwrap();
        let message = "You have been logged out due to inactivity".to_owned();
        conn.send(ServerFrame::LoggedOut {
            reason: LogoutReason::Timeout,
            message: message.clone(),
        })
        .await
        .unwrap();
        drop(conn);
        wait_for(&shared, |s| s.status().state == LinkState::LoggedOut).await;
        let err = link.request(ServerRequest::Who).await.unwrap_err();
        assert_eq!(err, Refusal::new(codes::TIMEOUT, message.clone()));
        // No reconnection attempt follows.
        assert!(
            timeout(Duration::from_millis(600), listener.accept())
                .await
                .is_err()
        );
        let items = shared.inbox().list("hans", true).unwrap();
        assert_eq!(items.last().unwrap().text, message);
    }
}

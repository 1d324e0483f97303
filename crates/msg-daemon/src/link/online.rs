//! A logged-in connection: relaying requests and matching the server's
//! replies to them, resending the sends a dropped connection took down
//! (with their `client_id`), notes, pings, and handing what the server
//! pushes to `inbound`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use msg_proto::control::codes;
use msg_proto::server::{
    BroadcastRequest, ClientFrame, SendRequest, ServerFrame, UserRequest, WhoSinceRequest,
};
use msg_proto::{PING_EVERY, Refusal, RequestId, SILENCE_LIMIT, random_hex};
use tokio::time::{Instant, interval_at};

use crate::link::burst::{Burst, StoreError, Storer};
use crate::link::handle::{Command, Reply};
use crate::link::inbound::{Inbound, is_arrival};
use crate::link::{Conn, End, Link, Session, lost};
use crate::texts;
use crate::upstream::{Note, Outgoing, ServerRequest};

/// One read from the server connection.
type Received = Result<Result<ServerFrame, msg_proto::FrameError>, std::io::Error>;

/// How long a `send` whose connection dropped is retried on the next
/// connections before the user is told it may not have gone through (well
/// inside the CLI's own reply timeout).
const RETRY_WINDOW: Duration = Duration::from_secs(30);

/// What a request id on this connection waits for.
enum Pending {
    Request(Reply<ServerFrame>),
    Send(UnansweredSend),
    Logout(Reply<()>),
    /// A request the daemon made itself (notes, auto-accept); the reply is
    /// only logged.
    Internal,
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

/// Sends that lost their connection, waiting for the next one.
#[derive(Default)]
pub(super) struct Retries(Vec<UnansweredSend>);

impl Retries {
    /// Fails the sends that have waited too long.
    pub fn expire(&mut self) {
        let (keep, expired) = std::mem::take(&mut self.0)
            .into_iter()
            .partition(|s| s.first_sent.elapsed() < RETRY_WINDOW);
        self.0 = keep;
        expired.into_iter().for_each(UnansweredSend::give_up);
    }

    /// The session is over: every send fails.
    pub fn give_up_all(&mut self) {
        self.0.drain(..).for_each(UnansweredSend::give_up);
    }
}

/// A reply as the control side sees it: server errors become errors.
fn server_result(frame: ServerFrame) -> Result<ServerFrame, Refusal> {
    frame.into_refusal()
}

/// 128 random bits, hex: the idempotency key of one outgoing message.
fn new_client_id() -> String {
    random_hex(16)
}

fn request_frame(request: ServerRequest, id: RequestId) -> ClientFrame {
    match request {
        ServerRequest::Send { to, text } => ClientFrame::Send(SendRequest {
            id,
            to,
            text,
            client_id: Some(new_client_id()),
        }),
        ServerRequest::Broadcast { text } => ClientFrame::Broadcast(BroadcastRequest { id, text }),
        ServerRequest::Who => ClientFrame::Who { id },
        ServerRequest::WhoSince { secs } => ClientFrame::WhoSince(WhoSinceRequest { id, secs }),
        ServerRequest::Block { user } => ClientFrame::Block(UserRequest { id, user }),
        ServerRequest::Unblock { user } => ClientFrame::Unblock(UserRequest { id, user }),
        ServerRequest::PrivateRequest { user } => {
            ClientFrame::PrivateRequest(UserRequest { id, user })
        }
        ServerRequest::PrivateAccept { user } => {
            ClientFrame::PrivateAccept(UserRequest { id, user })
        }
        ServerRequest::PrivateDecline { user } => {
            ClientFrame::PrivateDecline(UserRequest { id, user })
        }
        ServerRequest::PrivateEnd { user } => ClientFrame::PrivateEnd(UserRequest { id, user }),
    }
}

impl Link {
    /// Serves one connection until it ends; sends still unanswered then are
    /// left in `retries` when the session goes on.
    pub(super) async fn online(
        &mut self,
        conn: &mut Conn,
        session: &Session,
        retries: &mut Retries,
    ) -> End {
        let mut pending: HashMap<RequestId, Pending> = HashMap::new();
        // Sends the last connection took down with it go out again first.
        let mut connected = true;
        for mut send in std::mem::take(&mut retries.0) {
            let id = self.id();
            if let ClientFrame::Send(SendRequest { id: frame_id, .. }) = &mut send.frame {
                *frame_id = id;
            }
            connected = connected && conn.send(send.frame.clone()).await.is_ok();
            pending.insert(id, Pending::Send(send));
        }
        if !connected {
            return close(End::Lost, pending, retries);
        }
        let mut ping = interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        let mut last_heard = Instant::now();
        let mut storer = Storer::new(Arc::clone(&self.shared), session.user.clone());
        // Read while the one before commits; a full one waits for it.
        let mut burst = Burst::default();
        let end = loop {
            // A frame to send and what its id waits for, if anything.
            let (frame, waiting) = tokio::select! {
                frame = conn.next(), if !burst.is_full() => {
                    last_heard = Instant::now();
                    let read = self.read_burst(conn, frame, session, &mut pending, &mut burst, &mut storer);
                    match read.await {
                        Some(end) => break end,
                        None => continue,
                    }
                }
                acks = storer.finished(), if storer.busy() => {
                    let acks = match acks {
                        Ok(acks) => acks,
                        Err(e) => break unwritable(&e),
                    };
                    storer.start(&mut burst);
                    if send_all(conn, acks.into_iter().map(|msg_id| ClientFrame::Ack { msg_id })).await.is_err() {
                        break End::Lost;
                    }
                    continue;
                }
                command = self.commands.recv() => match command {
                    None => break End::Stop,
                    Some(Command::Logout { revoke, reply }) => {
                        if revoke {
                            // Gone from here whatever the server answers.
                            self.forget_token(session);
                        }
                        let id = self.id();
                        let frame = ClientFrame::Logout { id, revoke_device: revoke };
                        (frame, Some((id, Pending::Logout(reply))))
                    }
                    Some(Command::Login { user, reply, .. }) => {
                        let answer = if user == session.user {
                            Ok(texts::already_logged_in(&user))
                        } else {
                            let text = texts::logged_in_as_other(&session.user);
                            Err(Refusal::new(codes::LOGGED_IN_AS_OTHER, text))
                        };
                        let _ = reply.send(answer);
                        continue;
                    }
                },
                Some(outgoing) = self.upstream.recv() => self.outgoing(outgoing),
                _ = ping.tick() => {
                    if last_heard.elapsed() > SILENCE_LIMIT {
                        tracing::warn!("the server stopped answering");
                        break End::Lost;
                    }
                    (ClientFrame::Ping, None)
                }
            };
            if let Some((id, waiting)) = waiting {
                pending.insert(id, waiting);
            }
            if conn.send(frame).await.is_err() {
                break End::Lost;
            }
        };
        // What arrived is stored even when the connection is gone: the
        // server delivers unacked messages again, the inbox keeps them once.
        let end = match storer.flush(&mut burst).await {
            Err(e) if matches!(end, End::Lost) => unwritable(&e),
            Err(e) => {
                tracing::error!("{e}; the last items that arrived are not stored");
                end
            }
            Ok(_) => end,
        };
        close(end, pending, retries)
    }

    /// Handles `first` and every further frame already received, up to a
    /// full burst: replies go to whoever waits, pushed items join `burst`,
    /// whose commit starts once nothing else commits (acks follow in the
    /// loop). Any other event waits until everything before it is stored.
    /// `Some` when the connection ends.
    async fn read_burst(
        &mut self,
        conn: &mut Conn,
        first: Option<Received>,
        session: &Session,
        pending: &mut HashMap<RequestId, Pending>,
        burst: &mut Burst,
        storer: &mut Storer,
    ) -> Option<End> {
        let account = session.user.as_str();
        // Acks and requests to send once the frames here are handled.
        let mut out = Vec::new();
        let mut next = first;
        let end = loop {
            match next {
                None | Some(Err(_)) => break Some(End::Lost),
                Some(Ok(Err(e))) => tracing::warn!("bad frame from the server: {e}"),
                Some(Ok(Ok(frame))) => {
                    if let Some(id) = frame.request_id() {
                        if let Some(end) = answer(pending, id, frame) {
                            break Some(end);
                        }
                    } else {
                        if !is_arrival(&frame) {
                            match storer.flush(burst).await {
                                Ok(acks) => out.extend(
                                    acks.into_iter().map(|msg_id| ClientFrame::Ack { msg_id }),
                                ),
                                Err(e) => return Some(unwritable(&e)),
                            }
                        }
                        match self.inbound(frame, account) {
                            Inbound::Nothing => {}
                            Inbound::Store(arrival) => burst.push(arrival),
                            // Over a full burst by at most one frame's worth.
                            Inbound::StoreAll(arrivals) => {
                                arrivals.into_iter().for_each(|arrival| burst.push(arrival))
                            }
                            Inbound::Ask(request) => {
                                let id = self.id();
                                pending.insert(id, Pending::Internal);
                                out.push(request_frame(request, id));
                            }
                            Inbound::End(end) => break Some(end),
                        }
                    }
                }
            }
            if burst.is_full() {
                break None;
            }
            // Only what is already here: never wait to make a burst bigger.
            match conn.next().now_or_never() {
                Some(frame) => next = frame,
                None => break None,
            }
        };
        if end.is_some() {
            return end;
        }
        if !storer.busy() {
            storer.start(burst);
        }
        if send_all(conn, out).await.is_err() {
            return Some(End::Lost);
        }
        None
    }

    /// The frame for a request or note, and what its id waits for.
    fn outgoing(&mut self, outgoing: Outgoing) -> (ClientFrame, Option<(RequestId, Pending)>) {
        let id = self.id();
        match outgoing {
            Outgoing::Request { request, reply } => {
                let frame = request_frame(request, id);
                let waiting = match &frame {
                    ClientFrame::Send(_) => Pending::Send(UnansweredSend {
                        frame: frame.clone(),
                        reply,
                        first_sent: Instant::now(),
                    }),
                    _ => Pending::Request(reply),
                };
                (frame, Some((id, waiting)))
            }
            Outgoing::Note(Note::Activity) => (ClientFrame::Activity, None),
            Outgoing::Note(Note::PrivateEnd(user)) => (
                ClientFrame::PrivateEnd(UserRequest { id, user }),
                Some((id, Pending::Internal)),
            ),
        }
    }
}

/// Hands a reply to whoever waits for request `id`; `Some` when the session
/// loop ends (the reply to our logout).
fn answer(
    pending: &mut HashMap<RequestId, Pending>,
    id: RequestId,
    frame: ServerFrame,
) -> Option<End> {
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
        Some(Pending::Internal) => tracing::debug!("reply to an internal request: {frame:?}"),
        None => tracing::debug!("reply to no request: {frame:?}"),
    }
    None
}

/// Settles what still waits for a reply on a connection that is gone:
/// sends are kept for a retry if the session goes on, the rest fail.
fn close(end: End, pending: HashMap<RequestId, Pending>, retries: &mut Retries) -> End {
    let mut end = end;
    for (_, waiting) in pending {
        match waiting {
            Pending::Request(reply) => {
                let _ = reply.send(Err(lost()));
            }
            Pending::Send(send) => {
                if matches!(end, End::Lost | End::Unwritable) {
                    retries.0.push(send);
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

/// Nothing more is acked: the inbox cannot be written.
fn unwritable(e: &StoreError) -> End {
    tracing::error!("{e}; the messages are left unacknowledged");
    End::Unwritable
}

/// Sends `frames` with one flush.
async fn send_all(
    conn: &mut Conn,
    frames: impl IntoIterator<Item = ClientFrame>,
) -> std::io::Result<()> {
    for frame in frames {
        conn.feed(frame).await?;
    }
    conn.flush().await
}

//! One client connection: greeting, login, the command loop and its timers.
//!
//! One task per connection does everything: it decodes frames from the
//! socket and acts on them, and writes whatever is queued in its [`Outbox`]
//! (its own replies and events routed by the hub alike), woken by the
//! outbox when others queue something. A single task, no per-connection
//! buffers while idle and one shared allocation for the queue keep an idle
//! session small (see BENCHMARKS.md for where each byte goes).
//!
//! Reading pauses (TCP back-pressure) while the queue is long, while the
//! client has too many `send`s awaiting their reply (after
//! [`flow::HELD_BUDGET`] bytes of frames behind them), and when the client
//! exceeds its frame rate; writing never pauses.
//!
//! The parts, each an `impl Connection` (or functions taking one) over the
//! state defined here:
//! - [`run`]: the task's loop, its wake-ups and timers, and the close;
//! - [`dispatch`]: a frame to its handler for the connection's phase, bad
//!   frames, frames held and replayed in order;
//! - [`flow`]: flow control: held frames and their budget, the rate
//!   limiter, when to take the next frame;
//! - [`drain`]: delivery of the offline queue after login;
//! - [`login`]: `hello`, `login` and `register`, password checks;
//! - [`device`]: device tokens: issuing one at login, `resume` with one;
//! - [`cmd`]: one file per request of a logged-in session.
//!
//! Dependencies go one way: `run` uses `dispatch`, which uses `login`,
//! `device` and `cmd`; `login` and `device` use each other; those use `drain` and `flow`; `drain` uses `flow`; `flow` uses
//! none of them.

mod clock;
mod cmd;
mod device;
mod dispatch;
mod drain;
mod flow;
mod login;
mod run;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures::future::BoxFuture;
use msg_proto::server::ServerFrame;
use msg_proto::{Refusal, RequestId};
use tokio::time::Instant;

use crate::connection::clock::Moment;
use crate::connection::drain::Drain;
use crate::connection::flow::{Held, RateLimiter};
use crate::hub::{ConnId, Hub};
use crate::outbox::Outbox;
use crate::stream::Stream;
use crate::wire::Wire;

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

/// Serves one client until it leaves, misbehaves, times out or the server
/// shuts down. `opened`: when it was accepted (a TLS handshake counts
/// against the login deadline).
///
/// The connection's long-lived parts are allocated here, on the caller's
/// (accepting) thread, next to the task itself, rather than on a worker in
/// the middle of transient allocations, where each would pin a page.
pub fn serve(
    hub: Arc<Hub>,
    stream: Stream,
    peer: SocketAddr,
    opened: Instant,
) -> impl Future<Output = ()> + Send + 'static {
    let now = Moment::now();
    let mut conn = Connection {
        id: hub.next_conn_id(),
        wire: Wire::new(stream),
        out: Outbox::new(
            hub.config.outbox_capacity,
            hub.config.connection_budget,
            hub.config.max_outstanding_sends,
            hub.presence.end_counter(),
        ),
        rate: RateLimiter::new(hub.config.max_frames_per_sec),
        hub,
        ip: peer.ip(),
        phase: Phase::Greeting,
        bad_frames: 0,
        opened: Moment::at(opened),
        last_heard: now,
        last_active: now,
        resume_reading_at: None,
        held: None,
        drain: None,
        drain_progress: now,
        drained_to: 0,
        paused: false,
        broken: false,
        presence_batched: true,
    };
    tracing::debug!(conn = conn.id, "connection opened");
    conn.hub.connection_opened(conn.id, conn.out.clone());
    async move {
        conn.run().await;
        conn.end_session();
        // Boxed: its timeout is only needed at the end, and every idle
        // session would otherwise carry room for it.
        Box::pin(conn.close()).await;
        tracing::debug!(conn = conn.id, "connection closed");
    }
}

struct Connection {
    hub: Arc<Hub>,
    id: ConnId,
    /// The client's address (its port is of no use after the accept).
    ip: IpAddr,
    wire: Wire,
    out: Outbox,
    rate: RateLimiter,
    phase: Phase,
    /// Malformed frames so far on this connection (never reset).
    bad_frames: u32,
    opened: Moment,
    /// Any frame at all, pings included.
    last_heard: Moment,
    /// Last user command, for the inactivity timeout.
    last_active: Moment,
    /// Reading is paused until then (frame rate exceeded).
    resume_reading_at: Option<Instant>,
    /// `Some` while a `send` waits for a reply slot, or frames wait for the
    /// offline queue to be delivered.
    held: Option<Box<Held>>,
    /// `Some` while the offline queue is being delivered after login.
    drain: Option<Box<Drain>>,
    /// When the drain last got anywhere (a page read, lines written).
    drain_progress: Moment,
    /// The queue position of the last message delivered from the offline
    /// queue: a later read (another node stored messages) starts after it.
    drained_to: u64,
    /// Reading is paused by the server (not the client's silence), so the
    /// dead-connection timer is off.
    paused: bool,
    /// Writing failed: nothing more can reach the client.
    broken: bool,
    /// The client speaks protocol version 2 or later: its presence notices
    /// come as `presence_batch` frames.
    presence_batched: bool,
}

impl Connection {
    /// Ends the connection's session, if it has one, once.
    fn end_session(&mut self) {
        // Anonymous from here on: nothing is left to end.
        if let Phase::Session(user) = std::mem::replace(&mut self.phase, Phase::Anonymous) {
            self.hub.end_session(&user, self.id);
            tracing::info!(user = %user, conn = self.id, "session ended");
        }
    }

    fn reply(&self, frame: ServerFrame) {
        self.out.reply(&frame);
    }

    fn refuse(&self, id: Option<RequestId>, refusal: Refusal) {
        self.reply(ServerFrame::refusal(id, refusal));
    }

    /// Replies to request `id` with its result.
    fn answer(&self, id: RequestId, result: Result<ServerFrame, Refusal>) {
        match result {
            Ok(frame) => self.reply(frame),
            Err(refusal) => self.refuse(Some(id), refusal),
        }
    }
}

/// A task that panics (a bug) or is dropped unfinished still ends its
/// session: otherwise the user would stay "already logged in" until the
/// server restarts. After a normal end there is nothing left to do.
impl Drop for Connection {
    fn drop(&mut self) {
        if matches!(self.phase, Phase::Session(_)) {
            tracing::warn!(conn = self.id, "a connection ended abnormally");
            self.end_session();
        }
        self.hub.connection_closed(self.id);
        self.out.close();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::accounts::Accounts;
    use crate::hub::Hub;
    use crate::store::Store;

    /// Every idle session carries this future: it must not grow unnoticed
    /// (see BENCHMARKS.md for what it costs per session). Tokio puts it in
    /// a task cell aligned to 128 bytes: 640 bytes in a release build while
    /// the future stays within 528 (496 in this debug build).
    #[tokio::test]
    async fn the_connection_task_stays_small() {
        let dir = tempfile::tempdir().expect("temp dir");
        let credentials = dir.path().join("credentials.txt");
        std::fs::write(&credentials, "hans falcon*solo\n").expect("credentials");
        let (accounts, _) = Accounts::load(&credentials).expect("accounts");
        let (store, snapshot) = Store::open(dir.path(), 0).expect("store");
        let hub = Arc::new(Hub::new(Default::default(), accounts, store, snapshot));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let client = tokio::net::TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (stream, peer) = listener.accept().await.expect("accept");
        let task = super::serve(
            hub,
            crate::stream::Stream::Plain(stream),
            peer,
            tokio::time::Instant::now(),
        );
        let size = std::mem::size_of_val(&task);
        assert!(size <= 504, "the connection future grew to {size} bytes");
        drop(client);
    }
}

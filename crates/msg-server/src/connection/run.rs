//! The connection task's loop: take frames, write what is queued, then wait
//! for whichever comes first — shutdown, a deadline, the offline queue's
//! next page, the socket, or a wake-up from the outbox. Also the deadlines
//! themselves and the bounded goodbye when the connection ends.

use std::task::Poll;
use std::time::Duration;

use msg_proto::ErrorCode;
use msg_proto::server::{LogoutReason, ServerFrame};
use tokio::io::Ready;
use tokio::sync::oneshot::error::RecvError;
use tokio::time::Instant;

use crate::connection::clock::Moment;
use crate::connection::drain::Drain;
use crate::connection::{Connection, Flow, Phase};
use crate::hub::presence_log::Reader;
use crate::store::{StoreError, StoredMessage};
use crate::texts;
use crate::wire::{FellBehind, Notices};

/// A deadline that is not due.
const FAR_FUTURE: Duration = Duration::from_secs(365 * 24 * 3600);

/// What ended a wait of the connection task.
enum Event {
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
    pub(super) async fn run(&mut self) {
        // Lives across turns: registering a fresh timer on every wake-up
        // cost more than the wake-up's write.
        let timer = tokio::time::sleep_until(self.next_deadline().1);
        tokio::pin!(timer);
        loop {
            if self.hub.is_shutting_down() {
                // The hub wakes every connection when it sets this.
                if matches!(self.phase, Phase::Session(_)) {
                    self.out.reply(&ServerFrame::LoggedOut {
                        reason: LogoutReason::Shutdown,
                        message: texts::SHUTDOWN_LOGOUT.into(),
                    });
                }
                return;
            }
            if self.out.is_kicked() {
                tracing::info!(conn = self.id, "disconnecting: the client is not reading");
                // Best effort: after what is already queued, within the
                // close's grace period, if the client reads at all.
                self.reply(ServerFrame::LoggedOut {
                    reason: LogoutReason::SlowConsumer,
                    message: texts::SLOW_CONSUMER_LOGOUT.into(),
                });
                return;
            }
            if self.out.is_revoked() {
                tracing::info!(conn = self.id, "ending a session: its tokens were revoked");
                self.reply(ServerFrame::LoggedOut {
                    reason: LogoutReason::Revoked,
                    message: texts::REVOKED_LOGOUT.into(),
                });
                return;
            }
            if self.out.is_lease_lost() {
                tracing::info!(conn = self.id, "ending a session: its lease is lost");
                self.reply(ServerFrame::LoggedOut {
                    reason: LogoutReason::Shutdown,
                    message: texts::LEASE_LOST_LOGOUT.into(),
                });
                return;
            }
            if self.drain.is_none() && self.out.take_mail() {
                self.read_queue_again();
            }
            if self.drain_due() {
                self.step_drain();
            }
            if self.replay_due() && self.replay_held().await == Flow::Close {
                return;
            }
            let taking = self.may_take_frames();
            if taking {
                if let Some(step) = self.next_step() {
                    if step.run().await == Flow::Close {
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
            let all_written = match self.flush_with_notices() {
                Ok(done) => done,
                Err(e) if e.get_ref().is_some_and(|inner| inner.is::<FellBehind>()) => {
                    self.out.kick();
                    continue;
                }
                Err(e) => {
                    tracing::debug!(conn = self.id, error = %e, "write failed");
                    self.broken = true;
                    return;
                }
            };
            if self.drain.is_some() && self.out.queued() < unwritten {
                self.drain_progress = Moment::now();
            }
            if (!taking && self.may_take_frames()) || self.drain_due() || self.replay_due() {
                // The write made room: go round again rather than wait.
                continue;
            }
            let reading = taking && !self.wire.at_eof();
            if reading && self.paused {
                // The client could not be heard while paused.
                self.last_heard = Moment::now();
            }
            self.paused = !reading;
            let (deadline, at) = self.next_deadline();
            // Deadlines mostly move later (every frame pushes them); the
            // timer is only moved earlier here and catches up when it fires.
            if at < timer.deadline() {
                timer.as_mut().reset(at);
            }
            let wire = &mut self.wire;
            let drain = &mut self.drain;
            let out = &self.out;
            // Timers before the socket, so a client that never stops sending
            // still meets its deadlines; the wake-up (something queued, a
            // reply slot freed) last, since every turn writes anyway.
            let event = tokio::select! {
                biased;
                _ = &mut timer => Event::Timer,
                page = std::future::poll_fn(|cx| match drain.as_deref_mut() {
                    Some(Drain::Waiting { page, .. }) => std::pin::Pin::new(page).poll(cx),
                    _ => Poll::Pending,
                }) => Event::Page(page),
                ready = std::future::poll_fn(|cx| wire.poll_ready(cx, reading, !all_written)) => {
                    Event::Socket(ready)
                }
                _ = std::future::poll_fn(|cx| out.poll_woken(cx)) => Event::Woken,
            };
            match event {
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
                    self.on_page(page);
                    // The next page is often ready before the socket's turn
                    // comes (the socket took all of this one): read what the
                    // client sent meanwhile, or a long drain would leave its
                    // acks and pings unread until the dead-connection timer
                    // closed a live client. One read per page; the page keeps
                    // its priority, so a client cannot stall its own drain.
                    if self.may_take_frames()
                        && !self.wire.at_eof()
                        && let Err(e) = self.wire.try_read()
                    {
                        tracing::debug!(conn = self.id, error = %e, "read failed");
                        return;
                    }
                }
                Event::Woken => {}
            }
        }
    }
    /// Writes what is queued and the presence notices due, without
    /// waiting (see [`crate::wire::Wire::try_flush`]).
    fn flush_with_notices(&mut self) -> std::io::Result<bool> {
        let mut cursor = self.out.presence_cursor();
        let notices = match &self.phase {
            Phase::Session(user) => Some(Notices {
                log: &self.hub.presence,
                reader: Reader {
                    user,
                    batched: self.presence_batched,
                    cursor: &mut cursor,
                },
            }),
            _ => None,
        };
        let flushed = self.wire.try_flush(&self.out, notices);
        self.out.set_presence_cursor(cursor);
        flushed
    }

    /// The earliest of the deadlines that apply now.
    fn next_deadline(&self) -> (Deadline, Instant) {
        let config = &self.hub.config;
        let phase_deadline = match self.phase {
            Phase::Greeting | Phase::Anonymous => {
                Some((Deadline::Login, self.opened.plus(config.login_timeout)))
            }
            Phase::Session(_) => config
                .idle_timeout
                .map(|idle| (Deadline::Idle, self.last_active.plus(idle))),
        };
        // While the server itself is not reading, silence proves nothing; a
        // dead peer then shows up as a failed write or at the other
        // deadlines.
        let dead =
            (!self.paused).then(|| (Deadline::Dead, self.last_heard.plus(config.dead_timeout)));
        let resume = self
            .resume_reading_at
            .map(|at| (Deadline::ResumeReading, at));
        // Live messages to the user wait for the drain (and their senders
        // for a reply): a client that stops reading it cannot stall them.
        // Only while there is something to read: waiting for the store's
        // next page is the server's own delay, not the client's.
        let writing = matches!(self.drain.as_deref(), Some(Drain::Writing { .. }));
        let drain = writing.then(|| {
            (
                Deadline::DrainStalled,
                self.drain_progress.plus(config.dead_timeout),
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

    /// Writes what is still queued (bounded) and ends the stream.
    pub(super) async fn close(&mut self) {
        if !self.broken {
            let goodbye = async {
                self.wire.flush(&self.out).await?;
                self.wire.shutdown().await
            };
            let _ = tokio::time::timeout(self.hub.config.close_grace, goodbye).await;
        }
        self.out.close();
    }
}

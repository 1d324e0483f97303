//! Frames in, in order: each decoded frame (or bad one) goes to its handler
//! for the connection's phase, or waits its turn behind a `send` that has no
//! reply slot yet, or behind the offline queue; held frames are replayed in
//! the order they came.
//!
//! The rules a client can rely on (docs/PROTOCOL.md): the first frame must
//! be a valid `hello`, anything else ends the connection; an error for a
//! frame echoes the frame's `id` whenever it had a readable one; malformed
//! frames are counted per connection, never reset, up to a limit.

use std::sync::Arc;

use crate::connection::clock::Moment;
use msg_proto::server::{ClientFrame, LoginRequest, ResumeRequest, ServerFrame};
use msg_proto::{ErrorCode, FrameError, Refusal, RequestId};

use crate::connection::flow::Held;
use crate::connection::{Connection, Flow, Phase, Step};
use crate::texts;
use crate::wire::Decoded;

impl Connection {
    /// A frame (or a bad one) has arrived.
    pub(super) fn on_item(&mut self, item: Decoded, line_len: usize) -> Step<'_> {
        self.last_heard = Moment::now();
        if item.as_ref().is_ok_and(ClientFrame::is_user_activity) {
            self.last_active = self.last_heard;
        }
        self.count_frame(self.last_heard);
        // Behind a `send` waiting for a reply slot, or the offline queue,
        // frames wait their turn; acks never do (they complete the sends
        // others are waiting on, and the drain's messages).
        if (self.held.is_some() || self.drain.is_some())
            && !matches!(item, Ok(ClientFrame::Ack { .. }))
        {
            self.hold(item, line_len);
            return Step::Done(Flow::Continue);
        }
        self.handle(item)
    }

    /// The next frame read, handled. The frame is gone by the time the
    /// step is awaited, so the connection task does not keep room for one.
    pub(super) fn next_step(&mut self) -> Option<Step<'_>> {
        let (item, line_len) = self.wire.next_frame()?;
        Some(self.on_item(item, line_len))
    }

    /// The first held frame, handled (as [`Connection::next_step`]).
    fn handle_held(&mut self, held: &mut Held) -> Option<Step<'_>> {
        let (item, _) = held.pop_front()?;
        Some(self.handle(item))
    }

    fn handle(&mut self, item: Decoded) -> Step<'_> {
        let greeting = matches!(self.phase, Phase::Greeting);
        match item {
            Ok(ClientFrame::Hello { version, .. }) if greeting => {
                Step::Done(self.on_hello(version))
            }
            // Not a client of this protocol, or not one that follows it.
            Ok(frame) if greeting => Step::Done(self.hello_required(frame.request_id())),
            Err(bad) if greeting => Step::Done(self.hello_required(bad.request_id())),
            Ok(frame) => self.on_frame(frame),
            Err(bad) => {
                // Only the kind: serde's detail may quote the client's values
                // (a password sent as a number, say).
                let (kind, code, message) = match bad {
                    FrameError::TooLong { .. } => {
                        ("too long", ErrorCode::FrameTooLarge, texts::FRAME_TOO_LARGE)
                    }
                    FrameError::InvalidUtf8 => (
                        "not UTF-8",
                        ErrorCode::InvalidCommand,
                        texts::INVALID_COMMAND,
                    ),
                    FrameError::InvalidJson(_) => (
                        "not JSON",
                        ErrorCode::InvalidCommand,
                        texts::INVALID_COMMAND,
                    ),
                    FrameError::InvalidFrame { .. } => (
                        "not a frame",
                        ErrorCode::InvalidCommand,
                        texts::INVALID_COMMAND,
                    ),
                };
                tracing::debug!(conn = self.id, kind, "bad frame");
                Step::Done(self.bad_frame(bad.request_id(), code, message))
            }
        }
    }

    /// Anything but a valid `hello` first: an error, then the end.
    fn hello_required(&self, id: Option<RequestId>) -> Flow {
        tracing::debug!(conn = self.id, "the first frame was not a hello");
        self.reply(ServerFrame::error(
            id,
            ErrorCode::HelloRequired,
            texts::HELLO_REQUIRED,
        ));
        Flow::Close
    }

    /// A reply slot has come free: handles held frames in order until a
    /// send finds no slot again or the queue reaches its high-water mark.
    pub(super) async fn replay_held(&mut self) -> Flow {
        let Some(mut held) = self.held.take() else {
            return Flow::Continue;
        };
        while self.has_room() {
            let Some(step) = self.handle_held(&mut held) else {
                break;
            };
            if step.run().await == Flow::Close {
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

    /// Answers a malformed frame and counts it; the connection closes at
    /// the limit. The count is never reset: good frames in between do not
    /// make a client that keeps sending bad ones any better.
    fn bad_frame(&mut self, id: Option<RequestId>, code: ErrorCode, message: &str) -> Flow {
        self.bad_frames += 1;
        self.reply(ServerFrame::error(id, code, message));
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

    /// A valid frame after the greeting.
    fn on_frame(&mut self, frame: ClientFrame) -> Step<'_> {
        let flow = match (&self.phase, frame) {
            (_, ClientFrame::Ping) => {
                self.reply(ServerFrame::Pong);
                Flow::Continue
            }
            // Greeted once already (the first frame is handled above).
            (_, ClientFrame::Hello { .. }) => {
                tracing::debug!(conn = self.id, "a second hello");
                self.bad_frame(None, ErrorCode::InvalidCommand, texts::INVALID_COMMAND)
            }
            (Phase::Anonymous, ClientFrame::Login(request)) => {
                return Step::Later(Box::pin(self.on_login(request, false)));
            }
            (Phase::Anonymous, ClientFrame::Register(request)) => {
                return Step::Later(Box::pin(self.on_login(request, true)));
            }
            (_, ClientFrame::Account(request)) => {
                return Step::Later(Box::pin(self.on_account(request)));
            }
            (Phase::Anonymous, ClientFrame::Resume(request)) => {
                return Step::Later(Box::pin(self.on_resume(request)));
            }
            (
                Phase::Session(_),
                ClientFrame::Login(LoginRequest { id, .. })
                | ClientFrame::Register(LoginRequest { id, .. })
                | ClientFrame::Resume(ResumeRequest { id, .. }),
            ) => {
                let refusal = Refusal::new(
                    ErrorCode::AlreadyAuthenticated,
                    texts::ALREADY_AUTHENTICATED,
                );
                self.refuse(Some(id), refusal);
                Flow::Continue
            }
            // Before login, requests are refused; `ack` and `activity` have
            // nothing to act on.
            (Phase::Greeting | Phase::Anonymous, frame) => {
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
}

//! The requests of a logged-in session, one file per kind (in the spirit of
//! mini-redis's `cmd/`): each handler takes its request whole, as it came
//! off the wire, and answers it. Most answer at once; `block`, `unblock`
//! and `logout` wait for the store and return a boxed future ([`Step`]).

mod ack;
mod block;
mod broadcast;
mod logout;
mod private;
mod send;
mod who;

use std::sync::Arc;

use msg_proto::server::ClientFrame;
use msg_proto::validate::{self, TextError};
use msg_proto::{ErrorCode, Refusal};

use crate::connection::{Connection, Flow, Step};
use crate::texts;

impl Connection {
    /// A request of `user`'s session.
    pub(super) fn on_command(&mut self, user: Arc<str>, frame: ClientFrame) -> Step<'_> {
        let user = &*user;
        match frame {
            ClientFrame::Send(request) => send::send(self, user, request),
            ClientFrame::Broadcast(request) => broadcast::broadcast(self, user, request),
            ClientFrame::Who { id } => who::who(self, user, id),
            ClientFrame::WhoSince(request) => who::who_since(self, user, request),
            ClientFrame::Block(request) => return block::block(self, user, request),
            ClientFrame::Unblock(request) => return block::unblock(self, user, request),
            ClientFrame::Logout { id, revoke_device } => {
                return logout::logout(self, user, id, revoke_device);
            }
            ClientFrame::Ack { msg_id } => ack::ack(self, user, msg_id),
            ClientFrame::PrivateRequest(request) => return private::request(self, user, request),
            ClientFrame::PrivateAccept(request) => private::accept(self, user, request),
            ClientFrame::PrivateDecline(request) => private::decline(self, user, request),
            ClientFrame::PrivateEnd(request) => private::end(self, user, request),
            // Only resets the inactivity timer, which every user command does.
            ClientFrame::Activity => {}
            // Handled before a session exists, or for every phase.
            ClientFrame::Hello { .. }
            | ClientFrame::Ping
            | ClientFrame::Login(_)
            | ClientFrame::Register(_)
            | ClientFrame::Account(_)
            | ClientFrame::Resume(_) => {}
        }
        Step::Done(Flow::Continue)
    }
}

/// The text of a `send` or `broadcast`, trimmed, or why it is refused.
fn checked_text(text: &str) -> Result<&str, Refusal> {
    validate::message_text(text).map_err(|e| match e {
        TextError::Empty => Refusal::new(ErrorCode::EmptyMessage, texts::EMPTY_MESSAGE),
        TextError::TooLong => Refusal::new(ErrorCode::MessageTooLong, texts::MESSAGE_TOO_LONG),
    })
}

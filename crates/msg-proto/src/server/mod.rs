//! The server protocol: frames between a client (normally `msgd`) and `msg-server`.
//!
//! A connection starts with the client's [`ClientFrame::Hello`], answered by
//! [`ServerFrame::Hello`]. Requests carry a client-chosen `id` that the reply
//! echoes; events the server pushes on its own carry none. `docs/PROTOCOL.md`
//! describes every frame, the order of events and the delivery guarantees.
//!
//! - [`request`]: what the client sends ([`ClientFrame`]); a request with
//!   fields is a struct of its own, so the server can hand it on whole.
//! - [`event`]: what the server sends ([`ServerFrame`]): replies and events.

pub mod event;
pub mod request;

pub use event::{LogoutReason, PresenceEvent, PrivateEndReason, ServerFrame};
pub use request::{
    BroadcastRequest, ClientFrame, LoginRequest, MAX_CLIENT_ID_LEN, MAX_DEVICE_LABEL_LEN,
    ResumeRequest, SendRequest, UserRequest, WhoSinceRequest,
};

#[cfg(test)]
mod tests;

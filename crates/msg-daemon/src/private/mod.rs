//! Private sessions: brokered by the server, then a direct connection
//! between two users' daemons that carries the private messages.
//!
//! Dependencies run one way: [`state`] is the bookkeeping; [`session`] runs
//! an open connection; [`handshake`] admits a caller and [`dial`] calls a
//! callee, and either starts the session; [`listener`] takes callers to
//! the handshake; [`events`] acts on what the server says (and dials); and
//! [`control`] serves `msg private ...`. Nothing here knows the server link:
//! requests and notes to the server go through [`crate::upstream`].

pub mod control;
pub mod dial;
pub mod events;
pub mod handshake;
pub mod listener;
pub mod session;
pub mod state;

pub use listener::PeerListener;
pub use state::Private;

//! Private sessions: brokered by the server, then a direct connection
//! between two users' daemons that carries the private messages.
//!
//! The direct connection is encrypted and mutually authenticated with Noise:
//! the server brokers each side's public key with the one-time token, and
//! a daemon lets in, or talks to, only the holder of the brokered key.
//!
//! Dependencies run one way: [`keys`] holds our key pair and the secrets
//! of a session; [`record`] seals the peer protocol into Noise records and
//! [`noise`] runs the handshake that sets them up; [`state`] is the
//! bookkeeping; [`session`] runs an open connection; [`handshake`] admits a
//! caller and [`dial`] calls a callee, and either starts the session;
//! [`listener`] takes callers to the handshake; [`events`] acts on what the
//! server says (and dials); and [`control`] serves `msg private ...`.
//! Nothing here knows the server link: requests and notes to the server go
//! through [`crate::upstream`].

pub mod control;
pub mod dial;
pub mod events;
pub mod handshake;
pub mod keys;
pub mod listener;
pub mod noise;
pub mod record;
pub mod session;
pub mod state;

pub use listener::PeerListener;
pub use state::Private;

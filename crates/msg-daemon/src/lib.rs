//! `msgd`, the per-user daemon of msg.
//!
//! It holds one account's server connection ([`link`]), serves the `msg` CLI
//! on a local socket ([`control`], [`socket`]), keeps the inbox ([`inbox`]),
//! raises desktop notifications ([`notifier`]) and runs private sessions
//! with other users' daemons ([`peer`]: listener and handshake, [`private`]:
//! the sessions). [`daemon::run`] wires them together.

pub mod control;
pub mod daemon;
pub mod inbox;
pub mod link;
pub mod notifier;
pub mod peer;
pub mod private;
pub mod socket;
pub mod state;

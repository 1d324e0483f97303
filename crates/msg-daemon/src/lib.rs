//! `msgd`, the per-user daemon of msg.
//!
//! It holds one account's server connection ([`link`]), serves the `msg` CLI
//! on a local socket ([`control`], [`socket`]), keeps the inbox ([`inbox`]),
//! raises desktop notifications ([`notifier`]) and runs private sessions
//! with other users' daemons ([`private`]). [`daemon::run`] wires them
//! together.
//!
//! Modules depend on each other in one direction only, from the leaves up:
//! [`texts`], [`upstream`] (the queue to the server link), [`inbox`],
//! [`notifier`], [`socket`], [`device_token`]; then [`state`], [`replies`] and
//! [`retention`]; then [`private`]; then [`link`]; then [`control`]; then
//! [`daemon`].

pub mod cli;
pub mod control;
pub mod daemon;
pub mod device_token;
pub mod inbox;
pub mod link;
pub mod notifier;
pub mod private;
pub mod replies;
pub mod retention;
pub mod socket;
pub mod state;
pub mod texts;
pub mod upstream;

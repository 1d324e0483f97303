//! The local side of msg shared by the `msg` CLI and `msgd`: where things
//! live ([`paths`]), the control socket's name, the connection to it and the
//! daemon-lock check ([`socket`]), and `config.toml` ([`config`]).
//!
//! Kept small on purpose: the one-shot CLI links this and `msg-proto`, not
//! the daemon's storage and notification stacks.

pub mod config;
pub mod paths;
pub mod socket;
pub mod uid;

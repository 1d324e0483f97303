//! The local side of msg shared by the `msg` CLI and `msgd`: where things
//! live ([`paths`]), the control socket's name, the connection to it and the
//! daemon-lock check ([`socket`]), and `config.toml` ([`config`]); the
//! server address forms ([`server_addr`]) and the pinned certificates
//! ([`known_servers`]); the reconnection delays ([`backoff`]).
//!
//! Kept small on purpose: the one-shot CLI links this and `msg-proto`, not
//! the daemon's storage and notification stacks.

pub mod backoff;
pub mod config;
pub mod known_servers;
pub mod paths;
pub mod server_addr;
pub mod socket;
pub mod uid;

//! `msg-server`: accounts and lockouts, sessions, routing and presence, the
//! durable offline queue, and the brokering of private peer-to-peer sessions.
//!
//! - [`accounts`]: the credentials file (plain or argon2 entries, atomic edits).
//! - [`passwords`]: password checks and hashes, bounded and taking turns;
//!   [`fair_permits`] shares them among client addresses.
//! - [`per_address`]: rate limits per client address.
//! - [`store`]: SQLite on its own thread, with group commit.
//! - [`cluster`]: cluster mode's shared PostgreSQL (accounts, lockouts,
//!   login leases) and its NATS link to the other nodes.
//! - [`hub`]: the in-memory state and every routing rule.
//! - [`connection`]: one client's frames, phases and timers.
//! - [`wire`] and [`outbox`]: a connection's socket I/O and its send queue;
//!   [`stream`]: the socket itself, plain TCP or TLS.
//! - [`tls`]: the certificate in use, its reload, the bounded handshake;
//!   [`cert`]: `msg-server cert`, a self-signed certificate.
//! - [`server`]: the accept loop, background duties and shutdown.
//! - [`state_dir`]: where the database lives, private and locked.
//! - [`admin`]: `msg-server revoke`/`passwd` talking to the running server.
//! - [`cli`]: the command line, turned into a [`config::Config`].

pub mod accounts;
pub mod admin;
pub mod cert;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod fair_permits;
pub mod hub;
pub mod outbox;
pub mod passwords;
pub mod per_address;
pub mod server;
pub mod state_dir;
pub mod store;
pub mod stream;
pub mod texts;
pub mod tls;
pub mod wire;

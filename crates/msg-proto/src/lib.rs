//! Wire types and framing shared by every part of msg.
//!
//! Every protocol in msg is newline-delimited JSON: one object per line, tagged
//! by its `"type"` field. See `docs/PROTOCOL.md` at the repository root for the
//! full description of the server protocol, written so that a client can be
//! implemented in any language from it alone.
//!
//! - [`server`]: what a client (normally `msgd`) and `msg-server` exchange.
//! - [`control`]: what the `msg` CLI and its user's `msgd` exchange.
//! - [`peer`]: what two users' daemons exchange in a private session.
//! - [`codec`]: the NDJSON codec with a frame-size limit, for tokio-util.
//! - [`types`]: ids, times, secrets, random tokens and keep-alive periods,
//!   shared by every protocol; [`msg_id`]: the server's message ids.
//! - [`error`]: the stable error codes and [`Refusal`], code plus text.
//! - [`fingerprint`]: a certificate's SHA-256 as people read and pin it.
//! - [`validate`]: the rules for usernames, passwords and message texts, so that
//!   clients can refuse bad input before it reaches the wire.

pub mod codec;
pub mod control;
pub mod error;
pub mod fingerprint;
pub mod msg_id;
pub mod peer;
pub mod server;
pub mod types;
pub mod validate;

pub use codec::{FrameError, JsonLines, encode_line};
pub use error::{ErrorCode, Refusal};
pub use fingerprint::Fingerprint;
pub use types::{
    MsgId, PING_EVERY, RequestId, SILENCE_LIMIT, Secret, Timestamp, now_ms, random_hex,
};

/// Version of the server protocol; exchanged in `hello` and checked by both
/// sides. Version 2 batches presence notices (`presence_batch`).
pub const PROTOCOL_VERSION: u32 = 2;

/// The oldest client version the server still serves (version 1 clients get
/// one `presence` frame per login or logout).
pub const OLDEST_PROTOCOL_VERSION: u32 = 1;

/// Largest frame accepted on any msg connection, newline excluded.
pub const MAX_FRAME_LEN: usize = 64 * 1024;

/// Default TCP port of `msg-server`.
pub const DEFAULT_PORT: u16 = 4747;

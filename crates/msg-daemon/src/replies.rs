//! How outcomes become replies to `msg`, the same for every request: a
//! refusal, a text that is not a valid message, a server answer the daemon
//! did not expect, and relaying a request whose answer is an `ok` text.

use msg_proto::control::{Reply, codes};
use msg_proto::server::ServerFrame;
use msg_proto::validate::{self, TextError};
use msg_proto::{ErrorCode, Refusal};

use crate::texts;
use crate::upstream::{ServerRequest, Upstream};

pub fn refused(e: Refusal) -> Reply {
    Reply::Error {
        code: e.code.into_owned(),
        message: e.message,
        retry_after: e.retry_after,
        fingerprint: e.fingerprint,
    }
}

/// The trimmed text of a message, or the reply refusing it.
pub fn message_text(text: &str) -> Result<String, Reply> {
    match validate::message_text(text) {
        Ok(text) => Ok(text.to_owned()),
        Err(TextError::Empty) => Err(Reply::error(
            ErrorCode::EmptyMessage.as_str(),
            texts::EMPTY_MESSAGE,
        )),
        Err(TextError::TooLong) => Err(Reply::error(
            ErrorCode::MessageTooLong.as_str(),
            texts::MESSAGE_TOO_LONG,
        )),
    }
}

pub fn unexpected(frame: ServerFrame) -> Reply {
    tracing::warn!("unexpected reply from the server: {frame:?}");
    Reply::error(codes::INTERNAL, texts::UNEXPECTED_REPLY)
}

pub fn invalid_command() -> Reply {
    Reply::error(codes::INVALID_COMMAND, texts::INVALID_COMMAND)
}

/// Relays a request whose reply is `ok` with a text.
pub async fn relay(upstream: &Upstream, request: ServerRequest) -> Reply {
    match upstream.request(request).await {
        Ok(ServerFrame::Ok { message, .. }) => Reply::Done { message },
        Ok(other) => unexpected(other),
        Err(e) => refused(e),
    }
}

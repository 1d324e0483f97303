//! `send`: a direct message. Its `sent` reply comes later, when the message
//! is delivered or stored, so it needs a reply slot first; without one the
//! request is held, whole, until a slot comes free.

use msg_proto::server::{MAX_CLIENT_ID_LEN, SendRequest, ServerFrame};
use msg_proto::{ErrorCode, Refusal};

use crate::connection::Connection;
use crate::connection::cmd::checked_text;
use crate::texts;

pub(super) fn send(conn: &mut Connection, user: &str, mut request: SendRequest) {
    #[cfg(debug_assertions)]
    if conn.hub.config.panic_on_text.as_ref() == Some(&request.text) {
        panic!("test hook: a connection task panics");
    }
    let id = request.id;
    let trimmed = match checked_text(&request.text) {
        // Usually nothing was trimmed: keep the decoded string.
        Ok(text) if text.len() == request.text.len() => None,
        Ok(text) => Some(text.to_owned()),
        Err(refusal) => return conn.refuse(Some(id), refusal),
    };
    if let Some(text) = trimmed {
        request.text = text;
    }
    if request
        .client_id
        .as_ref()
        // An opaque key, but no NUL: a database column would refuse it.
        .is_some_and(|c| c.len() > MAX_CLIENT_ID_LEN || c.contains('\0'))
    {
        let refusal = Refusal::new(ErrorCode::InvalidCommand, texts::INVALID_COMMAND);
        return conn.refuse(Some(id), refusal);
    }
    match conn.out.try_reserve_reply() {
        Some(slot) => {
            if let Err((refusal, slot)) = conn.hub.send(user, request, slot) {
                slot.fill(&ServerFrame::refusal(Some(id), refusal));
            }
        }
        None => conn.hold_send(request),
    }
}

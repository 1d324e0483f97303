//! `broadcast`: to every online user but the sender and those who block the
//! sender; the reply says when some were skipped.

use msg_proto::server::{BroadcastRequest, ServerFrame};

use crate::connection::Connection;
use crate::connection::cmd::checked_text;
use crate::texts;

pub(super) fn broadcast(conn: &mut Connection, user: &str, request: BroadcastRequest) {
    let BroadcastRequest { id, text } = request;
    let result = checked_text(&text).map(|trimmed| {
        let skipped = conn.hub.broadcast(user, trimmed.to_owned());
        ServerFrame::ok(id, skipped.then(|| texts::BROADCAST_PARTLY_BLOCKED.into()))
    });
    conn.answer(id, result);
}

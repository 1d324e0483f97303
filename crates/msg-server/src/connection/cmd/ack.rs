//! `ack`: the client has stored a message durably. Never held and never
//! answered: it completes the sender's `send`, or deletes the stored copy.

use msg_proto::MsgId;

use crate::connection::Connection;

pub(super) fn ack(conn: &mut Connection, user: &str, msg_id: MsgId) {
    conn.hub.ack(user, msg_id);
}

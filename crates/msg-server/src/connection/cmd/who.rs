//! `who` and `who_since`: the users online now, or at any moment lately.

use msg_proto::RequestId;
use msg_proto::server::{ServerFrame, WhoSinceRequest};

use crate::connection::Connection;

pub(super) fn who(conn: &mut Connection, user: &str, id: RequestId) {
    let users = conn.hub.who(user);
    conn.reply(ServerFrame::Users { id, users });
}

pub(super) fn who_since(conn: &mut Connection, user: &str, request: WhoSinceRequest) {
    let WhoSinceRequest { id, secs } = request;
    let users = conn.hub.who_since(user, secs);
    conn.reply(ServerFrame::Users { id, users });
}

//! The private-session requests: `private_request`, `private_accept`,
//! `private_decline` and `private_end`. The hub brokers; these answer (a
//! request to a user of another node once that node has answered).

use msg_proto::server::{ServerFrame, UserRequest};

use crate::connection::{Connection, Flow, Step};

/// Waits for the callee's node when the callee is on another one.
pub(super) fn request<'a>(conn: &'a mut Connection, user: &str, request: UserRequest) -> Step<'a> {
    let user = user.to_owned();
    Step::Later(Box::pin(async move {
        let UserRequest { id, user: callee } = request;
        let result = conn.hub.private_request(&user, &callee).await;
        conn.answer(id, result.map(|()| ServerFrame::ok(id, None)));
        Flow::Continue
    }))
}

pub(super) fn accept(conn: &mut Connection, user: &str, request: UserRequest) {
    let UserRequest { id, user: asker } = request;
    let result = conn.hub.private_accept(user, &asker);
    conn.answer(id, result.map(|()| ServerFrame::ok(id, None)));
}

pub(super) fn decline(conn: &mut Connection, user: &str, request: UserRequest) {
    let UserRequest { id, user: asker } = request;
    let result = conn.hub.private_decline(user, &asker);
    conn.answer(id, result.map(|()| ServerFrame::ok(id, None)));
}

pub(super) fn end(conn: &mut Connection, user: &str, request: UserRequest) {
    let UserRequest { id, user: other } = request;
    conn.hub.private_end(user, &other);
    conn.reply(ServerFrame::ok(id, None));
}

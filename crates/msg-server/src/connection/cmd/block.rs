//! `block` and `unblock`: answered once the change is durable, so they wait
//! for the store (a boxed future, outside the connection task).

use msg_proto::server::{ServerFrame, UserRequest};

use crate::connection::{Connection, Flow, Step};

pub(super) fn block<'a>(conn: &'a mut Connection, user: &str, request: UserRequest) -> Step<'a> {
    let user = user.to_owned();
    Step::Later(Box::pin(async move {
        let UserRequest { id, user: target } = request;
        let result = conn.hub.block(&user, &target).await;
        conn.answer(id, result.map(|text| ServerFrame::ok(id, Some(text))));
        Flow::Continue
    }))
}

pub(super) fn unblock<'a>(conn: &'a mut Connection, user: &str, request: UserRequest) -> Step<'a> {
    let user = user.to_owned();
    Step::Later(Box::pin(async move {
        let UserRequest { id, user: target } = request;
        let result = conn.hub.unblock(&user, &target).await;
        conn.answer(id, result.map(|text| ServerFrame::ok(id, Some(text))));
        Flow::Continue
    }))
}

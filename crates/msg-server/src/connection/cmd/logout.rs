//! `logout`: answered once everything the client acknowledged is durable,
//! then the connection closes.

use msg_proto::RequestId;
use msg_proto::server::ServerFrame;

use crate::connection::{Connection, Flow, Step};
use crate::texts;

pub(super) fn logout<'a>(conn: &'a mut Connection, user: &str, id: RequestId) -> Step<'a> {
    tracing::info!(user, "logged out");
    Step::Later(Box::pin(async move {
        // The acks it sent deleted stored messages: that must not be undone
        // by a crash after the client was told it is logged out.
        if let Ok(Err(e)) = conn.hub.store.barrier().await {
            tracing::error!(error = %e, "store barrier failed at logout");
        }
        conn.reply(ServerFrame::ok(id, Some(texts::LOGGED_OUT.into())));
        Flow::Close
    }))
}

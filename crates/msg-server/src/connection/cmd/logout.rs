//! `logout`: answered once everything the client acknowledged is durable
//! (and the session's device token revoked, if asked), then the connection
//! closes.

use msg_proto::RequestId;
use msg_proto::server::ServerFrame;

use crate::connection::{Connection, Flow, Step};
use crate::store::DeviceOp;
use crate::texts;

pub(super) fn logout<'a>(
    conn: &'a mut Connection,
    user: &str,
    id: RequestId,
    revoke_device: bool,
) -> Step<'a> {
    tracing::info!(user, revoke_device, "logged out");
    let device = revoke_device
        .then(|| conn.hub.session_device(user, conn.id))
        .flatten();
    if let Some(hash) = device {
        // Durable by the barrier below.
        drop(conn.hub.store.devices(DeviceOp::Revoke {
            user: user.to_owned(),
            hash,
        }));
    }
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

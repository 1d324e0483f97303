//! The session requests: login, logout, status, and stopping msgd.

use msg_proto::Secret;
use msg_proto::control::{Reply, Status, Trust};

use crate::link::LinkHandle;
use crate::private::Private;
use crate::replies;
use crate::state::Shared;
use crate::texts;

pub async fn login(
    link: &LinkHandle,
    user: String,
    password: Secret,
    server: String,
    register: bool,
    trust: Trust,
) -> Reply {
    match link
        .login_trusting(server, user, password, register, trust)
        .await
    {
        Ok(welcome) => Reply::done(welcome),
        Err(e) => replies::refused(e),
    }
}

pub async fn logout(link: &LinkHandle) -> Reply {
    match link.logout().await {
        Ok(()) => Reply::Done { message: None },
        Err(e) => replies::refused(e),
    }
}

pub fn status(shared: &Shared, private: &Private) -> Reply {
    let link = shared.status().clone();
    let unread = match shared.inbox_account() {
        Ok(Some(account)) => shared.inbox().unread(&account).unwrap_or(0),
        _ => 0,
    };
    Reply::Status(Box::new(Status {
        pid: std::process::id(),
        server: link.server,
        user: link.user,
        state: link.state,
        unread,
        private: private.state().sessions.keys().cloned().collect(),
        watchers: shared.events.receiver_count() as u64,
        retry_in: link.waiting.as_ref().map(|w| w.secs_left()),
        waiting: link.waiting.map(|w| w.reason.text().to_owned()),
    }))
}

/// Logs out first, so that the others see us leave; the caller then stops
/// the daemon.
pub async fn shutdown(link: &LinkHandle) -> Reply {
    let _ = link.logout().await;
    Reply::done(texts::STOPPED)
}

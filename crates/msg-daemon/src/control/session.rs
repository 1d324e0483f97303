//! The session requests: login, logout, status, and stopping msgd.

use msg_proto::Secret;
use msg_proto::control::{Reply, Status, Trust};

use crate::link::{self, LinkHandle};
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

pub async fn account(server: &str, user: &str, trust: &Trust) -> Reply {
    match link::account_info(server, user, trust).await {
        Ok(info) => Reply::Account {
            exists: info.exists,
            registration: info.registration,
            blocked_for: info.blocked_for,
        },
        Err(e) => replies::refused(e),
    }
}

/// `msg logout`: also revokes this device's token (here and on the server).
pub async fn logout(link: &LinkHandle) -> Reply {
    match link.logout(true).await {
        Ok(()) => Reply::Done { message: None },
        Err(e) => replies::refused(e),
    }
}

pub fn status(shared: &Shared, private: &Private) -> Reply {
    let link = shared.status().clone();
    let ended = link.ended.clone().filter(|_| link.user.is_none());
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
        ended: ended.map(|refusal| refusal.message),
    }))
}

/// Logs out first, so that the others see us leave; the caller then stops
/// the daemon. The device token is kept: the next start logs in by itself.
pub async fn shutdown(link: &LinkHandle) -> Reply {
    let _ = link.logout(false).await;
    Reply::done(texts::STOPPED)
}

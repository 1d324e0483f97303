//! What to do when the server says something about private sessions: a
//! request from another user, an agreed session (`private_ready`), a
//! declined or expired request, an ended session; and ending them all when
//! our server session is over. The server link calls these with the account
//! it is logged in as.

use std::sync::Arc;
use std::time::Duration;

use msg_proto::{Secret, Timestamp};
use tokio::time::Instant;

use crate::inbox::NewItem;
use crate::private::dial;
use crate::private::state::{Caller, Expected, Private, PrivateOutcome};
use crate::texts;
use crate::upstream::ServerRequest;

/// How long a session's token may wait for its caller at most, in seconds.
const MAX_EXPIRES_IN: u64 = 3600;

/// `from` asks for a session with us. Returns the request to send the server
/// when the config accepts every request at once.
pub fn requested(
    private: &Private,
    account: &str,
    from: String,
    at: Timestamp,
) -> Option<ServerRequest> {
    let shared = &private.shared;
    let text = texts::private_request(&from);
    shared.store(account, &NewItem::system(Some(&from), &text, at));
    shared.notifier.notify(&from, &text);
    if shared.config.auto_accept_private {
        return Some(ServerRequest::PrivateAccept { user: from });
    }
    private.state().incoming.insert(from);
    None
}

/// A session with `peer` is agreed. As the asker (with `addr`) we dial; as
/// the callee we wait for the caller with `token`, from `caller_ip` only.
/// Either way the user is told once the connection is up.
pub fn ready(
    private: &Arc<Private>,
    peer: String,
    token: Secret,
    addr: Option<String>,
    caller_ip: Option<String>,
    expires_in: u64,
) {
    let mut state = private.state();
    state.incoming.remove(&peer);
    state.outgoing.remove(&peer);
    match addr {
        Some(addr) => {
            let id = state.open(&peer, None);
            drop(state);
            private.spawn(dial::dial(Arc::clone(private), peer, id, addr, token));
        }
        None => {
            // The server bounds it to minutes; a hostile value must not
            // overflow the deadline.
            let expires_in = Duration::from_secs(expires_in.min(MAX_EXPIRES_IN));
            let expected = Expected {
                token,
                until: Instant::now() + expires_in,
                caller: Caller::parse(caller_ip.as_deref()),
            };
            state.open(&peer, Some(expected));
            drop(state);
            private.agreed.notify_waiters();
        }
    }
}

pub fn declined(private: &Private, account: &str, peer: &str) {
    private.state().answered(peer, PrivateOutcome::Declined);
    let text = texts::private_declined(peer);
    private.shared.tell_account(account, Some(peer), &text);
}

/// A request between us and `peer`, either way, went unanswered.
pub fn expired(private: &Private, account: &str, peer: &str) {
    let text = {
        let mut state = private.state();
        let asked_by_us = state.outgoing.contains(peer);
        state.answered(peer, PrivateOutcome::Expired);
        if asked_by_us {
            texts::private_unanswered(peer)
        } else {
            texts::private_request_expired(peer)
        }
    };
    private.shared.tell_account(account, Some(peer), &text);
}

/// The server ended the session with `peer` (the peer stopped, logged out,
/// vanished, or one of us blocked the other). Ending it here drops its
/// connection, which says `bye`.
pub fn ended(private: &Private, account: &str, peer: &str) {
    // Already over when our side ended it or the connection said bye.
    if private.state().end(peer, None) {
        let text = texts::private_stopped(peer);
        private.shared.tell_account(account, Some(peer), &text);
    }
}

/// Our server session is over (logout, or the connection dropped, which
/// ends our sessions on the server too): ends every private session and
/// tells the user about each.
pub fn end_all(private: &Private, account: &str) {
    let peers = private.state().clear();
    for peer in peers {
        let text = texts::private_stopped(&peer);
        private.shared.tell_account(account, Some(&peer), &text);
    }
}

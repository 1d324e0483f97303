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
use crate::private::keys::Brokered;
use crate::private::state::{Caller, Expected, Private, PrivateOutcome};
use crate::texts;
use crate::upstream::{Note, ServerRequest};

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
/// the callee we wait for the caller with the key the server gave for it,
/// from `caller_ip` only. Either way the user is told once the connection
/// is up. Without the peer's key or a full-size token (an older server)
/// there is no session: it would not be secure.
pub fn ready(private: &Arc<Private>, ready: Ready) {
    let Ready {
        peer,
        token,
        peer_key,
        addr,
        caller_ip,
        expires_in,
    } = ready;
    let mut state = private.state();
    state.incoming.remove(&peer);
    state.outgoing.remove(&peer);
    let Some(brokered) = Brokered::from_server(peer_key.as_deref(), token.expose()) else {
        tracing::warn!("the server gave no usable key or token for {peer}; no private session");
        // Any older session with the peer is over too: the server now
        // pairs us anew.
        state.end(&peer, None);
        if let Some(waiter) = state.waiters.remove(&peer) {
            let _ = waiter.send(PrivateOutcome::Insecure);
        }
        drop(state);
        private.shared.note(Note::PrivateEnd(peer.clone()));
        private
            .shared
            .tell(Some(&peer), &texts::private_insecure(&peer));
        return;
    };
    match addr {
        Some(addr) => {
            let id = state.open(&peer, None);
            drop(state);
            private.spawn(dial::dial(Arc::clone(private), peer, id, addr, brokered));
        }
        None => {
            // The server bounds it to minutes; a hostile value must not
            // overflow the deadline.
            let expires_in = Duration::from_secs(expires_in.min(MAX_EXPIRES_IN));
            let expected = Expected {
                peer_key: brokered.peer_key,
                psk: brokered.psk,
                until: Instant::now() + expires_in,
                caller: Caller::parse(caller_ip.as_deref()),
            };
            state.open(&peer, Some(expected));
            drop(state);
            private.agreed.notify_waiters();
        }
    }
}

/// The server's `private_ready`, as the link hands it over.
pub struct Ready {
    pub peer: String,
    pub token: Secret,
    pub peer_key: Option<String>,
    pub addr: Option<String>,
    pub caller_ip: Option<String>,
    pub expires_in: u64,
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::inbox::Inbox;
    use crate::notifier::Notifier;
    use crate::state::Shared;
    use msg_local::config::Config;
    use tokio::sync::oneshot;

    fn private() -> Arc<Private> {
        let shared = Shared::new(
            Inbox::open_in_memory().unwrap(),
            Notifier::new(false),
            Config::default(),
        );
        shared.status().user = Some("hans".into());
        Private::new(Arc::new(shared)).unwrap()
    }

    /// A `private_ready` about luke, to the asker or the callee.
    fn announced(token: &str, peer_key: Option<&str>, asker: bool) -> Ready {
        Ready {
            peer: "luke".into(),
            token: token.into(),
            peer_key: peer_key.map(str::to_owned),
            addr: asker.then(|| "127.0.0.1:9".to_owned()),
            caller_ip: (!asker).then(|| "127.0.0.1".to_owned()),
            expires_in: 60,
        }
    }

    #[tokio::test]
    async fn no_session_without_the_peers_key_and_a_full_size_token() {
        let key = "ab".repeat(32);
        let old_token = "0f".repeat(16);
        let token = "0f".repeat(32);
        for (token, peer_key, asker) in [
            (&token, None, true),
            (&token, None, false),
            (&old_token, Some(key.as_str()), true),
            (&token, Some("not a key"), false),
        ] {
            let private = private();
            let (tx, rx) = oneshot::channel();
            private.state().waiters.insert("luke".into(), tx);
            ready(&private, announced(token, peer_key, asker));
            assert_eq!(rx.await.unwrap(), PrivateOutcome::Insecure);
            assert!(
                private.state().sessions.is_empty(),
                "nothing dialed or awaited"
            );
            let told = private.shared.inbox().list("hans", true).unwrap();
            assert_eq!(
                told.last().map(|i| i.text.as_str()),
                Some("Error. The server is too old to set up private messaging with luke securely")
            );
        }
    }

    #[tokio::test]
    async fn the_callee_waits_for_the_brokered_key() {
        let private = private();
        let key = "ab".repeat(32);
        ready(&private, announced(&"0f".repeat(32), Some(&key), false));
        let state = private.state();
        let expected = state.sessions["luke"].expected.as_ref().unwrap();
        assert_eq!(expected.peer_key, [0xab; 32]);
        assert_eq!(*expected.psk.expose(), [0x0f; 32]);
    }
}

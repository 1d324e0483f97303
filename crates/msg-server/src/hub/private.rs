//! Brokering of private sessions: a request, the callee's answer, the
//! one-time token, the address and each side's public key handed to the
//! other, and the end of a session. The content of private messages never
//! passes through here. Both clients must have advertised a key: there is
//! no private session without encryption.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use msg_proto::server::{PrivateEndReason, ServerFrame};
use msg_proto::{ErrorCode, Refusal, Secret};

use crate::cluster::events::Directed;
use crate::hub::Hub;
use crate::hub::state::State;
use crate::texts;

impl Hub {
    /// `asker` asks `callee` for a private session; `callee` is told (by
    /// its node, when it is on another one).
    pub async fn private_request(&self, asker: &str, callee: &str) -> Result<(), Refusal> {
        if !self.accounts.exists(callee) {
            return Err(Refusal::new(ErrorCode::InvalidUser, texts::INVALID_USER));
        }
        if callee == asker {
            return Err(Refusal::new(
                ErrorCode::CannotPrivateSelf,
                texts::CANNOT_PRIVATE_SELF,
            ));
        }
        let elsewhere = {
            let state = self.state();
            match state.sessions.contains_key(callee) {
                true => None,
                false => state.remote.get(callee).map(|remote| remote.node.clone()),
            }
        };
        match elsewhere {
            Some(node) => self.private_request_elsewhere(asker, callee, &node).await,
            None => self.private_request_here(asker, callee),
        }
    }

    /// A request to a user of this node.
    fn private_request_here(&self, asker: &str, callee: &str) -> Result<(), Refusal> {
        let mut state = self.state();
        self.check_callee(&state, asker, callee)?;
        if state
            .sessions
            .get(asker)
            .is_none_or(|s| s.peer_key.is_none())
        {
            return Err(Refusal::new(
                ErrorCode::PrivateUnavailable,
                texts::PRIVATE_YOURS_TOO_OLD,
            ));
        }
        self.ask_callee(&mut state, asker, callee)
    }

    /// The callee's side of a request (from this node or another): online
    /// here, not blocking the asker, reachable with a key.
    pub(super) fn check_callee(
        &self,
        state: &State,
        asker: &str,
        callee: &str,
    ) -> Result<(), Refusal> {
        let Some(session) = state.sessions.get(callee) else {
            return Err(Refusal::new(ErrorCode::UserOffline, texts::offline(callee)));
        };
        if state.has_blocked(callee, asker) {
            return Err(Refusal::new(
                ErrorCode::BlockedYou,
                texts::has_blocked_you(callee),
            ));
        }
        if session.peer_port.is_none() {
            return Err(Refusal::new(
                ErrorCode::PrivateUnavailable,
                texts::private_unavailable(callee),
            ));
        }
        if session.peer_key.is_none() {
            return Err(Refusal::new(
                ErrorCode::PrivateUnavailable,
                texts::private_too_old(callee),
            ));
        }
        Ok(())
    }

    /// Tells `callee` (checked, on this node) of `asker`'s request and
    /// records it, unless one is pending already: one request at a time,
    /// as a second would only race the first's answer.
    pub(super) fn ask_callee(
        &self,
        state: &mut State,
        asker: &str,
        callee: &str,
    ) -> Result<(), Refusal> {
        let now = Instant::now();
        let key = (asker.to_owned(), callee.to_owned());
        if state
            .private_requests
            .get(&key)
            .is_some_and(|expires| *expires > now)
        {
            return Err(Refusal::new(
                ErrorCode::PrivateRequestPending,
                texts::private_request_pending(callee),
            ));
        }
        state.push_to(
            callee,
            &ServerFrame::PrivateRequest {
                from: asker.to_owned(),
                at: self.now_ms(),
            },
        );
        state
            .private_requests
            .insert(key, now + self.config.private_timeout);
        Ok(())
    }

    /// `callee` accepts `asker`'s request: both get the same one-time token
    /// and the other's key; the asker also gets the address to dial.
    pub fn private_accept(&self, callee: &str, asker: &str) -> Result<(), Refusal> {
        let mut state = self.state();
        let key = (asker.to_owned(), callee.to_owned());
        let pending = state
            .private_requests
            .get(&key)
            .is_some_and(|expires| *expires > Instant::now());
        if !pending {
            return Err(Refusal::new(
                ErrorCode::NoPrivateRequest,
                texts::no_private_request(asker),
            ));
        }
        if !state.sessions.contains_key(asker) {
            if state.remote.contains_key(asker) && state.remote_asks.contains_key(&key) {
                drop(state);
                return self.accept_elsewhere(callee, asker);
            }
            state.private_requests.remove(&key);
            state.remote_asks.remove(&key);
            return Err(Refusal::new(ErrorCode::UserOffline, texts::offline(asker)));
        }
        let addr = state.sessions.get(callee).and_then(|s| {
            s.peer_port
                .map(|port| SocketAddr::new(canonical_ip(s.ip), port))
        });
        let Some(addr) = addr else {
            return Err(Refusal::new(
                ErrorCode::PrivateUnavailable,
                texts::private_unavailable(callee),
            ));
        };
        // Checked at the request; either side may have logged in again
        // since, with another client.
        let key_of = |user: &str| {
            state
                .sessions
                .get(user)
                .and_then(|s| s.peer_key.as_deref().map(str::to_owned))
        };
        let (Some(callee_key), Some(asker_key)) = (key_of(callee), key_of(asker)) else {
            let too_old = if key_of(callee).is_none() {
                texts::PRIVATE_YOURS_TOO_OLD.to_owned()
            } else {
                texts::private_too_old(asker)
            };
            return Err(Refusal::new(ErrorCode::PrivateUnavailable, too_old));
        };
        state.private_requests.remove(&key);
        let token = Secret(one_time_token());
        let expires_in = self.config.private_timeout.as_secs();
        state.push_to(
            asker,
            &ServerFrame::PrivateReady {
                peer: callee.to_owned(),
                token: token.clone(),
                peer_key: Some(callee_key),
                // `SocketAddr`'s own form: `1.2.3.4:5`, `[::1]:5`.
                addr: Some(addr.to_string()),
                caller_ip: None,
                expires_in,
            },
        );
        // The callee's daemon lets in only this address for the session.
        let caller_ip = state
            .sessions
            .get(asker)
            .map(|s| canonical_ip(s.ip).to_string());
        state.push_to(
            callee,
            &ServerFrame::PrivateReady {
                peer: asker.to_owned(),
                token,
                peer_key: Some(asker_key),
                addr: None,
                caller_ip,
                expires_in,
            },
        );
        state.private_pairs.insert(ordered_pair(asker, callee));
        Ok(())
    }

    pub fn private_decline(&self, callee: &str, asker: &str) -> Result<(), Refusal> {
        let mut state = self.state();
        if state
            .private_requests
            .remove(&(asker.to_owned(), callee.to_owned()))
            .is_none()
        {
            return Err(Refusal::new(
                ErrorCode::NoPrivateRequest,
                texts::no_private_request(asker),
            ));
        }
        state.push_to(
            asker,
            &ServerFrame::PrivateDeclined {
                peer: callee.to_owned(),
            },
        );
        if state
            .remote_asks
            .remove(&(asker.to_owned(), callee.to_owned()))
            .is_some()
        {
            state.tell_node_of(asker, || Directed::PrivateDeclined {
                asker: asker.to_owned(),
                callee: callee.to_owned(),
            });
        }
        Ok(())
    }

    /// `user` reports that its private session with `other` ended.
    pub fn private_end(&self, user: &str, other: &str) {
        let mut state = self.state();
        if state.private_pairs.remove(&ordered_pair(user, other)) {
            state.push_to(
                other,
                &ServerFrame::PrivateEnded {
                    peer: user.to_owned(),
                    reason: PrivateEndReason::Stopped,
                },
            );
            state.tell_node_of(other, || Directed::PrivateEnded {
                user: other.to_owned(),
                peer: user.to_owned(),
                reason: PrivateEndReason::Stopped,
            });
        }
    }

    /// Drops the requests nobody answered in time, telling both sides.
    pub(super) fn expire_private_requests(&self, state: &mut State, now: Instant) {
        let expired: Vec<(String, String)> = state
            .private_requests
            .iter()
            .filter(|(_, expires)| **expires <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for (asker, callee) in expired {
            state.drop_private_requests(&asker, &callee);
        }
    }
}

impl State {
    /// Ends the brokered private session between `a` and `b`, telling both.
    pub(super) fn end_private_pair(&mut self, a: &str, b: &str, reason: PrivateEndReason) {
        if self.private_pairs.remove(&ordered_pair(a, b)) {
            self.push_to(
                a,
                &ServerFrame::PrivateEnded {
                    peer: b.to_owned(),
                    reason,
                },
            );
            self.push_to(
                b,
                &ServerFrame::PrivateEnded {
                    peer: a.to_owned(),
                    reason,
                },
            );
            for (user, peer) in [(a, b), (b, a)] {
                self.tell_node_of(user, || Directed::PrivateEnded {
                    user: user.to_owned(),
                    peer: peer.to_owned(),
                    reason,
                });
            }
        }
    }

    /// Drops pending requests between `a` and `b` in either direction,
    /// telling both sides that they expired.
    pub(super) fn drop_private_requests(&mut self, a: &str, b: &str) {
        for (asker, callee) in [(a, b), (b, a)] {
            if self
                .private_requests
                .remove(&(asker.to_owned(), callee.to_owned()))
                .is_some()
            {
                self.push_to(
                    asker,
                    &ServerFrame::PrivateExpired {
                        peer: callee.to_owned(),
                    },
                );
                self.push_to(
                    callee,
                    &ServerFrame::PrivateExpired {
                        peer: asker.to_owned(),
                    },
                );
                self.remote_asks
                    .remove(&(asker.to_owned(), callee.to_owned()));
                for (user, peer) in [(asker, callee), (callee, asker)] {
                    self.tell_node_of(user, || Directed::PrivateExpired {
                        user: user.to_owned(),
                        peer: peer.to_owned(),
                    });
                }
            }
        }
    }
}

/// A pair in the order `private_pairs` keeps it, whoever asked.
pub(super) fn ordered_pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

/// IPv4 clients on a dual-stack socket show up as `::ffff:a.b.c.d`; peers
/// should dial the plain IPv4 address.
pub(super) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// 256 random bits, hex: unguessable, single-use proof of a brokered
/// session, and the pre-shared key of its Noise handshake (its 32 bytes).
pub(super) fn one_time_token() -> String {
    msg_proto::random_hex(msg_proto::peer::KEY_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_given_in_the_form_a_client_dials() {
        let v4: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(
            SocketAddr::new(canonical_ip(v4), 4848).to_string(),
            "192.0.2.7:4848"
        );
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(
            SocketAddr::new(canonical_ip(v6), 4848).to_string(),
            "[::1]:4848"
        );
    }
}

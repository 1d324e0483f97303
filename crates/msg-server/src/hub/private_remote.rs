//! Private sessions between users of different nodes (cluster mode). The
//! asker's node checks what it knows (blocks, the asker's key, a pending
//! request) and asks the callee's node, which checks the callee's session
//! and tells the callee, keeping the asker's key and address for the
//! answer. The callee's node then tells the asker's node what the asker
//! needs (the token, the callee's key and address), or that the request was
//! declined or expired; either node tells the other when a session ends.
//! Each node tells only its own users; the messages between nodes never go
//! back the way they came.

use std::net::SocketAddr;
use std::time::Instant;

use msg_proto::server::ServerFrame;
use msg_proto::{ErrorCode, Refusal, Secret};

use crate::cluster::events::{Directed, PrivateAnswer};
use crate::hub::Hub;
use crate::hub::private::{canonical_ip, one_time_token, ordered_pair};
use crate::hub::state::RemoteAsk;
use crate::texts;

impl Hub {
    /// `asker` here asks `callee` on `node`.
    pub(super) async fn private_request_elsewhere(
        &self,
        asker: &str,
        callee: &str,
        node: &str,
    ) -> Result<(), Refusal> {
        let Some(cluster) = self.cluster.clone() else {
            return Err(Refusal::new(ErrorCode::UserOffline, texts::offline(callee)));
        };
        let question = {
            let state = self.state();
            if state.has_blocked(callee, asker) {
                return Err(Refusal::new(
                    ErrorCode::BlockedYou,
                    texts::has_blocked_you(callee),
                ));
            }
            let Some((key, ip)) = state
                .sessions
                .get(asker)
                .and_then(|s| Some((s.peer_key.as_deref()?.to_owned(), canonical_ip(s.ip))))
            else {
                return Err(Refusal::new(
                    ErrorCode::PrivateUnavailable,
                    texts::PRIVATE_YOURS_TOO_OLD,
                ));
            };
            let pending = (asker.to_owned(), callee.to_owned());
            if state
                .private_requests
                .get(&pending)
                .is_some_and(|expires| *expires > Instant::now())
            {
                return Err(Refusal::new(
                    ErrorCode::PrivateRequestPending,
                    texts::private_request_pending(callee),
                ));
            }
            Directed::PrivateRequest {
                asker: asker.to_owned(),
                callee: callee.to_owned(),
                asker_key: key,
                asker_ip: ip.to_string(),
            }
        };
        // Recorded before asking: the callee may accept (and its node
        // tell this one) before the answer to the question arrives.
        let key = (asker.to_owned(), callee.to_owned());
        self.state()
            .private_requests
            .insert(key.clone(), Instant::now() + self.config.private_timeout);
        let answer = cluster
            .ask(node, &question)
            .await
            .ok()
            .and_then(|bytes| crate::cluster::events::decode::<PrivateAnswer>(&bytes));
        let refusal = match answer {
            Some(PrivateAnswer { refused: None }) => return Ok(()),
            Some(PrivateAnswer {
                refused: Some((code, text)),
            }) => Refusal::new(code, text),
            None => Refusal::new(ErrorCode::UserOffline, texts::offline(callee)),
        };
        self.state().private_requests.remove(&key);
        Err(refusal)
    }

    /// A request from `asker` on another node to `callee` here.
    pub fn private_request_from(
        &self,
        asker: &str,
        callee: &str,
        asker_key: String,
        asker_ip: String,
    ) -> PrivateAnswer {
        let mut state = self.state();
        let asked = self
            .check_callee(&state, asker, callee)
            .and_then(|()| self.ask_callee(&mut state, asker, callee));
        match asked {
            Ok(()) => {
                let key = (asker.to_owned(), callee.to_owned());
                state.remote_asks.insert(
                    key,
                    RemoteAsk {
                        key: asker_key,
                        ip: asker_ip,
                    },
                );
                PrivateAnswer { refused: None }
            }
            Err(refusal) => PrivateAnswer {
                refused: Some((refusal.code.into_owned(), refusal.message)),
            },
        }
    }

    /// `callee` here accepts the request of `asker` on another node.
    pub(super) fn accept_elsewhere(&self, callee: &str, asker: &str) -> Result<(), Refusal> {
        let mut state = self.state();
        let key = (asker.to_owned(), callee.to_owned());
        let Some(session) = state.sessions.get(callee) else {
            return Err(Refusal::new(ErrorCode::UserOffline, texts::offline(callee)));
        };
        let (Some(port), Some(callee_key)) = (session.peer_port, session.peer_key.clone()) else {
            return Err(Refusal::new(
                ErrorCode::PrivateUnavailable,
                texts::private_unavailable(callee),
            ));
        };
        let addr = SocketAddr::new(canonical_ip(session.ip), port);
        let Some(ask) = state.remote_asks.remove(&key) else {
            return Err(Refusal::new(
                ErrorCode::NoPrivateRequest,
                texts::no_private_request(asker),
            ));
        };
        state.private_requests.remove(&key);
        let token = one_time_token();
        let expires_in = self.config.private_timeout.as_secs();
        state.push_to(
            callee,
            &ServerFrame::PrivateReady {
                peer: asker.to_owned(),
                token: Secret(token.clone()),
                peer_key: Some(ask.key),
                addr: None,
                caller_ip: Some(ask.ip),
                expires_in,
            },
        );
        state.tell_node_of(asker, || Directed::PrivateReady {
            asker: asker.to_owned(),
            callee: callee.to_owned(),
            token,
            callee_key: callee_key.into(),
            addr: addr.to_string(),
            expires_in,
        });
        state.private_pairs.insert(ordered_pair(asker, callee));
        Ok(())
    }

    /// What another node says about a private session of a user here.
    pub fn heard_private(&self, told: Directed) {
        let mut state = self.state();
        match told {
            Directed::PrivateReady {
                asker,
                callee,
                token,
                callee_key,
                addr,
                expires_in,
            } => {
                let key = (asker.clone(), callee.clone());
                if state.private_requests.remove(&key).is_none() {
                    return;
                }
                state.push_to(
                    &asker,
                    &ServerFrame::PrivateReady {
                        peer: callee.clone(),
                        token: Secret(token),
                        peer_key: Some(callee_key),
                        addr: Some(addr),
                        caller_ip: None,
                        expires_in,
                    },
                );
                state.private_pairs.insert(ordered_pair(&asker, &callee));
            }
            Directed::PrivateDeclined { asker, callee } => {
                if state
                    .private_requests
                    .remove(&(asker.clone(), callee.clone()))
                    .is_some()
                {
                    state.push_to(&asker, &ServerFrame::PrivateDeclined { peer: callee });
                }
            }
            Directed::PrivateEnded { user, peer, reason } => {
                if state.private_pairs.remove(&ordered_pair(&user, &peer)) {
                    state.push_to(&user, &ServerFrame::PrivateEnded { peer, reason });
                }
            }
            Directed::PrivateExpired { user, peer } => {
                let mine = state
                    .private_requests
                    .remove(&(user.clone(), peer.clone()))
                    .is_some();
                let theirs = state
                    .private_requests
                    .remove(&(peer.clone(), user.clone()))
                    .is_some();
                state.remote_asks.remove(&(peer.clone(), user.clone()));
                if mine || theirs {
                    state.push_to(&user, &ServerFrame::PrivateExpired { peer });
                }
            }
            Directed::Deliver { .. }
            | Directed::Outcome { .. }
            | Directed::PrivateRequest { .. } => {}
        }
    }
}

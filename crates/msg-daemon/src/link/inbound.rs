//! What the server pushes (frames that answer no request), one function per
//! kind: a message, a broadcast or presence (each an [`Arrival`] for the
//! burst being stored, see `burst`), a logout by the server, and the
//! private-session events, which [`crate::private::events`] handles.

use msg_proto::control::{ItemKind, codes};
use msg_proto::server::{LogoutReason, PresenceEvent, ServerFrame};
use msg_proto::{ErrorCode, Refusal};

use crate::link::burst::Arrival;
use crate::link::{End, Link};
use crate::private::events;
use crate::texts;
use crate::upstream::ServerRequest;

/// What the connection must do after an event.
pub(super) enum Inbound {
    Nothing,
    /// Store this with the rest of the burst (then ack, for a message).
    Store(Arrival),
    /// Store these (a batch of presence notices).
    StoreAll(Vec<Arrival>),
    /// Ask the server this on the daemon's own account.
    Ask(ServerRequest),
    /// The session loop ends.
    End(End),
}

/// Whether `frame` is stored as part of a burst; any other event is handled
/// on its own, after the burst before it is stored, so the inbox keeps the
/// order in which things arrived.
pub(super) fn is_arrival(frame: &ServerFrame) -> bool {
    matches!(
        frame,
        ServerFrame::Message { .. }
            | ServerFrame::Broadcast { .. }
            | ServerFrame::Presence { .. }
            | ServerFrame::PresenceBatch { .. }
    )
}

/// A login or logout, as the inbox keeps it (one item each, as shown).
fn presence_arrival(event: PresenceEvent) -> Arrival {
    let PresenceEvent(user, online, at) = event;
    Arrival {
        msg_id: None,
        client_id: None,
        kind: ItemKind::Presence,
        text: texts::presence(&user, online),
        from: user,
        at,
        notify: false,
    }
}

impl Link {
    /// Handles one event for `account`.
    pub(super) fn inbound(&self, frame: ServerFrame, account: &str) -> Inbound {
        match frame {
            ServerFrame::Message {
                msg_id,
                from,
                text,
                at,
                client_id,
            } => Inbound::Store(Arrival {
                msg_id: Some(msg_id),
                client_id,
                kind: ItemKind::Message,
                from,
                text,
                at,
                notify: true,
            }),
            ServerFrame::Broadcast { from, text, at } => Inbound::Store(Arrival {
                msg_id: None,
                client_id: None,
                kind: ItemKind::Broadcast,
                from,
                text,
                at,
                notify: true,
            }),
            ServerFrame::Presence { user, online, at } => {
                Inbound::Store(presence_arrival(PresenceEvent(user, online, at)))
            }
            ServerFrame::PresenceBatch { events } => {
                Inbound::StoreAll(events.into_iter().map(presence_arrival).collect())
            }
            ServerFrame::LoggedOut { reason, message } => {
                Inbound::End(self.logged_out_by_server(account, reason, message))
            }
            ServerFrame::PrivateRequest { from, at } => {
                match events::requested(&self.private, account, from, at) {
                    Some(accept) => Inbound::Ask(accept),
                    None => Inbound::Nothing,
                }
            }
            ServerFrame::PrivateReady {
                peer,
                token,
                peer_key,
                addr,
                caller_ip,
                expires_in,
            } => {
                let ready = events::Ready {
                    peer,
                    token,
                    peer_key,
                    addr,
                    caller_ip,
                    expires_in,
                };
                events::ready(&self.private, ready);
                Inbound::Nothing
            }
            ServerFrame::PrivateDeclined { peer } => {
                events::declined(&self.private, account, &peer);
                Inbound::Nothing
            }
            ServerFrame::PrivateExpired { peer } => {
                events::expired(&self.private, account, &peer);
                Inbound::Nothing
            }
            ServerFrame::PrivateEnded { peer, .. } => {
                events::ended(&self.private, account, &peer);
                Inbound::Nothing
            }
            ServerFrame::Pong | ServerFrame::Hello { .. } => Inbound::Nothing,
            ServerFrame::Error { code, message, .. } => {
                tracing::warn!("server error without request: {code}: {message}");
                Inbound::Nothing
            }
            other => {
                tracing::debug!("ignoring {other:?}");
                Inbound::Nothing
            }
        }
    }

    /// The server ended our session: for good, or (a restart, an overflow)
    /// only this connection.
    fn logged_out_by_server(&self, account: &str, reason: LogoutReason, message: String) -> End {
        self.shared.tell_account(account, None, &message);
        match reason {
            // A restarting or overloaded server did not end the session on purpose.
            LogoutReason::Shutdown | LogoutReason::SlowConsumer => End::Lost,
            LogoutReason::Timeout => {
                self.shared.notifier.notify("msg", &message);
                self.shared.status().ended = Some(Refusal::new(codes::TIMEOUT, message));
                End::Over
            }
            LogoutReason::Revoked => {
                // This device's token is no good any more either.
                let server = self.shared.status().server.clone();
                if let (Some(tokens), Some(server)) = (&self.tokens, server) {
                    tokens.delete(&server, account);
                }
                let ended = Refusal::new(ErrorCode::BadToken, texts::TOKEN_REVOKED);
                self.shared.status().ended = Some(ended);
                End::Over
            }
            LogoutReason::Requested | LogoutReason::Unknown => {
                self.shared.status().ended = Some(Refusal::new(codes::NOT_LOGGED_IN, message));
                End::Over
            }
        }
    }
}

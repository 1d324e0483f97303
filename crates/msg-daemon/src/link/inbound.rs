//! What the server pushes (frames that answer no request), one function per
//! kind: a message (stored, then acked), a broadcast, presence, a logout by
//! the server, and the private-session events, which
//! [`crate::private::events`] handles.

use msg_proto::control::{ItemKind, codes};
use msg_proto::server::{LogoutReason, ServerFrame};
use msg_proto::{MsgId, Refusal, Timestamp};

use crate::inbox::NewItem;
use crate::link::{End, Link};
use crate::private::events;
use crate::texts;
use crate::upstream::ServerRequest;

/// What the connection must do after an event.
pub(super) enum Inbound {
    Nothing,
    /// Tell the server the message is stored.
    Ack(MsgId),
    /// Ask the server this on the daemon's own account.
    Ask(ServerRequest),
    /// The session loop ends.
    End(End),
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
            } => self.message(account, msg_id, &from, &text, at, client_id.as_deref()),
            ServerFrame::Broadcast { from, text, at } => self.broadcast(account, &from, &text, at),
            ServerFrame::Presence { user, online, at } => self.presence(account, &user, online, at),
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
                addr,
                caller_ip,
                expires_in,
            } => {
                events::ready(&self.private, peer, token, addr, caller_ip, expires_in);
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

    fn message(
        &self,
        account: &str,
        msg_id: MsgId,
        from: &str,
        text: &str,
        at: Timestamp,
        client_id: Option<&str>,
    ) -> Inbound {
        let item = NewItem {
            msg_id: Some(msg_id),
            client_id,
            kind: ItemKind::Message,
            from: Some(from),
            text,
            at,
        };
        match self.shared.record(account, &item) {
            Ok(stored) => {
                if stored.is_some() {
                    self.shared.notifier.notify(from, text);
                }
                // Only now, with the message on disk, may the server forget it.
                Inbound::Ack(msg_id)
            }
            Err(e) => {
                // Unacked, the server keeps it and delivers it again later.
                tracing::error!("{e}; message left unacknowledged");
                Inbound::Nothing
            }
        }
    }

    fn broadcast(&self, account: &str, from: &str, text: &str, at: Timestamp) -> Inbound {
        let item = NewItem {
            msg_id: None,
            client_id: None,
            kind: ItemKind::Broadcast,
            from: Some(from),
            text,
            at,
        };
        if self.shared.store(account, &item) {
            self.shared.notifier.notify(from, text);
        }
        Inbound::Nothing
    }

    fn presence(&self, account: &str, user: &str, online: bool, at: Timestamp) -> Inbound {
        let text = texts::presence(user, online);
        let item = NewItem {
            msg_id: None,
            client_id: None,
            kind: ItemKind::Presence,
            from: Some(user),
            text: &text,
            at,
        };
        self.shared.store(account, &item);
        Inbound::Nothing
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
            LogoutReason::Requested | LogoutReason::Unknown => {
                self.shared.status().ended = Some(Refusal::new(codes::NOT_LOGGED_IN, message));
                End::Over
            }
        }
    }
}

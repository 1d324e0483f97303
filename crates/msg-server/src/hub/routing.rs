//! Routing of direct messages and broadcasts: a message goes to its
//! recipient's queue and waits there for the ack that answers its sender;
//! or, for an offline recipient, one that does not acknowledge in time or
//! one whose session ends first, to the store, which answers the sender once
//! it is durable. Broadcasts are fire-and-forget.

use std::collections::HashMap;
use std::time::Instant;

use msg_proto::server::{SendRequest, ServerFrame};
use msg_proto::{ErrorCode, MsgId, Refusal, Timestamp};

use crate::cluster::events::Event;
use crate::hub::answer::Outcome;
use crate::hub::state::{Inflight, Reply, Session, State};
use crate::hub::{Hub, store_failed};
use crate::outbox::{Push, ReplySlot};
use crate::store::StoredMessage;
use crate::texts;

/// Takes the live messages held for a draining session out of memory, in
/// order, for the store; the drain then reads on (`spilled`).
pub(super) fn take_held(
    session: &mut Session,
    inflight: &mut HashMap<MsgId, Inflight>,
) -> Vec<Inflight> {
    let Some(held) = session.held.as_mut() else {
        return Vec::new();
    };
    held.spilled = true;
    held.bytes = 0;
    let lines = std::mem::take(&mut held.lines);
    let mut unacked = Vec::with_capacity(lines.len() + 1);
    for (id, _) in lines {
        session.remove_inflight(&id);
        unacked.extend(inflight.remove(&id));
    }
    unacked
}

impl Hub {
    /// In a cluster: this node and the lease epoch of `user`'s session
    /// here, which fence the deletes its acks make.
    fn fence(&self, user: &str) -> Option<(String, i64)> {
        let cluster = self.cluster.as_ref()?;
        let epoch = cluster.leases.session_epoch(user)?;
        Some((cluster.node_id.clone(), epoch))
    }
}

/// How many ack timeouts a node waits for the answer about a message it
/// handed to the recipient's node before storing it itself (an answer
/// lost on the way; a dead node's are stored as soon as it is seen dead).
const ELSEWHERE_PATIENCE: u32 = 2;

/// A refused `send`, with the reply slot handed back for the error reply.
pub type ReplyRefusal = (Refusal, ReplySlot);

/// What became of a message offered to its recipient.
enum Delivery {
    /// Held until the recipient's offline queue has gone out; the ack
    /// timeout starts when it is released.
    HeldBehindDrain,
    /// In the recipient's queue since this instant, which starts the ack
    /// timeout.
    QueuedAt(Instant),
    /// Not queued: the recipient is offline, or its queue is full or closed
    /// (it is being disconnected), so the message goes to the store.
    NotQueued,
}

impl Hub {
    /// Routes a direct message. The reply (`sent` or an error) reaches
    /// `slot` later: when the recipient acknowledges it, or once it is
    /// stored for an offline recipient. The request's strings become the
    /// stored message's without a copy.
    pub fn send(
        &self,
        from: &str,
        request: SendRequest,
        slot: ReplySlot,
    ) -> Result<(), ReplyRefusal> {
        let SendRequest {
            id,
            to,
            text,
            client_id,
        } = request;
        if to == from {
            let refusal = Refusal::new(ErrorCode::CannotMessageSelf, texts::CANNOT_MESSAGE_SELF);
            return Err((refusal, slot));
        }
        if !self.accounts.exists(&to) {
            return Err((
                Refusal::new(ErrorCode::InvalidUser, texts::INVALID_USER),
                slot,
            ));
        }
        let mut state = self.state();
        if state.has_blocked(&to, from) {
            let refusal = Refusal::new(ErrorCode::BlockedByRecipient, texts::BLOCKED_BY_RECIPIENT);
            return Err((refusal, slot));
        }
        let msg = StoredMessage {
            seq: 0,
            id: self.next_msg_id(),
            recipient: to,
            sender: from.to_owned(),
            text,
            at: self.now_ms(),
            client_id,
        };
        let state = &mut *state;
        let reply = Reply::Local(slot, id);
        if !state.sessions.contains_key(msg.recipient.as_str())
            && let Some(node) = state.remote.get(&msg.recipient).map(|r| r.node.clone())
        {
            self.forward(state, msg, reply, node);
        } else {
            self.offer(state, msg, Some(reply));
        }
        Ok(())
    }

    /// Offers a message to its recipient's session here: queued (or held
    /// behind the offline queue's delivery) until acknowledged, or stored
    /// if the recipient is not here or cannot take it.
    pub(super) fn offer(&self, state: &mut State, msg: StoredMessage, reply: Option<Reply>) {
        let delivery = match state.sessions.get_mut(msg.recipient.as_str()) {
            None => Delivery::NotQueued,
            Some(session) => {
                let encoded = msg_proto::encode_line(&ServerFrame::Message {
                    msg_id: msg.id,
                    from: msg.sender.clone(),
                    text: msg.text.clone(),
                    at: msg.at,
                    client_id: msg.client_id.clone(),
                });
                let Ok(line) = encoded else {
                    if let Some(reply) = reply {
                        self.answer(reply, msg.id, Outcome::Failed);
                    }
                    return;
                };
                // Half the connection's budget: what is held is released
                // on top of what the drain has queued.
                let budget = self.config.connection_budget / 2;
                let capacity = self.config.outbox_capacity / 2;
                let delivery = match &mut session.held {
                    Some(held)
                        if held.spilled
                            || held.bytes + line.len() > budget
                            || held.lines.len() >= capacity =>
                    {
                        // Past the bound: this one and those held before
                        // it go to the store, in order.
                        let mut unacked = take_held(session, &mut state.inflight);
                        unacked.push(Inflight {
                            msg,
                            reply,
                            since: None,
                            elsewhere: false,
                        });
                        self.store_unacked(unacked);
                        return;
                    }
                    Some(held) => {
                        held.bytes += line.len();
                        held.lines.push((msg.id, line));
                        Delivery::HeldBehindDrain
                    }
                    None => match session.push(line) {
                        Push::Queued => Delivery::QueuedAt(Instant::now()),
                        Push::Full | Push::Closed => Delivery::NotQueued,
                    },
                };
                if !matches!(delivery, Delivery::NotQueued) {
                    session.add_inflight(msg.id);
                }
                delivery
            }
        };
        let since = match delivery {
            Delivery::HeldBehindDrain => None,
            Delivery::QueuedAt(at) => Some(at),
            Delivery::NotQueued => {
                self.store_unacked(vec![Inflight {
                    msg,
                    reply,
                    since: None,
                    elsewhere: false,
                }]);
                return;
            }
        };
        let inflight = Inflight {
            msg,
            reply,
            since,
            elsewhere: false,
        };
        state.inflight.insert(inflight.msg.id, inflight);
    }

    /// `user` has stored message `id`.
    pub fn ack(&self, user: &str, id: MsgId) {
        let mut state = self.state();
        let owned = state
            .inflight
            .get(&id)
            .is_some_and(|inflight| inflight.msg.recipient == user);
        if owned {
            if let Some(session) = state.sessions.get_mut(user) {
                session.remove_inflight(&id);
            }
            if let Some(Inflight {
                reply: Some(reply), ..
            }) = state.inflight.remove(&id)
            {
                if matches!(reply, Reply::Node(_)) {
                    // Its origin may have stored it meanwhile (it heard
                    // nothing for long): forgotten there too.
                    self.store.delete_fenced(user, id, self.fence(user));
                }
                self.answer(reply, id, Outcome::Delivered);
            }
        } else {
            // A message delivered from the store, or stored after its ack
            // timeout (a late ack): only now may it be forgotten.
            self.store.delete_fenced(user, id, self.fence(user));
        }
    }

    /// Sends to every online user but the sender and those who block the
    /// sender. Returns whether anyone was skipped for a block.
    pub fn broadcast(&self, from: &str, text: String) -> bool {
        let at = self.now_ms();
        let mut skipped = false;
        if let Some(cluster) = &self.cluster {
            let state = self.state();
            skipped = state
                .remote
                .keys()
                .any(|name| name != from && state.has_blocked(name, from));
            cluster.events.publish(Event::Broadcast {
                from: from.to_owned(),
                text: text.clone(),
                at,
                node: cluster.node_id.clone(),
            });
        }
        self.broadcast_here(from, text, at) || skipped
    }

    /// Sends a broadcast to every user on this node but the sender and
    /// those who block the sender. Returns whether anyone was skipped.
    pub(super) fn broadcast_here(&self, from: &str, text: String, at: Timestamp) -> bool {
        let Ok(line) = msg_proto::encode_line(&ServerFrame::Broadcast {
            from: from.to_owned(),
            text,
            at,
        }) else {
            return false;
        };
        let state = self.state();
        let mut skipped = false;
        for (name, session) in &state.sessions {
            if &**name == from {
                continue;
            }
            if state.has_blocked(name, from) {
                skipped = true;
                continue;
            }
            session.push(line.clone());
        }
        skipped
    }

    /// Writes messages that were forwarded but not acknowledged to the store
    /// and answers their senders once they are durable, or refuses them if
    /// the recipient's queue is full (then nothing is stored).
    pub(super) fn store_unacked(&self, unacked: Vec<Inflight>) {
        if unacked.is_empty() {
            return;
        }
        let mut replies = Vec::with_capacity(unacked.len());
        let mut messages = Vec::with_capacity(unacked.len());
        // In a cluster, the recipients may be online on another node
        // (unknown here yet, or their node did not answer): it is told.
        let mut stored_for = Vec::new();
        for inflight in unacked {
            if let Some(reply) = inflight.reply {
                replies.push((reply, inflight.msg.id, inflight.msg.recipient.clone()));
            }
            if self.cluster.is_some() {
                stored_for.push((inflight.msg.id, inflight.msg.recipient.clone()));
            }
            messages.push(inflight.msg);
        }
        let answers = self.answers();
        self.store.enqueue(
            messages,
            Box::new(move |result| {
                if let Ok(full) = &result {
                    answers.mail_stored(
                        stored_for
                            .iter()
                            .filter(|(id, _)| !full.contains(id))
                            .map(|(_, user)| user.as_str()),
                    );
                }
                for (reply, msg_id, recipient) in replies {
                    let outcome = match &result {
                        Ok(full) if full.contains(&msg_id) => Outcome::QueueFull { recipient },
                        Ok(_) => Outcome::Queued,
                        Err(e) => {
                            store_failed(e);
                            Outcome::Failed
                        }
                    };
                    answers.answer(reply, msg_id, outcome);
                }
            }),
        );
    }

    /// Stores the messages whose recipient did not acknowledge them within
    /// the ack timeout, and answers their senders (`queued: true`).
    pub(super) fn store_overdue(&self, state: &mut State, now: Instant) {
        let ack_timeout = self.config.ack_timeout;
        let overdue: Vec<MsgId> = state
            .inflight
            .iter()
            .filter(|(_, f)| {
                // A message handed to another node waits for that node's
                // answer, which comes after its own ack timeout.
                let patience = if f.elsewhere {
                    ack_timeout * ELSEWHERE_PATIENCE
                } else {
                    ack_timeout
                };
                f.since.is_some_and(|t| now.duration_since(t) >= patience)
            })
            .map(|(id, _)| *id)
            .collect();
        let mut unacked = Vec::with_capacity(overdue.len());
        for id in overdue {
            if let Some(inflight) = state.inflight.remove(&id) {
                if let Some(session) = state.sessions.get_mut(inflight.msg.recipient.as_str()) {
                    session.remove_inflight(&id);
                }
                unacked.push(inflight);
            }
        }
        self.store_unacked(unacked);
    }
}

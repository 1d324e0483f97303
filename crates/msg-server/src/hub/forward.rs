//! Direct messages between users of different nodes (cluster mode). The
//! sender's node checks the blocks (the lists are the service's), gives the
//! message its id and hands it to the recipient's node, which offers it to
//! the recipient as one of its own: queued until acknowledged, stored in
//! the shared queue if the recipient is gone or slow. The recipient's node
//! answers with the outcome, which the sender's node passes to the sender.
//! If no answer comes (that node died), the sender's node stores the
//! message itself after a few ack timeouts; a message the recipient did
//! store meanwhile then comes again at the next login, with the same id,
//! which clients keep only once.

use std::time::Instant;

use msg_proto::{MsgId, Timestamp};

use crate::cluster::events::{Directed, Outcome};
use crate::hub::Hub;
use crate::hub::state::{Inflight, Reply, State};
use crate::store::StoredMessage;

/// A direct message as one node hands it to another.
pub struct Handed {
    pub msg_id: MsgId,
    pub recipient: String,
    pub sender: String,
    pub text: String,
    pub at: Timestamp,
    pub client_id: Option<String>,
    pub origin: String,
}

impl Hub {
    /// Hands `msg` to `node`, where its recipient is online, and waits for
    /// that node's answer.
    pub(super) fn forward(
        &self,
        state: &mut State,
        msg: StoredMessage,
        reply: Reply,
        node: Box<str>,
    ) {
        let Some(cluster) = &self.cluster else {
            return self.offer(state, msg, Some(reply));
        };
        cluster.events.tell(
            &node,
            Directed::Deliver {
                msg_id: msg.id,
                recipient: msg.recipient.clone(),
                sender: msg.sender.clone(),
                text: msg.text.clone(),
                at: msg.at,
                client_id: msg.client_id.clone(),
                origin: cluster.node_id.clone(),
            },
        );
        let inflight = Inflight {
            msg,
            reply: Some(reply),
            since: Some(Instant::now()),
            elsewhere: true,
        };
        state.inflight.insert(inflight.msg.id, inflight);
    }

    /// A message from another node for a user here (or stored, if the user
    /// is not here any more).
    pub fn deliver_handed(&self, handed: Handed) {
        let Handed {
            msg_id,
            recipient,
            sender,
            text,
            at,
            client_id,
            origin,
        } = handed;
        let msg = StoredMessage {
            seq: 0,
            id: msg_id,
            recipient,
            sender,
            text,
            at,
            client_id,
        };
        let mut state = self.state();
        let reply = Reply::Node(origin.into());
        // The recipient's own node knows the recipient's latest block.
        if state.has_blocked(&msg.recipient, &msg.sender) {
            return self.answer(reply, msg.id, Outcome::Blocked);
        }
        self.offer(&mut state, msg, Some(reply));
    }

    /// What became of a message this node handed on.
    pub fn handed_outcome(&self, msg_id: MsgId, outcome: Outcome) {
        let mut state = self.state();
        if !state
            .inflight
            .get(&msg_id)
            .is_some_and(|inflight| inflight.elsewhere)
        {
            // Stored here already after a long silence, or not ours.
            return;
        }
        if let Some(Inflight {
            reply: Some(reply), ..
        }) = state.inflight.remove(&msg_id)
        {
            self.answer(reply, msg_id, outcome);
        }
    }
}

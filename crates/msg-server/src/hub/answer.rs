//! The outcome of a direct message, told to whoever waits for it: the
//! sender's reply slot when the sender is here, else (cluster mode) the
//! sender's node.

use std::sync::Arc;

use msg_proto::server::ServerFrame;
use msg_proto::{ErrorCode, MsgId, Refusal, RequestId};

use crate::cluster::Cluster;
use crate::cluster::events::Directed;
pub use crate::cluster::events::Outcome;
use crate::hub::Hub;
use crate::hub::state::Reply;
use crate::texts;

/// Tells outcomes; cheap to clone into a store job's completion.
#[derive(Clone)]
pub(super) struct Answers {
    cluster: Option<Arc<Cluster>>,
}

impl Answers {
    pub fn answer(&self, reply: Reply, msg_id: MsgId, outcome: Outcome) {
        match reply {
            Reply::Local(slot, id) => slot.fill(&frame_for(id, msg_id, outcome)),
            Reply::Node(node) => {
                if let Some(cluster) = &self.cluster {
                    cluster
                        .events
                        .tell(&node, Directed::Outcome { msg_id, outcome });
                }
            }
        }
    }

    /// Tells the other nodes that messages for these users were stored
    /// (cluster mode; see [`crate::cluster::events::Event::Mail`]).
    pub fn mail_stored<'a>(&self, recipients: impl IntoIterator<Item = &'a str>) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let mut told = std::collections::HashSet::new();
        for user in recipients {
            if told.insert(user) {
                cluster.events.publish(crate::cluster::events::Event::Mail {
                    user: user.to_owned(),
                    node: cluster.node_id.clone(),
                });
            }
        }
    }
}

/// The sender's reply for an outcome.
pub(super) fn frame_for(id: RequestId, msg_id: MsgId, outcome: Outcome) -> ServerFrame {
    match outcome {
        Outcome::Delivered => ServerFrame::Sent {
            id,
            msg_id,
            queued: false,
        },
        Outcome::Queued => ServerFrame::Sent {
            id,
            msg_id,
            queued: true,
        },
        Outcome::QueueFull { recipient } => ServerFrame::refusal(
            Some(id),
            Refusal::new(ErrorCode::RecipientQueueFull, texts::queue_full(&recipient)),
        ),
        Outcome::Failed => ServerFrame::refusal(
            Some(id),
            Refusal::new(ErrorCode::Internal, texts::STORE_FAILED),
        ),
        Outcome::Blocked => ServerFrame::refusal(
            Some(id),
            Refusal::new(ErrorCode::BlockedByRecipient, texts::BLOCKED_BY_RECIPIENT),
        ),
    }
}

impl Hub {
    pub(super) fn answers(&self) -> Answers {
        Answers {
            cluster: self.cluster.clone(),
        }
    }

    pub(super) fn answer(&self, reply: Reply, msg_id: MsgId, outcome: Outcome) {
        self.answers().answer(reply, msg_id, outcome);
    }
}

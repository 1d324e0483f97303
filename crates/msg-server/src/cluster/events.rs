//! What the nodes tell each other over NATS: logins and logouts, and block
//! changes. Every subject begins with the service's id, so services sharing
//! one NATS server never hear each other.
//!
//! NATS delivers at most once: a node that missed events (it was
//! disconnected, or fell behind) reads the truth again from the database
//! ([`Cluster::online_elsewhere`]). Events are published in order through
//! one bounded queue and one task, so one node's events arrive in order.

use msg_proto::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::cluster::lease::Epoch;
use crate::cluster::{Cluster, ClusterError};

/// Events waiting to be handed to NATS at most; past it an event is
/// dropped (and logged): the other nodes learn the truth from the database
/// at their next look.
pub const PUBLISH_QUEUE: usize = 65_536;

/// Events received and not yet applied that NATS keeps for this node at
/// most; past it, it reports a slow consumer and this node resyncs.
pub const RECEIVE_QUEUE: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// `user` logged in (`online`) or out on `node`, under lease `epoch`.
    Presence {
        user: String,
        online: bool,
        at: Timestamp,
        node: String,
        epoch: Epoch,
    },
    /// `blocker` blocked (or unblocked) `blocked`.
    Block {
        blocker: String,
        blocked: String,
        blocking: bool,
    },
}

/// The subject every node publishes its events to and listens on.
pub fn subject(service: &str) -> String {
    format!("msg.{service}.events")
}

/// The sending half: a bounded queue in front of the NATS client.
pub struct Publisher {
    queue: mpsc::Sender<Event>,
}

impl Publisher {
    /// Queues an event for the other nodes; never waits (it is called under
    /// the hub's lock).
    pub fn publish(&self, event: Event) {
        if let Err(e) = self.queue.try_send(event) {
            tracing::warn!(error = %e, "an event for the other nodes was dropped");
        }
    }
}

/// Starts the task that hands queued events to NATS in order.
pub(super) fn start_publisher(nats: async_nats::Client, service: &str) -> Publisher {
    let (queue, mut events) = mpsc::channel::<Event>(PUBLISH_QUEUE);
    let subject = subject(service);
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let payload = match serde_json::to_vec(&event) {
                Ok(bytes) => bytes,
                Err(_) => continue,
            };
            if let Err(e) = nats.publish(subject.clone(), payload.into()).await {
                tracing::warn!(error = %e, "cannot publish an event to the other nodes");
            }
        }
    });
    Publisher { queue }
}

impl Cluster {
    /// Listens to the nodes' events (this node's own included: it skips
    /// them). [`Cluster::resync`] is notified whenever events may have
    /// been missed.
    pub async fn listen(&self) -> Result<async_nats::Subscriber, ClusterError> {
        self.nats
            .subscribe(subject(&self.service))
            .await
            .map_err(|e| ClusterError::Nats {
                url: self.nats_url.clone(),
                error: e.to_string(),
            })
    }
}

/// Decodes one NATS message; `None` for anything that is not an event
/// (another program on the subject, a newer node's kind of event).
pub fn decode(payload: &[u8]) -> Option<Event> {
    serde_json::from_slice(payload).ok()
}

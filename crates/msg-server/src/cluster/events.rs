//! What the nodes tell each other over NATS: to all, logins and logouts,
//! block changes and broadcasts ([`Event`]); to one node, the direct
//! messages for its users and the outcomes of the messages it handed on
//! ([`Directed`]). Every subject begins with the service's id, so services
//! sharing one NATS server never hear each other.
//!
//! NATS delivers at most once: a node that missed events (it was
//! disconnected, or fell behind) reads the truth again from the database
//! ([`Cluster::online_elsewhere`]). Events are published in order through
//! one bounded queue and one task, so one node's events arrive in order.

use msg_proto::server::PrivateEndReason;
use msg_proto::{MsgId, Timestamp};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use crate::cluster::lease::Epoch;
use crate::cluster::{Cluster, ClusterError};

/// Events waiting to be handed to NATS at most, by count and by bytes (a
/// broadcast carries up to a frame's 64 KiB of text); past either, an event
/// is dropped (and logged): the other nodes learn the truth from the
/// database at their next look, and a message handed on that is never
/// answered is stored by its sender's node.
pub const PUBLISH_QUEUE: usize = 65_536;
pub const PUBLISH_QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// How long a node waits for another's answer.
const ASK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

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
    /// `blocker` blocked (or unblocked) `blocked`, on `node`.
    Block {
        blocker: String,
        blocked: String,
        blocking: bool,
        node: String,
    },
    /// `user`'s device tokens were revoked (`msg-server passwd` or
    /// `revoke` with `--store`): the node holding the user's session ends
    /// it.
    Revoked { user: String },
    /// Messages for `user` were stored by `node`, which believed the user
    /// offline (it had missed a login, or the user's node did not answer
    /// in time): the node holding the user's session reads the offline
    /// queue again.
    Mail { user: String, node: String },
    /// A broadcast from a user of `node`, for everyone online elsewhere.
    Broadcast {
        from: String,
        text: String,
        at: Timestamp,
        node: String,
    },
}

/// What one node tells another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Directed {
    /// A direct message for a user of the receiving node, from a user of
    /// `origin`, which waits for its [`Directed::Outcome`].
    Deliver {
        msg_id: MsgId,
        recipient: String,
        sender: String,
        text: String,
        at: Timestamp,
        client_id: Option<String>,
        origin: String,
    },
    /// What became of a message handed on.
    Outcome { msg_id: MsgId, outcome: Outcome },
    /// `asker` here asks `callee` there for a private session (a request
    /// answered with a [`PrivateAnswer`]).
    PrivateRequest {
        asker: String,
        callee: String,
        asker_key: String,
        asker_ip: String,
    },
    /// `callee` accepted `asker`'s request: what `asker` needs to dial.
    PrivateReady {
        asker: String,
        callee: String,
        token: String,
        callee_key: String,
        addr: String,
        expires_in: u64,
    },
    /// `callee` declined `asker`'s request.
    PrivateDeclined { asker: String, callee: String },
    /// `user`'s private session with `peer` ended.
    PrivateEnded {
        user: String,
        peer: String,
        reason: PrivateEndReason,
    },
    /// The request between `user` and `peer` (either way) expired.
    PrivateExpired { user: String, peer: String },
}

/// The callee's node's answer to a [`Directed::PrivateRequest`]: `None`
/// when the callee was asked, else why not (the refusal's code and text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateAnswer {
    pub refused: Option<(String, String)>,
}

/// What became of a direct message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The recipient acknowledged it.
    Delivered,
    /// It is stored for the recipient's next login.
    Queued,
    /// The recipient's queue is full: not stored.
    QueueFull { recipient: String },
    /// It could not be stored.
    Failed,
    /// The recipient blocks the sender (a block the sender's node had not
    /// heard of yet).
    Blocked,
}

/// The subject every node publishes its events to and listens on.
pub fn subject(service: &str) -> String {
    format!("msg.{service}.events")
}

/// The subject of what is meant for one node.
pub fn node_subject(service: &str, node: &str) -> String {
    format!("msg.{service}.node.{node}")
}

/// The sending half: a bounded queue in front of the NATS client.
pub struct Publisher {
    queue: mpsc::Sender<(String, Vec<u8>)>,
    /// Payload bytes in the queue.
    queued_bytes: Arc<AtomicUsize>,
    service: String,
}

impl Publisher {
    /// Queues an event for the other nodes; never waits (it is called under
    /// the hub's lock).
    pub fn publish(&self, event: Event) {
        self.send(subject(&self.service), &event);
    }

    /// Queues a message for node `node`; never waits.
    pub fn tell(&self, node: &str, message: Directed) {
        self.send(node_subject(&self.service, node), &message);
    }

    fn send(&self, subject: String, what: &impl Serialize) {
        let Ok(payload) = serde_json::to_vec(what) else {
            return;
        };
        let size = payload.len();
        if self.queued_bytes.fetch_add(size, Ordering::AcqRel) + size > PUBLISH_QUEUE_BYTES {
            self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            tracing::warn!("a message for the other nodes was dropped: too many bytes wait");
            return;
        }
        if let Err(e) = self.queue.try_send((subject, payload)) {
            self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            tracing::warn!(error = %e, "a message for the other nodes was dropped");
        }
    }
}

/// Starts the task that hands queued messages to NATS in order.
pub(super) fn start_publisher(nats: async_nats::Client, service: &str) -> Publisher {
    let (queue, mut outgoing) = mpsc::channel::<(String, Vec<u8>)>(PUBLISH_QUEUE);
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let taken = queued_bytes.clone();
    tokio::spawn(async move {
        while let Some((subject, payload)) = outgoing.recv().await {
            taken.fetch_sub(payload.len(), Ordering::AcqRel);
            if let Err(e) = nats.publish(subject, payload.into()).await {
                tracing::warn!(error = %e, "cannot publish to the other nodes");
            }
        }
    });
    Publisher {
        queue,
        queued_bytes,
        service: service.to_owned(),
    }
}

impl Cluster {
    /// Listens to the nodes' events (this node's own included: it skips
    /// them). [`Cluster::resync`] is notified whenever events may have
    /// been missed.
    pub async fn listen(&self) -> Result<async_nats::Subscriber, ClusterError> {
        self.subscribe(subject(&self.service)).await
    }

    /// Listens to what other nodes tell this one.
    pub async fn listen_directed(&self) -> Result<async_nats::Subscriber, ClusterError> {
        self.subscribe(node_subject(&self.service, &self.node_id))
            .await
    }

    /// Asks node `node` and waits (a bounded time) for its answer.
    pub async fn ask(&self, node: &str, question: &Directed) -> Result<bytes::Bytes, ClusterError> {
        let failed = |error: String| ClusterError::Nats {
            url: self.nats_url.clone(),
            error,
        };
        let payload = serde_json::to_vec(question).map_err(|e| failed(e.to_string()))?;
        let subject = node_subject(&self.service, node);
        match tokio::time::timeout(ASK_WAIT, self.nats.request(subject, payload.into())).await {
            Ok(Ok(message)) => Ok(message.payload),
            Ok(Err(e)) => Err(failed(e.to_string())),
            Err(_) => Err(failed("no answer in time".into())),
        }
    }

    /// Answers a question asked with [`Cluster::ask`].
    pub fn answer_to(&self, reply: async_nats::Subject, answer: &impl Serialize) {
        if let Ok(payload) = serde_json::to_vec(answer) {
            let nats = self.nats.clone();
            tokio::spawn(async move {
                let _ = nats.publish(reply, payload.into()).await;
            });
        }
    }

    async fn subscribe(&self, subject: String) -> Result<async_nats::Subscriber, ClusterError> {
        self.nats
            .subscribe(subject)
            .await
            .map_err(|e| ClusterError::Nats {
                url: self.nats_url.clone(),
                error: e.to_string(),
            })
    }
}

/// Tells every node of the service in the database at `pool` that
/// `user`'s devices were revoked (for the admin commands, which are not
/// nodes).
pub async fn tell_revoked(
    pool: &deadpool_postgres::Pool,
    nats_url: &str,
    user: &str,
) -> Result<(), ClusterError> {
    let failed = |error: String| ClusterError::Nats {
        url: super::describe_nats(nats_url),
        error,
    };
    let service: String = pool
        .get()
        .await?
        .query_one("SELECT id FROM service", &[])
        .await?
        .get(0);
    let nats = async_nats::ConnectOptions::new()
        .connection_timeout(ASK_WAIT)
        .connect(nats_url)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let event = Event::Revoked {
        user: user.to_owned(),
    };
    let payload = serde_json::to_vec(&event).map_err(|e| failed(e.to_string()))?;
    nats.publish(subject(&service), payload.into())
        .await
        .map_err(|e| failed(e.to_string()))?;
    nats.flush().await.map_err(|e| failed(e.to_string()))
}

/// Decodes one NATS message; `None` for anything that does not decode
/// (another program on the subject, a newer node's kind of message).
pub fn decode<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Option<T> {
    serde_json::from_slice(payload).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publish_queue_is_bounded_by_bytes_as_well_as_by_count() {
        let (queue, mut outgoing) = mpsc::channel(PUBLISH_QUEUE);
        let publisher = Publisher {
            queue,
            queued_bytes: Arc::default(),
            service: "s".into(),
        };
        // Broadcasts of a frame's worth of text, far more bytes than allowed.
        let text = "x".repeat(60 * 1024);
        for _ in 0..PUBLISH_QUEUE_BYTES / text.len() + 16 {
            publisher.publish(Event::Broadcast {
                from: "hans".into(),
                text: text.clone(),
                at: 1,
                node: "n".into(),
            });
        }
        let mut bytes = 0;
        while let Ok((_, payload)) = outgoing.try_recv() {
            bytes += payload.len();
        }
        assert!(bytes <= PUBLISH_QUEUE_BYTES, "{bytes} bytes queued");
        assert!(
            bytes > PUBLISH_QUEUE_BYTES - 2 * text.len(),
            "only {bytes} bytes queued"
        );
    }
}

//! Per-recipient quotas of the offline queue, kept by the store thread: it
//! alone writes the queue, so its counts are exact. What a transaction adds
//! and removes is counted aside and merged only once it commits.

use std::collections::HashMap;

use rusqlite::Connection;

use crate::store::StoredMessage;

/// How much may wait in one recipient's offline queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    pub max_messages: u64,
    /// Bytes of text, sender name and client id.
    pub max_bytes: u64,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_messages: 10_000,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What one recipient's queue holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Usage {
    pub messages: i64,
    pub bytes: i64,
}

/// The size a message counts against its recipient's byte quota.
pub(super) fn size_of(message: &StoredMessage) -> i64 {
    let client_id = message.client_id.as_ref().map_or(0, String::len);
    (message.text.len() + message.sender.len() + client_id) as i64
}

/// Committed usage per recipient (only recipients with something queued).
pub(super) struct Quota {
    limits: QueueLimits,
    usage: HashMap<String, Usage>,
}

/// Changes made by the transaction under way.
#[derive(Default)]
pub(super) struct Pending {
    changes: HashMap<String, Usage>,
}

impl Quota {
    /// Reads the usage from the queue's index (its table pages are not
    /// read, so a damaged one does not stop the server from starting).
    pub fn load(conn: &Connection, limits: QueueLimits) -> Self {
        let mut usage = HashMap::new();
        let read = conn
            .prepare(
                "SELECT recipient, COUNT(*), SUM(size) FROM queue
                 INDEXED BY queue_by_recipient_seq GROUP BY recipient",
            )
            .and_then(|mut stmt| {
                let rows = stmt.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        Usage {
                            messages: r.get(1)?,
                            bytes: r.get(2)?,
                        },
                    ))
                })?;
                for row in rows {
                    let (recipient, used) = row?;
                    usage.insert(recipient, used);
                }
                Ok(())
            });
        if let Err(e) = read {
            tracing::error!(error = %e, "cannot count the offline queues; quotas start from zero");
        }
        Self { limits, usage }
    }

    /// Whether `message` fits in its recipient's quota, counting what the
    /// transaction under way already added; if so, counts it there.
    pub fn admit(&self, pending: &mut Pending, message: &StoredMessage) -> bool {
        let committed = self
            .usage
            .get(&message.recipient)
            .copied()
            .unwrap_or_default();
        let change = pending.changes.get(&message.recipient).copied();
        let change = change.unwrap_or_default();
        let size = size_of(message);
        let fits = committed.messages + change.messages < self.limits.max_messages as i64
            && committed.bytes + change.bytes + size <= self.limits.max_bytes as i64;
        if fits {
            pending.add(&message.recipient, 1, size);
        }
        fits
    }

    /// The transaction committed: its changes count from now on.
    pub fn commit(&mut self, pending: Pending) {
        for (recipient, change) in pending.changes {
            let mut used = self.usage.get(&recipient).copied().unwrap_or_default();
            used.messages += change.messages;
            used.bytes += change.bytes;
            if used.messages > 0 {
                self.usage.insert(recipient, used);
            } else {
                self.usage.remove(&recipient);
            }
        }
    }
}

impl Pending {
    pub fn add(&mut self, recipient: &str, messages: i64, bytes: i64) {
        match self.changes.get_mut(recipient) {
            Some(change) => {
                change.messages += messages;
                change.bytes += bytes;
            }
            None => {
                self.changes
                    .insert(recipient.to_owned(), Usage { messages, bytes });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use msg_proto::MsgId;

    fn message(to: &str, text: &str) -> StoredMessage {
        StoredMessage {
            seq: 0,
            id: MsgId::new(1, 1),
            recipient: to.into(),
            sender: "hans".into(),
            text: text.into(),
            at: 0,
            client_id: None,
        }
    }

    #[test]
    fn quotas_count_messages_and_bytes_per_recipient_after_commit() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE queue (seq INTEGER PRIMARY KEY, recipient TEXT, size INTEGER);
             CREATE INDEX queue_by_recipient_seq ON queue (recipient, seq, size);
             INSERT INTO queue VALUES (1, 'luke', 10);",
        )
        .unwrap();
        let limits = QueueLimits {
            max_messages: 2,
            max_bytes: 30,
        };
        let mut quota = Quota::load(&conn, limits);
        let mut pending = Pending::default();
        assert!(quota.admit(&mut pending, &message("luke", "x")));
        assert!(!quota.admit(&mut pending, &message("luke", "x")), "two");
        assert!(!quota.admit(&mut pending, &message("yoda", &"x".repeat(27))));
        assert!(quota.admit(&mut pending, &message("yoda", &"x".repeat(26))));
        quota.commit(pending);
        let mut pending = Pending::default();
        assert!(!quota.admit(&mut pending, &message("luke", "x")));
        // Acknowledged: room again, and an empty queue is forgotten.
        pending.add("luke", -2, -15);
        quota.commit(pending);
        assert!(!quota.usage.contains_key("luke"));
        // A rolled-back transaction changes nothing.
        let mut pending = Pending::default();
        assert!(quota.admit(&mut pending, &message("luke", "x")));
        drop(pending);
        assert!(!quota.usage.contains_key("luke"));
    }
}

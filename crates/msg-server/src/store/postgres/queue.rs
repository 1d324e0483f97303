//! The queue's statements on PostgreSQL, prepared once per connection:
//! storing a message within its recipient's quota, reading a page, and
//! deleting an acknowledged message under the acking session's fence.

use msg_proto::msg_id::MSG_ID_LEN;
use msg_proto::{MsgId, Timestamp};
use tokio_postgres::{Client, GenericClient, Statement, Transaction};

use crate::store::StoredMessage;
use crate::store::quota::{QueueLimits, size_of};

/// The statements of the hot paths (the rest are rare: device tokens).
pub(super) struct Statements {
    select_pending: Statement,
    admit: Statement,
    insert: Statement,
    uncount: Statement,
    delete_fenced: Statement,
}

impl Statements {
    pub(super) async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            select_pending: client
                .prepare(
                    "SELECT seq, id, sender, text, at, client_id FROM queue
                     WHERE recipient = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                )
                .await?,
            // The usage row's lock orders this recipient's enqueues.
            admit: client
                .prepare(
                    "INSERT INTO queue_usage AS u (recipient, messages, bytes) VALUES ($1, 1, $2)
                     ON CONFLICT (recipient) DO UPDATE
                         SET messages = u.messages + 1, bytes = u.bytes + $2
                         WHERE u.messages + 1 <= $3 AND u.bytes + $2 <= $4
                     RETURNING 1",
                )
                .await?,
            insert: client
                .prepare(
                    "INSERT INTO queue (id, recipient, sender, text, at, client_id, size)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
                )
                .await?,
            uncount: client
                .prepare(
                    "UPDATE queue_usage SET messages = messages - 1, bytes = bytes - $2
                     WHERE recipient = $1",
                )
                .await?,
            delete_fenced: client
                .prepare(
                    "DELETE FROM queue WHERE id = $1 AND recipient = $2
                         AND EXISTS (SELECT 1 FROM leases
                                     WHERE name = $2 AND node = $3 AND epoch = $4)
                     RETURNING size",
                )
                .await?,
        })
    }
}

/// Stores one message unless its recipient's queue is full (`false`).
/// A message already stored (the same id) is not stored twice.
pub(super) async fn insert_message(
    tx: &Transaction<'_>,
    statements: &Statements,
    limits: &QueueLimits,
    m: &StoredMessage,
) -> Result<bool, tokio_postgres::Error> {
    let size = size_of(m);
    let (max_messages, max_bytes) = (
        limits.max_messages.min(i64::MAX as u64) as i64,
        limits.max_bytes.min(i64::MAX as u64) as i64,
    );
    if size > max_bytes {
        return Ok(false);
    }
    let admitted = tx
        .query_opt(
            &statements.admit,
            &[&m.recipient, &size, &max_messages, &max_bytes],
        )
        .await?
        .is_some();
    if !admitted {
        return Ok(false);
    }
    let inserted = tx
        .execute(
            &statements.insert,
            &[
                &m.id.encode(&mut [0; MSG_ID_LEN]).to_owned(),
                &m.recipient,
                &m.sender,
                &m.text.as_bytes(),
                &(m.at as i64),
                &m.client_id,
                &size,
            ],
        )
        .await?;
    if inserted == 0 {
        // Already stored: counted once.
        tx.execute(&statements.uncount, &[&m.recipient, &size])
            .await?;
    }
    Ok(true)
}

/// Forgets an acknowledged message if the acknowledging session's lease
/// (node and epoch) is still the recipient's latest: a node whose lease
/// another node has taken since cannot make a message vanish. (A lease run
/// out but not taken still fences: the ack came from its session.)
pub(super) async fn delete_message(
    tx: &Transaction<'_>,
    statements: &Statements,
    recipient: &str,
    id: MsgId,
    fence: Option<&(String, i64)>,
) -> Result<(), tokio_postgres::Error> {
    let Some((node, epoch)) = fence else {
        tracing::debug!("an ack without the recipient's lease is not applied");
        return Ok(());
    };
    let deleted = tx
        .query_opt(
            &statements.delete_fenced,
            &[
                &id.encode(&mut [0; MSG_ID_LEN]).to_owned(),
                &recipient,
                node,
                epoch,
            ],
        )
        .await?;
    if let Some(row) = deleted {
        let size: i64 = row.get(0);
        tx.execute(&statements.uncount, &[&recipient, &size])
            .await?;
    }
    Ok(())
}

pub(super) async fn select_pending(
    client: &impl GenericClient,
    statements: &Statements,
    recipient: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<StoredMessage>, tokio_postgres::Error> {
    let rows = client
        .query(
            &statements.select_pending,
            &[
                &recipient,
                &(after.min(i64::MAX as u64) as i64),
                &(limit as i64),
            ],
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            // A row whose id does not parse was not written by msg: skipped.
            let id = row.get::<_, &str>(1).parse::<MsgId>().ok()?;
            let text = String::from_utf8(row.get::<_, Vec<u8>>(3)).ok()?;
            Some(StoredMessage {
                seq: row.get::<_, i64>(0) as u64,
                id,
                recipient: recipient.to_owned(),
                sender: row.get(2),
                text,
                at: row.get::<_, i64>(4).max(0) as Timestamp,
                client_id: row.get(5),
            })
        })
        .collect())
}

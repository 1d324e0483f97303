//! The store on a cluster's PostgreSQL: the same jobs as the SQLite thread
//! ([`super::thread`]), applied in submission order by a thread of its own
//! over one connection, each batch in one transaction (one commit for the
//! lot), reported after the commit.
//!
//! What differs from SQLite: the quotas are counted in the database
//! (`queue_usage`, whose row lock also orders one recipient's enqueues
//! across nodes), and an acknowledged message is deleted only by the node
//! that holds the recipient's lease at the epoch it was given (fencing): a
//! node that lost the lease cannot make a message vanish. Blocks, presence
//! and lockouts have tables of their own in cluster mode
//! ([`crate::cluster`]); their jobs are not sent here.

use std::sync::mpsc;
use std::time::Duration;

use msg_proto::msg_id::MSG_ID_LEN;
use msg_proto::{MsgId, Timestamp};
use tokio_postgres::{Client, NoTls, Transaction};

use crate::store::devices::{Device, DeviceAnswer, DeviceOp, MAX_DEVICES_PER_USER};
use crate::store::quota::{QueueLimits, size_of};
use crate::store::{Job, StoreError, StoredMessage};

/// Most jobs applied in one transaction.
const MAX_BATCH: usize = 4096;
/// Passes over one batch before the rest runs one job per transaction.
const MAX_PASSES: usize = 4;
/// Wait between two attempts to reach the database.
const RECONNECT_WAIT: Duration = Duration::from_millis(500);

/// What the thread needs.
pub(super) struct Writer {
    pub url: String,
    pub limits: QueueLimits,
}

fn db_error(e: tokio_postgres::Error) -> StoreError {
    let text = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    };
    StoreError::Postgres(text)
}

/// The thread: connect, then batch, apply in one transaction, commit,
/// report; a lost connection is opened again before the next batch.
pub(super) fn run(writer: Writer, jobs: mpsc::Receiver<Job>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "the store thread cannot start");
            return;
        }
    };
    let mut client: Option<Client> = None;
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        runtime.block_on(async {
            if client.as_ref().is_none_or(Client::is_closed) {
                client = connect(&writer.url).await;
            }
            match client.as_mut() {
                Some(client) => writer.apply_batch(client, batch).await,
                None => {
                    for job in batch {
                        super::thread::report(job, Err(StoreError::Postgres("unreachable".into())));
                    }
                }
            }
        });
    }
}

async fn connect(url: &str) -> Option<Client> {
    for attempt in 0..3 {
        match tokio_postgres::connect(url, NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::warn!(error = %e, "the store's database connection ended");
                    }
                });
                return Some(client);
            }
            Err(e) => {
                tracing::warn!(error = %db_error(e), attempt, "cannot reach the store's database");
                tokio::time::sleep(RECONNECT_WAIT).await;
            }
        }
    }
    None
}

impl Writer {
    async fn apply_batch(&self, client: &mut Client, batch: Vec<Job>) {
        let mut jobs: Vec<Option<Job>> = batch.into_iter().map(Some).collect();
        for _ in 0..MAX_PASSES {
            let mut refused = Vec::new();
            match self.pass(client, &mut jobs, &mut refused).await {
                Ok(()) => {
                    for (index, job) in jobs.into_iter().enumerate() {
                        if let Some(job) = job {
                            let mine = refused
                                .iter()
                                .filter(|(i, _)| *i == index)
                                .map(|(_, id)| *id)
                                .collect();
                            super::thread::report(job, Ok(mine));
                        }
                    }
                    return;
                }
                Err(PassError::Job(index, e)) => {
                    if let Some(job) = jobs[index].take() {
                        tracing::error!(error = %e, job = job.name(), "a store job failed");
                        super::thread::report(job, Err(e));
                    }
                }
                Err(PassError::Commit(e)) => {
                    tracing::error!(error = %e, "store commit failed");
                    let text = e.to_string();
                    for job in jobs.into_iter().flatten() {
                        super::thread::report(job, Err(StoreError::Commit(text.clone())));
                    }
                    return;
                }
            }
        }
        for slot in &mut jobs {
            if let Some(job) = slot.take() {
                let mut alone = [Some(job)];
                let mut refused = Vec::new();
                let result = self.pass(client, &mut alone, &mut refused).await;
                if let [Some(job)] = alone {
                    match result {
                        Ok(()) => super::thread::report(
                            job,
                            Ok(refused.into_iter().map(|(_, id)| id).collect()),
                        ),
                        Err(PassError::Job(_, e) | PassError::Commit(e)) => {
                            super::thread::report(job, Err(e))
                        }
                    }
                }
            }
        }
    }

    /// Applies the jobs left in `jobs` in one transaction and commits.
    /// Reads are answered at once and leave the batch.
    async fn pass(
        &self,
        client: &mut Client,
        jobs: &mut [Option<Job>],
        refused: &mut Vec<(usize, MsgId)>,
    ) -> Result<(), PassError> {
        let tx = client
            .transaction()
            .await
            .map_err(|e| PassError::Commit(db_error(e)))?;
        for (index, slot) in jobs.iter_mut().enumerate() {
            let failed = |e| PassError::Job(index, db_error(e));
            match slot {
                None => {}
                Some(Job::PendingAfter {
                    recipient,
                    after,
                    limit,
                    ..
                }) => {
                    let page = select_pending(&tx, recipient, *after, *limit)
                        .await
                        .map_err(failed)?;
                    if let Some(Job::PendingAfter { done, .. }) = slot.take() {
                        let _ = done.send(Ok(page));
                    }
                }
                Some(Job::QueueLen { .. }) => {
                    let count: i64 = tx
                        .query_one("SELECT count(*) FROM queue", &[])
                        .await
                        .map_err(failed)?
                        .get(0);
                    if let Some(Job::QueueLen { done }) = slot.take() {
                        let _ = done.send(Ok(count as u64));
                    }
                }
                Some(Job::Enqueue { messages, .. }) => {
                    for m in messages.iter() {
                        if !self.insert_message(&tx, m).await.map_err(failed)? {
                            refused.push((index, m.id));
                        }
                    }
                }
                Some(Job::Delete {
                    recipient,
                    id,
                    fence,
                }) => {
                    delete_message(&tx, recipient, *id, fence.as_ref())
                        .await
                        .map_err(failed)?;
                }
                Some(Job::Devices { op, answer, .. }) => {
                    *answer = Some(apply_device_op(&tx, op).await.map_err(failed)?);
                }
                // Kept in tables of their own in cluster mode, or nothing
                // to do here.
                Some(
                    Job::SetBlock { .. }
                    | Job::Presence { .. }
                    | Job::Lockout { .. }
                    | Job::Vacuum { .. }
                    | Job::Barrier { .. },
                ) => {}
            }
        }
        tx.commit()
            .await
            .map_err(|e| PassError::Commit(db_error(e)))
    }

    /// Stores one message unless its recipient's queue is full (`false`).
    /// A message already stored (the same id) is not stored twice.
    async fn insert_message(
        &self,
        tx: &Transaction<'_>,
        m: &StoredMessage,
    ) -> Result<bool, tokio_postgres::Error> {
        let size = size_of(m);
        let (max_messages, max_bytes) = (
            self.limits.max_messages.min(i64::MAX as u64) as i64,
            self.limits.max_bytes.min(i64::MAX as u64) as i64,
        );
        if size > max_bytes {
            return Ok(false);
        }
        // The usage row's lock orders this recipient's enqueues.
        let admitted = tx
            .query_opt(
                "INSERT INTO queue_usage AS u (recipient, messages, bytes) VALUES ($1, 1, $2)
                 ON CONFLICT (recipient) DO UPDATE
                     SET messages = u.messages + 1, bytes = u.bytes + $2
                     WHERE u.messages + 1 <= $3 AND u.bytes + $2 <= $4
                 RETURNING 1",
                &[&m.recipient, &size, &max_messages, &max_bytes],
            )
            .await?
            .is_some();
        if !admitted {
            return Ok(false);
        }
        let inserted = tx
            .execute(
                "INSERT INTO queue (id, recipient, sender, text, at, client_id, size)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
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
            tx.execute(
                "UPDATE queue_usage SET messages = messages - 1, bytes = bytes - $2
                 WHERE recipient = $1",
                &[&m.recipient, &size],
            )
            .await?;
        }
        Ok(true)
    }
}

/// Forgets an acknowledged message if the acknowledging session's lease
/// (node and epoch) is still the recipient's latest: a node whose lease
/// another node has taken since cannot make a message vanish. (A lease run
/// out but not taken still fences: the ack came from its session.)
async fn delete_message(
    tx: &Transaction<'_>,
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
            "DELETE FROM queue WHERE id = $1 AND recipient = $2
                 AND EXISTS (SELECT 1 FROM leases WHERE name = $2 AND node = $3 AND epoch = $4)
             RETURNING size",
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
        tx.execute(
            "UPDATE queue_usage SET messages = messages - 1, bytes = bytes - $2
             WHERE recipient = $1",
            &[&recipient, &size],
        )
        .await?;
    }
    Ok(())
}

/// A pass that did not commit.
enum PassError {
    Job(usize, StoreError),
    Commit(StoreError),
}

async fn select_pending(
    tx: &Transaction<'_>,
    recipient: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<StoredMessage>, tokio_postgres::Error> {
    let rows = tx
        .query(
            "SELECT seq, id, sender, text, at, client_id FROM queue
             WHERE recipient = $1 AND seq > $2 ORDER BY seq LIMIT $3",
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

async fn apply_device_op(
    tx: &Transaction<'_>,
    op: &DeviceOp,
) -> Result<DeviceAnswer, tokio_postgres::Error> {
    Ok(match op {
        DeviceOp::Add {
            user,
            hash,
            label,
            at,
        } => {
            tx.execute(
                "INSERT INTO devices (hash, name, label, created_at, last_used)
                 VALUES ($1, $2, $3, $4, $4)
                 ON CONFLICT (hash) DO UPDATE SET name = $2, label = $3,
                     created_at = $4, last_used = $4",
                &[&&hash[..], user, label, &(*at as i64)],
            )
            .await?;
            tx.execute(
                "DELETE FROM devices WHERE name = $1 AND hash NOT IN (
                     SELECT hash FROM devices WHERE name = $1
                     ORDER BY last_used DESC LIMIT $2)",
                &[user, &MAX_DEVICES_PER_USER],
            )
            .await?;
            DeviceAnswer::Done
        }
        DeviceOp::Use { user, hash, at } => {
            let found = tx
                .execute(
                    "UPDATE devices SET last_used = $3 WHERE hash = $1 AND name = $2",
                    &[&&hash[..], user, &(*at as i64)],
                )
                .await?;
            DeviceAnswer::Found(found == 1)
        }
        DeviceOp::Revoke { user, hash } => {
            let n = tx
                .execute(
                    "DELETE FROM devices WHERE hash = $1 AND name = $2",
                    &[&&hash[..], user],
                )
                .await?;
            DeviceAnswer::Revoked(n)
        }
        DeviceOp::RevokeAll { user } => {
            let n = tx
                .execute("DELETE FROM devices WHERE name = $1", &[user])
                .await?;
            DeviceAnswer::Revoked(n)
        }
        DeviceOp::List { user } => {
            let rows = tx
                .query(
                    "SELECT label, created_at, last_used FROM devices
                     WHERE name = $1 ORDER BY last_used DESC",
                    &[user],
                )
                .await?;
            DeviceAnswer::List(
                rows.into_iter()
                    .map(|row| Device {
                        label: row.get(0),
                        created_at: row.get::<_, i64>(1).max(0) as Timestamp,
                        last_used: row.get::<_, i64>(2).max(0) as Timestamp,
                    })
                    .collect(),
            )
        }
    })
}

//! The store on a cluster's PostgreSQL: the same jobs as the SQLite thread
//! ([`super::thread`]), applied in submission order by a thread of its own
//! over one connection, each batch in one transaction (one commit for the
//! lot), reported after the commit. Its statements are prepared once per
//! connection, and reads next to each other in a batch are sent together
//! (pipelined): a login storm's first pages cost one round trip per run of
//! reads, not two per read; reads before a batch's first write need no
//! transaction at all.
//!
//! What differs from SQLite: the quotas are counted in the database
//! (`queue_usage`, whose row lock also orders one recipient's enqueues
//! across nodes), and an acknowledged message is deleted only by the node
//! that holds the recipient's lease at the epoch it was given (fencing): a
//! node that lost the lease cannot make a message vanish. Blocks, presence
//! and lockouts have tables of their own in cluster mode
//! ([`crate::cluster`]); their jobs are not sent here.

use std::time::Duration;

mod devices;
mod queue;

use msg_proto::MsgId;
use tokio_postgres::{Client, GenericClient, NoTls};

use crate::store::quota::QueueLimits;
use crate::store::{Job, Jobs, StoreError, StoredMessage};
use devices::apply_device_op;
use queue::{Statements, delete_message, insert_message, select_pending};

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
pub(super) fn run(writer: Writer, jobs: Jobs) {
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
    let mut client: Option<Conn> = None;
    while let Some(batch) = jobs.next_batch(MAX_BATCH) {
        runtime.block_on(async {
            if client.as_ref().is_none_or(|conn| conn.client.is_closed()) {
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

/// The store's connection and its prepared statements.
struct Conn {
    client: Client,
    statements: Statements,
}

async fn connect(url: &str) -> Option<Conn> {
    for attempt in 0..3 {
        let opened = async {
            let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "the store's database connection ended");
                }
            });
            let statements = Statements::prepare(&client).await?;
            Ok::<_, tokio_postgres::Error>(Conn { client, statements })
        };
        match opened.await {
            Ok(conn) => return Some(conn),
            Err(e) => {
                tracing::warn!(error = %db_error(e), attempt, "cannot reach the store's database");
                tokio::time::sleep(RECONNECT_WAIT).await;
            }
        }
    }
    None
}

impl Writer {
    async fn apply_batch(&self, client: &mut Conn, batch: Vec<Job>) {
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
    /// Reads are answered at once and leave the batch; those before the
    /// first write run outside the transaction.
    async fn pass(
        &self,
        conn: &mut Conn,
        jobs: &mut [Option<Job>],
        refused: &mut Vec<(usize, MsgId)>,
    ) -> Result<(), PassError> {
        let Conn { client, statements } = conn;
        let first_write = jobs
            .iter()
            .position(|slot| slot.as_ref().is_some_and(writes))
            .unwrap_or(jobs.len());
        let (reads, rest) = jobs.split_at_mut(first_write);
        answer_reads(&*client, statements, reads, 0).await?;
        if rest.is_empty() {
            return Ok(());
        }
        let tx = client
            .transaction()
            .await
            .map_err(|e| PassError::Commit(db_error(e)))?;
        let mut index = 0;
        while index < rest.len() {
            let at = first_write + index;
            let failed = |e| PassError::Job(at, db_error(e));
            let slot = &mut rest[index];
            match slot {
                Some(job) if !writes(job) => {
                    let run = rest[index..]
                        .iter()
                        .position(|slot| slot.as_ref().is_some_and(writes))
                        .unwrap_or(rest.len() - index);
                    answer_reads(&tx, statements, &mut rest[index..index + run], at).await?;
                    index += run;
                    continue;
                }
                None => {}
                Some(Job::Enqueue { messages, .. }) => {
                    for m in messages.iter() {
                        if !insert_message(&tx, statements, &self.limits, m)
                            .await
                            .map_err(failed)?
                        {
                            refused.push((at, m.id));
                        }
                    }
                }
                Some(Job::Delete {
                    recipient,
                    id,
                    fence,
                }) => {
                    delete_message(&tx, statements, recipient, *id, fence.as_ref())
                        .await
                        .map_err(failed)?;
                }
                Some(Job::Devices { op, answer, .. }) => {
                    *answer = Some(apply_device_op(&tx, op).await.map_err(failed)?);
                }
                Some(_) => {}
            }
            index += 1;
        }
        tx.commit()
            .await
            .map_err(|e| PassError::Commit(db_error(e)))
    }
}

/// A pass that did not commit.
enum PassError {
    Job(usize, StoreError),
    Commit(StoreError),
}

/// Whether a job changes the database (the others are reads, or have
/// nothing to do here).
fn writes(job: &Job) -> bool {
    matches!(
        job,
        Job::Enqueue { .. } | Job::Delete { .. } | Job::Devices { .. }
    )
}

/// Answers the reads among `slots` (those at `offset` in the batch), sent
/// together; each answered read leaves its slot. The first failure is
/// returned, after the others are answered.
async fn answer_reads(
    client: &impl GenericClient,
    statements: &Statements,
    slots: &mut [Option<Job>],
    offset: usize,
) -> Result<(), PassError> {
    enum Read {
        Page(Vec<StoredMessage>),
        Count(u64),
    }
    let reads = slots.iter().map(|slot| async move {
        match slot {
            Some(Job::PendingAfter {
                recipient,
                after,
                limit,
                ..
            }) => Some(
                select_pending(client, statements, recipient, *after, *limit)
                    .await
                    .map(Read::Page),
            ),
            Some(Job::QueueLen { .. }) => Some(
                client
                    .query_one("SELECT count(*) FROM queue", &[])
                    .await
                    .map(|row| Read::Count(row.get::<_, i64>(0) as u64)),
            ),
            _ => None,
        }
    });
    let results = futures::future::join_all(reads).await;
    let mut first_failure = None;
    for (index, result) in results.into_iter().enumerate() {
        match result {
            None => {}
            Some(Err(e)) => {
                first_failure.get_or_insert(PassError::Job(offset + index, db_error(e)));
            }
            Some(Ok(read)) => match (slots[index].take(), read) {
                (Some(Job::PendingAfter { done, .. }), Read::Page(page)) => {
                    let _ = done.send(Ok(page));
                }
                (Some(Job::QueueLen { done }), Read::Count(count)) => {
                    let _ = done.send(Ok(count));
                }
                _ => {}
            },
        }
    }
    first_failure.map_or(Ok(()), Err)
}

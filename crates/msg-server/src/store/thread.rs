//! The store thread: takes every job waiting in the channel, applies them in
//! one transaction, commits (one fsync for the lot), then reports to each.
//! A job that fails (a damaged page, say) fails alone. Enqueues are checked
//! against the recipient's quota here, where the queue's size is known.

use msg_proto::msg_id::MSG_ID_LEN;
use msg_proto::{MsgId, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

use crate::store::devices;
use crate::store::quota::{Pending, Quota, size_of};
use crate::store::{Job, Jobs, StoreError, StoredMessage};

/// Most jobs applied in one transaction; bounds the latency of the first.
pub(super) const MAX_BATCH: usize = 4096;
/// Passes over one batch before the rest of it runs one job per
/// transaction: each failing job costs a pass over the others.
const MAX_PASSES: usize = 4;

/// The database and what the thread keeps beside it.
pub(super) struct Writer {
    pub conn: Connection,
    pub quota: Quota,
}

/// The store thread: batch, apply in one transaction, commit, then report.
pub(super) fn run(mut writer: Writer, jobs: Jobs) {
    while let Some(batch) = jobs.next_batch(MAX_BATCH) {
        writer.apply_batch(batch);
    }
}

/// A pass that did not commit.
enum PassError {
    /// Job `index` failed; the transaction was rolled back.
    Job(usize, rusqlite::Error),
    /// The transaction could not begin or commit.
    Commit(rusqlite::Error),
}

/// What a pass did besides its writes: quota changes to apply once it
/// commits, and the messages it refused for a full queue (by job).
#[derive(Default)]
struct PassEffects {
    quota: Pending,
    refused: Vec<(usize, MsgId)>,
}

impl Writer {
    /// Applies a batch in one transaction, so its jobs share one commit
    /// (one fsync). A job that fails fails alone: SQLite fails every later
    /// write of a transaction in which it met a damaged page, and its
    /// commit too (a savepoint rolled back to does not help), so the
    /// transaction is rolled back and the batch applied again without it.
    pub(super) fn apply_batch(&mut self, batch: Vec<Job>) {
        let mut jobs: Vec<Option<Job>> = batch.into_iter().map(Some).collect();
        for _ in 0..MAX_PASSES {
            let mut effects = PassEffects::default();
            match self.pass(&mut jobs, &mut effects) {
                Ok(()) => {
                    self.quota.commit(effects.quota);
                    for (index, job) in jobs.into_iter().enumerate() {
                        if let Some(job) = job {
                            report(job, Ok(refused_by(&effects.refused, index)));
                        }
                    }
                    return;
                }
                Err(PassError::Job(index, e)) => {
                    self.rollback();
                    if let Some(job) = jobs[index].take() {
                        tracing::error!(error = %e, job = job.name(), "a store job failed");
                        report(job, Err(e.into()));
                    }
                }
                Err(PassError::Commit(e)) => {
                    self.rollback();
                    tracing::error!(error = %e, "store commit failed");
                    let err = e.to_string();
                    for job in jobs.into_iter().flatten() {
                        report(job, Err(StoreError::Commit(err.clone())));
                    }
                    return;
                }
            }
        }
        // Failure after failure: isolate the rest, one transaction each.
        for slot in &mut jobs {
            if slot.is_some() {
                self.apply_alone(slot.take());
            }
        }
    }

    /// One job in a transaction of its own.
    fn apply_alone(&mut self, job: Option<Job>) {
        let mut jobs = [job];
        let mut effects = PassEffects::default();
        let result = self.pass(&mut jobs, &mut effects);
        let [job] = jobs;
        match result {
            Ok(()) => {
                self.quota.commit(effects.quota);
                if let Some(job) = job {
                    report(job, Ok(refused_by(&effects.refused, 0)));
                }
            }
            Err(PassError::Job(_, e) | PassError::Commit(e)) => {
                self.rollback();
                if let Some(job) = job {
                    tracing::error!(error = %e, job = job.name(), "a store job failed");
                    report(job, Err(e.into()));
                }
            }
        }
    }

    /// Applies every job left in `jobs` in one transaction and commits.
    /// Reads are answered at once and leave the batch; writes stay until
    /// reported.
    fn pass(&self, jobs: &mut [Option<Job>], effects: &mut PassEffects) -> Result<(), PassError> {
        let conn = &self.conn;
        conn.execute_batch("BEGIN").map_err(PassError::Commit)?;
        for (index, slot) in jobs.iter_mut().enumerate() {
            let failed = |e| PassError::Job(index, e);
            match slot {
                None => {}
                Some(Job::PendingAfter {
                    recipient,
                    after,
                    limit,
                    ..
                }) => {
                    let page = select_pending(conn, recipient, *after, *limit).map_err(failed)?;
                    if let Some(Job::PendingAfter { done, .. }) = slot.take() {
                        let _ = done.send(Ok(page));
                    }
                }
                Some(Job::QueueLen { .. }) => {
                    let count = conn
                        .query_row("SELECT COUNT(*) FROM queue", [], |r| r.get::<_, i64>(0))
                        .map_err(failed)?;
                    if let Some(Job::QueueLen { done }) = slot.take() {
                        let _ = done.send(Ok(count as u64));
                    }
                }
                Some(Job::Enqueue { messages, .. }) => {
                    for m in messages.iter() {
                        if !self.quota.admit(&mut effects.quota, m) {
                            effects.refused.push((index, m.id));
                        } else if !insert_message(conn, m).map_err(failed)? {
                            // Already stored (the same id): counted once.
                            effects.quota.add(&m.recipient, -1, -size_of(m));
                        }
                    }
                }
                Some(Job::Delete { recipient, id, .. }) => {
                    if let Some(size) = delete_message(conn, recipient, *id).map_err(failed)? {
                        effects.quota.add(recipient, -1, -size);
                    }
                }
                Some(Job::Devices { op, answer, .. }) => {
                    *answer = Some(devices::apply(conn, op).map_err(failed)?);
                }
                Some(write) => apply(conn, write).map_err(failed)?,
            }
        }
        conn.execute_batch("COMMIT").map_err(PassError::Commit)
    }

    fn rollback(&self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// The ids the pass refused in job `index`.
fn refused_by(refused: &[(usize, MsgId)], index: usize) -> Vec<MsgId> {
    refused
        .iter()
        .filter(|(job, _)| *job == index)
        .map(|(_, id)| *id)
        .collect()
}

/// Tells a job's submitter how it went (reads, already answered on
/// success, get their error here). `Ok` carries the messages an enqueue
/// did not store because their recipient's queue is full.
pub(super) fn report(job: Job, result: Result<Vec<MsgId>, StoreError>) {
    match job {
        Job::Enqueue { done, .. } => done(result),
        Job::SetBlock { done, .. } | Job::Barrier { done } => {
            let _ = done.send(result.map(drop));
        }
        Job::Lockout { done, .. } => {
            if let Some(done) = done {
                let _ = done.send(result.map(drop));
            }
        }
        Job::PendingAfter { done, .. } => {
            let _ = done.send(result.map(|_| Vec::new()));
        }
        Job::Devices { answer, done, .. } => {
            let _ = done.send(result.map(|_| answer.unwrap_or_default()));
        }
        Job::QueueLen { done } => {
            let _ = done.send(result.map(|_| 0));
        }
        // Only logged: an ack not applied leaves the message queued (it is
        // delivered again), a login time not recorded is approximate, and
        // space not given back now is given back by the next vacuum.
        Job::Delete { .. } | Job::Presence { .. } | Job::Vacuum { .. } => {}
    }
}

/// Applies one of the other write jobs inside the current transaction.
fn apply(conn: &Connection, job: &Job) -> rusqlite::Result<()> {
    match job {
        Job::SetBlock {
            blocker,
            blocked,
            blocking,
            ..
        } => {
            let sql = if *blocking {
                "INSERT OR IGNORE INTO blocks (blocker, blocked) VALUES (?1, ?2)"
            } else {
                "DELETE FROM blocks WHERE blocker = ?1 AND blocked = ?2"
            };
            conn.execute(sql, params![blocker, blocked])?;
        }
        Job::Presence { user, at, online } => {
            let sql = if *online {
                "INSERT INTO history (user, login_at) VALUES (?1, ?2)
                 ON CONFLICT (user) DO UPDATE SET login_at = excluded.login_at"
            } else {
                "INSERT INTO history (user, logout_at) VALUES (?1, ?2)
                 ON CONFLICT (user) DO UPDATE SET logout_at = excluded.logout_at"
            };
            conn.execute(sql, params![user, *at as i64])?;
        }
        Job::Lockout { user, until, .. } => {
            match until {
                Some(until) => conn.execute(
                    "INSERT INTO lockouts (user, until) VALUES (?1, ?2)
                     ON CONFLICT (user) DO UPDATE SET until = excluded.until",
                    params![user, *until as i64],
                )?,
                None => conn.execute("DELETE FROM lockouts WHERE user = ?1", params![user])?,
            };
        }
        Job::Vacuum { pages } => {
            // Hands up to `pages` free pages back to the file system, one
            // per step of the statement.
            let mut stmt = conn.prepare(&format!("PRAGMA incremental_vacuum({pages})"))?;
            let mut rows = stmt.query([])?;
            while rows.next()?.is_some() {}
        }
        Job::Enqueue { .. }
        | Job::Delete { .. }
        | Job::Barrier { .. }
        | Job::PendingAfter { .. }
        | Job::QueueLen { .. }
        | Job::Devices { .. } => {}
    }
    Ok(())
}

/// Stores one message; `false` if one with its id is already stored.
fn insert_message(conn: &Connection, m: &StoredMessage) -> rusqlite::Result<bool> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO queue (id, recipient, sender, text, at, client_id, size)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let inserted = stmt.execute(params![
        m.id.encode(&mut [0; MSG_ID_LEN]),
        m.recipient,
        m.sender,
        m.text,
        m.at as i64,
        m.client_id,
        size_of(m),
    ])?;
    Ok(inserted == 1)
}

/// Forgets an acknowledged message; its size if it was there.
fn delete_message(conn: &Connection, recipient: &str, id: MsgId) -> rusqlite::Result<Option<i64>> {
    // One per acknowledged offline message: keep the statement.
    conn.prepare_cached("DELETE FROM queue WHERE id = ?1 AND recipient = ?2 RETURNING size")?
        .query_row(params![id.encode(&mut [0; MSG_ID_LEN]), recipient], |r| {
            r.get(0)
        })
        .optional()
}

fn select_pending(
    conn: &Connection,
    recipient: &str,
    after: u64,
    limit: usize,
) -> rusqlite::Result<Vec<StoredMessage>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, id, sender, text, at, client_id FROM queue
         WHERE recipient = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![recipient, after as i64, limit as i64], |r| {
        let id = r.get_ref(1)?.as_str()?;
        let id = id.parse::<MsgId>().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
        })?;
        Ok(StoredMessage {
            seq: r.get::<_, i64>(0)? as u64,
            id,
            recipient: recipient.to_owned(),
            sender: r.get(2)?,
            text: r.get(3)?,
            at: r.get::<_, i64>(4)? as Timestamp,
            client_id: r.get(5)?,
        })
    })?;
    rows.collect()
}

//! The store thread: takes every job waiting in the channel, applies them in
//! one transaction, commits (one fsync for the lot), then reports to each.
//! A job that fails (a damaged page, say) fails alone.

use std::sync::mpsc;

use msg_proto::msg_id::MSG_ID_LEN;
use msg_proto::{MsgId, Timestamp};
use rusqlite::{Connection, params};

use crate::store::{Job, StoreError, StoredMessage};

/// Most jobs applied in one transaction; bounds the latency of the first.
const MAX_BATCH: usize = 4096;

/// The store thread: batch, apply in one transaction, commit, then report.
pub(super) fn run(mut conn: Connection, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        apply_batch(&mut conn, batch);
    }
}

/// Passes over one batch before the rest of it runs one job per
/// transaction: each failing job costs a pass over the others.
const MAX_PASSES: usize = 4;

/// A pass that did not commit.
enum PassError {
    /// Job `index` failed; the transaction was rolled back.
    Job(usize, rusqlite::Error),
    /// The transaction could not begin or commit.
    Commit(rusqlite::Error),
}

/// Applies a batch in one transaction, so its jobs share one commit (one
/// fsync). A job that fails fails alone: SQLite fails every later write of
/// a transaction in which it met a damaged page, and its commit too (a
/// savepoint rolled back to does not help), so the transaction is rolled
/// back and the batch applied again without that job.
pub(super) fn apply_batch(conn: &mut Connection, batch: Vec<Job>) {
    let mut jobs: Vec<Option<Job>> = batch.into_iter().map(Some).collect();
    for _ in 0..MAX_PASSES {
        match pass(conn, &mut jobs) {
            Ok(()) => {
                for job in jobs.into_iter().flatten() {
                    report(job, Ok(()));
                }
                return;
            }
            Err(PassError::Job(index, e)) => {
                rollback(conn);
                if let Some(job) = jobs[index].take() {
                    tracing::error!(error = %e, job = job.name(), "a store job failed");
                    report(job, Err(e.into()));
                }
            }
            Err(PassError::Commit(e)) => {
                rollback(conn);
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
            let mut single = [slot.take()];
            apply_batch_once(conn, &mut single);
        }
    }
}

/// One job in a transaction of its own.
fn apply_batch_once(conn: &mut Connection, job: &mut [Option<Job>; 1]) {
    let result = pass(conn, job);
    if result.is_err() {
        rollback(conn);
    }
    let Some(job) = job[0].take() else {
        return;
    };
    match result {
        Ok(()) => report(job, Ok(())),
        Err(PassError::Job(_, e) | PassError::Commit(e)) => {
            tracing::error!(error = %e, job = job.name(), "a store job failed");
            report(job, Err(e.into()));
        }
    }
}

/// Applies every job left in `jobs` in one transaction and commits. Reads
/// are answered at once and leave the batch; writes stay until reported.
fn pass(conn: &Connection, jobs: &mut [Option<Job>]) -> Result<(), PassError> {
    conn.execute_batch("BEGIN").map_err(PassError::Commit)?;
    for (index, slot) in jobs.iter_mut().enumerate() {
        let Some(job) = slot else { continue };
        match job {
            Job::PendingAfter {
                recipient,
                after,
                limit,
                ..
            } => {
                let page = select_pending(conn, recipient, *after, *limit)
                    .map_err(|e| PassError::Job(index, e))?;
                if let Some(Job::PendingAfter { done, .. }) = slot.take() {
                    let _ = done.send(Ok(page));
                }
            }
            Job::QueueLen { .. } => {
                let count = conn
                    .query_row("SELECT COUNT(*) FROM queue", [], |r| r.get::<_, i64>(0))
                    .map_err(|e| PassError::Job(index, e))?;
                if let Some(Job::QueueLen { done }) = slot.take() {
                    let _ = done.send(Ok(count as u64));
                }
            }
            write => apply(conn, write).map_err(|e| PassError::Job(index, e))?,
        }
    }
    conn.execute_batch("COMMIT").map_err(PassError::Commit)
}

fn rollback(conn: &Connection) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
}

/// Tells a job's submitter how it went (reads, already answered on
/// success, get their error here).
fn report(job: Job, result: Result<(), StoreError>) {
    match job {
        Job::Enqueue { done, .. } => done(result),
        Job::SetBlock { done, .. } | Job::Barrier { done } => {
            let _ = done.send(result);
        }
        Job::Lockout { done, .. } => {
            if let Some(done) = done {
                let _ = done.send(result);
            }
        }
        Job::PendingAfter { done, .. } => {
            let _ = done.send(result.map(|()| Vec::new()));
        }
        Job::QueueLen { done } => {
            let _ = done.send(result.map(|()| 0));
        }
        // Only logged: an ack not applied leaves the message queued (it is
        // delivered again), a login time not recorded is approximate.
        Job::Delete { .. } | Job::Presence { .. } => {}
    }
}

/// Applies a write job inside the current transaction.
fn apply(conn: &Connection, job: &Job) -> rusqlite::Result<()> {
    match job {
        Job::Enqueue { messages, .. } => insert_messages(conn, messages),
        Job::Delete { recipient, id } => {
            // One per acknowledged offline message: keep the statement.
            conn.prepare_cached("DELETE FROM queue WHERE id = ?1 AND recipient = ?2")?
                .execute(params![id.encode(&mut [0; MSG_ID_LEN]), recipient])?;
            Ok(())
        }
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
            Ok(())
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
            Ok(())
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
            Ok(())
        }
        Job::Barrier { .. } | Job::PendingAfter { .. } | Job::QueueLen { .. } => Ok(()),
    }
}

fn insert_messages(conn: &Connection, messages: &[StoredMessage]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO queue (id, recipient, sender, text, at, client_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut id = [0; MSG_ID_LEN];
    for m in messages {
        stmt.execute(params![
            m.id.encode(&mut id),
            m.recipient,
            m.sender,
            m.text,
            m.at as i64,
            m.client_id
        ])?;
    }
    Ok(())
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

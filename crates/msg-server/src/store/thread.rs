//! The store thread: takes every job waiting in the channel, applies them in
//! one transaction, commits (one fsync for the lot), then reports to each.

use std::sync::mpsc;

use msg_proto::msg_id::MSG_ID_LEN;
use msg_proto::{MsgId, Timestamp};
use rusqlite::{Connection, Transaction, params};
use tokio::sync::oneshot;

use crate::store::{Completion, Job, StoreError, StoredMessage};

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

/// What to report once the batch's fate is known.
enum Report {
    Done(Completion),
    Unit(oneshot::Sender<Result<(), StoreError>>),
}

fn apply_batch(conn: &mut Connection, batch: Vec<Job>) {
    let mut reports = Vec::new();
    let outcome = conn.transaction().map_err(StoreError::from).and_then(|tx| {
        for job in batch {
            apply(&tx, job, &mut reports);
        }
        tx.commit().map_err(StoreError::from)
    });
    let failed = outcome.as_ref().err().map(|e| e.to_string());
    if let Some(err) = &failed {
        tracing::error!(error = %err, "store commit failed");
    }
    for report in reports {
        let result = match &failed {
            None => Ok(()),
            Some(err) => Err(StoreError::Commit(err.clone())),
        };
        match report {
            Report::Done(done) => done(result),
            Report::Unit(done) => {
                let _ = done.send(result);
            }
        }
    }
}

fn apply(tx: &Transaction<'_>, job: Job, reports: &mut Vec<Report>) {
    match job {
        Job::Enqueue { messages, done } => {
            let result = insert_messages(tx, &messages);
            match result {
                Ok(()) => reports.push(Report::Done(done)),
                Err(e) => done(Err(e.into())),
            }
        }
        Job::PendingAfter {
            recipient,
            after,
            limit,
            done,
        } => {
            let _ = done.send(select_pending(tx, &recipient, after, limit).map_err(Into::into));
        }
        Job::Delete { recipient, id } => {
            // One per acknowledged offline message: keep the statement.
            let deleted = tx
                .prepare_cached("DELETE FROM queue WHERE id = ?1 AND recipient = ?2")
                .and_then(|mut stmt| {
                    stmt.execute(params![id.encode(&mut [0; MSG_ID_LEN]), recipient])
                });
            if let Err(e) = deleted {
                tracing::error!(error = %e, "cannot delete an acknowledged message");
            }
        }
        Job::SetBlock {
            blocker,
            blocked,
            blocking,
            done,
        } => {
            let sql = if blocking {
                "INSERT OR IGNORE INTO blocks (blocker, blocked) VALUES (?1, ?2)"
            } else {
                "DELETE FROM blocks WHERE blocker = ?1 AND blocked = ?2"
            };
            match tx.execute(sql, params![blocker, blocked]) {
                Ok(_) => reports.push(Report::Unit(done)),
                Err(e) => {
                    let _ = done.send(Err(e.into()));
                }
            }
        }
        Job::Presence { user, at, online } => {
            let sql = if online {
                "INSERT INTO history (user, login_at) VALUES (?1, ?2)
                 ON CONFLICT (user) DO UPDATE SET login_at = excluded.login_at"
            } else {
                "INSERT INTO history (user, logout_at) VALUES (?1, ?2)
                 ON CONFLICT (user) DO UPDATE SET logout_at = excluded.logout_at"
            };
            if let Err(e) = tx.execute(sql, params![user, at as i64]) {
                tracing::error!(error = %e, "cannot record login history");
            }
        }
        Job::Lockout { user, until, done } => {
            let result = match until {
                Some(until) => tx.execute(
                    "INSERT INTO lockouts (user, until) VALUES (?1, ?2)
                     ON CONFLICT (user) DO UPDATE SET until = excluded.until",
                    params![user, until as i64],
                ),
                None => tx.execute("DELETE FROM lockouts WHERE user = ?1", params![user]),
            };
            match (result, done) {
                (Ok(_), Some(done)) => reports.push(Report::Unit(done)),
                (Ok(_), None) => {}
                (Err(e), done) => {
                    tracing::error!(error = %e, "cannot record a login block");
                    if let Some(done) = done {
                        let _ = done.send(Err(e.into()));
                    }
                }
            }
        }
        Job::Barrier { done } => reports.push(Report::Unit(done)),
        Job::QueueLen { done } => {
            let count = tx
                .query_row("SELECT COUNT(*) FROM queue", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(Into::into);
            let _ = done.send(count);
        }
    }
}

fn insert_messages(tx: &Transaction<'_>, messages: &[StoredMessage]) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
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
    tx: &Transaction<'_>,
    recipient: &str,
    after: u64,
    limit: usize,
) -> rusqlite::Result<Vec<StoredMessage>> {
    let mut stmt = tx.prepare_cached(
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

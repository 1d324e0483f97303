//! The durable store: offline queue, block lists, login history and lockouts
//! in one SQLite database (WAL) in the state directory.
//!
//! SQLite is synchronous, so the database lives on a dedicated thread fed by a
//! channel. The thread applies every job waiting in the channel inside one
//! transaction and reports completion only after the commit (which fsyncs,
//! `synchronous = FULL`): many concurrent senders share one fsync, which is
//! what makes durable enqueues cheap (group commit).
//!
//! Jobs are submitted synchronously and run in submission order. Callers rely
//! on that: a job submitted while the hub lock is held is ordered against
//! every other hub decision.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread::JoinHandle;

use msg_proto::{MsgId, Timestamp};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tokio::sync::oneshot;

/// Most jobs applied in one transaction; bounds the latency of the first.
const MAX_BATCH: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create the state directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("the store has shut down")]
    Closed,
    /// The batch this job was part of did not commit.
    #[error("commit failed: {0}")]
    Commit(String),
}

/// A direct message held for a recipient who has not acknowledged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: MsgId,
    pub recipient: String,
    pub sender: String,
    pub text: String,
    pub at: Timestamp,
    /// The sender's idempotency key, passed through to the recipient.
    pub client_id: Option<String>,
}

/// What the server needs in memory at start-up.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// blocker → users they block.
    pub blocks: HashMap<String, HashSet<String>>,
    /// user → when they were last seen online (logout time).
    pub last_seen: HashMap<String, Timestamp>,
    /// user → end of their login block, for blocks still in force.
    pub lockouts: HashMap<String, Timestamp>,
    /// Incremented at every start; message ids embed it so they never repeat.
    pub boot: u32,
}

/// Called on the store thread once a job's transaction has committed (or failed).
pub type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

enum Job {
    Enqueue {
        messages: Vec<StoredMessage>,
        done: Completion,
    },
    PendingAfter {
        recipient: String,
        after: MsgId,
        limit: usize,
        done: oneshot::Sender<Result<Vec<StoredMessage>, StoreError>>,
    },
    Delete {
        recipient: String,
        id: MsgId,
    },
    SetBlock {
        blocker: String,
        blocked: String,
        blocking: bool,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    Presence {
        user: String,
        at: Timestamp,
        online: bool,
    },
    Lockout {
        user: String,
        until: Option<Timestamp>,
        done: Option<oneshot::Sender<Result<(), StoreError>>>,
    },
    QueueLen {
        done: oneshot::Sender<Result<u64, StoreError>>,
    },
    Barrier {
        done: oneshot::Sender<Result<(), StoreError>>,
    },
}

pub struct Store {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Store {
    /// Opens (or creates) `msg.db` in `dir` and returns the snapshot the
    /// server starts from.
    pub fn open(dir: &Path, now: Timestamp) -> Result<(Self, Snapshot), StoreError> {
        std::fs::create_dir_all(dir)?;
        let mut conn = Connection::open(dir.join("msg.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&conn)?;
        let snapshot = load_snapshot(&mut conn, now)?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("msg-store".into())
            .spawn(move || run(conn, rx))?;
        Ok((
            Self {
                jobs: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
            },
            snapshot,
        ))
    }

    fn submit(&self, job: Job) -> Result<(), Job> {
        let guard = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(tx) => tx.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }

    /// Stores messages durably; `done` runs after the commit.
    pub fn enqueue(&self, messages: Vec<StoredMessage>, done: Completion) {
        if let Err(Job::Enqueue { done, .. }) = self.submit(Job::Enqueue { messages, done }) {
            done(Err(StoreError::Closed));
        }
    }

    /// Up to `limit` queued messages for `recipient` with ids above `after`,
    /// oldest first.
    pub fn pending_after(
        &self,
        recipient: &str,
        after: MsgId,
        limit: usize,
    ) -> oneshot::Receiver<Result<Vec<StoredMessage>, StoreError>> {
        let (done, rx) = oneshot::channel();
        // On failure the sender is dropped and the receiver reports it.
        let _ = self.submit(Job::PendingAfter {
            recipient: recipient.to_owned(),
            after,
            limit,
            done,
        });
        rx
    }

    /// Forgets a queued message its recipient has acknowledged.
    pub fn delete(&self, recipient: &str, id: MsgId) {
        let _ = self.submit(Job::Delete {
            recipient: recipient.to_owned(),
            id,
        });
    }

    pub fn set_block(
        &self,
        blocker: &str,
        blocked: &str,
        blocking: bool,
    ) -> oneshot::Receiver<Result<(), StoreError>> {
        let (done, rx) = oneshot::channel();
        let _ = self.submit(Job::SetBlock {
            blocker: blocker.to_owned(),
            blocked: blocked.to_owned(),
            blocking,
            done,
        });
        rx
    }

    /// Records a login (`online`) or logout time of `user`.
    pub fn presence(&self, user: &str, at: Timestamp, online: bool) {
        let _ = self.submit(Job::Presence {
            user: user.to_owned(),
            at,
            online,
        });
    }

    /// Persists a login block; the receiver reports when it is durable.
    pub fn lockout(
        &self,
        user: &str,
        until: Timestamp,
    ) -> oneshot::Receiver<Result<(), StoreError>> {
        let (done, rx) = oneshot::channel();
        let _ = self.submit(Job::Lockout {
            user: user.to_owned(),
            until: Some(until),
            done: Some(done),
        });
        rx
    }

    /// Forgets an expired login block.
    pub fn clear_lockout(&self, user: &str) {
        let _ = self.submit(Job::Lockout {
            user: user.to_owned(),
            until: None,
            done: None,
        });
    }

    /// Number of queued messages (for tests and the bench).
    pub fn queue_len(&self) -> oneshot::Receiver<Result<u64, StoreError>> {
        let (done, rx) = oneshot::channel();
        let _ = self.submit(Job::QueueLen { done });
        rx
    }

    /// Completes once every job submitted before it is durable.
    pub fn barrier(&self) -> oneshot::Receiver<Result<(), StoreError>> {
        let (done, rx) = oneshot::channel();
        let _ = self.submit(Job::Barrier { done });
        rx
    }

    /// Finishes every submitted job, then stops the thread.
    pub fn close(&self) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS queue (
             id INTEGER PRIMARY KEY,
             recipient TEXT NOT NULL,
             sender TEXT NOT NULL,
             text TEXT NOT NULL,
             at INTEGER NOT NULL,
             client_id TEXT);
         CREATE INDEX IF NOT EXISTS queue_by_recipient ON queue (recipient, id);
         CREATE TABLE IF NOT EXISTS blocks (
             blocker TEXT NOT NULL,
             blocked TEXT NOT NULL,
             PRIMARY KEY (blocker, blocked)) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS history (
             user TEXT PRIMARY KEY,
             login_at INTEGER,
             logout_at INTEGER) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS lockouts (user TEXT PRIMARY KEY, until INTEGER NOT NULL) WITHOUT ROWID;",
    )?;
    // Databases created before client ids existed lack the column.
    let has_client_id: bool = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('queue') WHERE name = 'client_id'",
        [],
        |r| r.get(0),
    )?;
    if !has_client_id {
        conn.execute_batch("ALTER TABLE queue ADD COLUMN client_id TEXT")?;
    }
    Ok(())
}

fn load_snapshot(conn: &mut Connection, now: Timestamp) -> rusqlite::Result<Snapshot> {
    let tx = conn.transaction()?;
    let boot: u32 = tx
        .query_row("SELECT value FROM meta WHERE key = 'boot'", [], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(0u32)
        .wrapping_add(1);
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('boot', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [boot],
    )?;
    tx.execute("DELETE FROM lockouts WHERE until <= ?1", [now as i64])?;
    let mut snapshot = Snapshot {
        boot,
        ..Snapshot::default()
    };
    {
        let mut stmt = tx.prepare("SELECT blocker, blocked FROM blocks")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (blocker, blocked) = row?;
            snapshot.blocks.entry(blocker).or_default().insert(blocked);
        }
        // A user online when the server stopped has a login newer than its
        // logout; the login time is the last moment known for sure.
        let mut stmt = tx.prepare(
            "SELECT user, MAX(COALESCE(login_at, 0), COALESCE(logout_at, 0)) FROM history",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (user, at) = row?;
            snapshot.last_seen.insert(user, at as Timestamp);
        }
        let mut stmt = tx.prepare("SELECT user, until FROM lockouts")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (user, until) = row?;
            snapshot.lockouts.insert(user, until as Timestamp);
        }
    }
    tx.commit()?;
    Ok(snapshot)
}

/// The store thread: batch, apply in one transaction, commit, then report.
fn run(mut conn: Connection, jobs: mpsc::Receiver<Job>) {
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
                .and_then(|mut stmt| stmt.execute(params![id as i64, recipient]));
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
    for m in messages {
        stmt.execute(params![
            m.id as i64,
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
    after: MsgId,
    limit: usize,
) -> rusqlite::Result<Vec<StoredMessage>> {
    let mut stmt = tx.prepare_cached(
        "SELECT id, sender, text, at, client_id FROM queue
         WHERE recipient = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![recipient, after as i64, limit as i64], |r| {
        Ok(StoredMessage {
            id: r.get::<_, i64>(0)? as MsgId,
            recipient: recipient.to_owned(),
            sender: r.get(1)?,
            text: r.get(2)?,
            at: r.get::<_, i64>(3)? as Timestamp,
            client_id: r.get(4)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: MsgId, to: &str, text: &str) -> StoredMessage {
        StoredMessage {
            id,
            recipient: to.into(),
            sender: "hans".into(),
            text: text.into(),
            at: 1000 + id,
            client_id: Some(format!("c{id}")),
        }
    }

    fn enqueue_sync(store: &Store, messages: Vec<StoredMessage>) {
        let (tx, rx) = std::sync::mpsc::channel();
        store.enqueue(messages, Box::new(move |r| tx.send(r.is_ok()).unwrap()));
        assert!(rx.recv().unwrap());
    }

    #[test]
    fn queue_survives_reopen_in_order_and_deletes_only_own_messages() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, snapshot) = Store::open(dir.path(), 0).unwrap();
            assert_eq!(snapshot.boot, 1);
            enqueue_sync(
                &store,
                vec![message(3, "luke", "c"), message(1, "luke", "a")],
            );
            enqueue_sync(&store, vec![message(2, "yoda", "b")]);
            // Only the recipient's own ack deletes.
            store.delete("yoda", 1);
            store.close();
        }
        let (store, snapshot) = Store::open(dir.path(), 0).unwrap();
        assert_eq!(snapshot.boot, 2);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let pending = rt
            .block_on(store.pending_after("luke", 0, 10))
            .unwrap()
            .unwrap();
        assert_eq!(
            pending.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
            ["a", "c"]
        );
        assert_eq!(pending[0].client_id.as_deref(), Some("c1"));
        let page = rt
            .block_on(store.pending_after("luke", 1, 10))
            .unwrap()
            .unwrap();
        assert_eq!(page.len(), 1);
        store.delete("luke", 1);
        assert_eq!(rt.block_on(store.queue_len()).unwrap().unwrap(), 2);
    }

    #[test]
    fn a_database_from_before_client_ids_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("msg.db")).unwrap();
            conn.execute_batch(
                "CREATE TABLE queue (id INTEGER PRIMARY KEY, recipient TEXT NOT NULL,
                     sender TEXT NOT NULL, text TEXT NOT NULL, at INTEGER NOT NULL);
                 INSERT INTO queue VALUES (1, 'luke', 'hans', 'old', 5);",
            )
            .unwrap();
        }
        let (store, _) = Store::open(dir.path(), 0).unwrap();
        enqueue_sync(&store, vec![message(2, "luke", "new")]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let pending = rt
            .block_on(store.pending_after("luke", 0, 10))
            .unwrap()
            .unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].client_id, None);
        assert_eq!(pending[1].client_id.as_deref(), Some("c2"));
    }

    #[test]
    fn blocks_history_and_lockouts_load_into_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = Store::open(dir.path(), 0).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(store.set_block("luke", "vader", true))
                .unwrap()
                .unwrap();
            rt.block_on(store.set_block("luke", "yoda", true))
                .unwrap()
                .unwrap();
            rt.block_on(store.set_block("luke", "yoda", false))
                .unwrap()
                .unwrap();
            store.presence("hans", 400, true);
            store.presence("hans", 500, false);
            store.presence("leia", 700, true);
            rt.block_on(store.lockout("yoda", 9_000)).unwrap().unwrap();
            rt.block_on(store.lockout("r2d2", 100)).unwrap().unwrap();
        }
        let (_store, snapshot) = Store::open(dir.path(), 1_000).unwrap();
        assert_eq!(
            snapshot.blocks.get("luke").unwrap(),
            &HashSet::from(["vader".to_string()])
        );
        assert_eq!(snapshot.last_seen.get("hans"), Some(&500));
        assert_eq!(snapshot.last_seen.get("leia"), Some(&700));
        assert_eq!(snapshot.lockouts.get("yoda"), Some(&9_000));
        assert!(
            !snapshot.lockouts.contains_key("r2d2"),
            "expired blocks are dropped"
        );
    }
}

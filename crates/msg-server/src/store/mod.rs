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
//!
//! - this file: the jobs and the API that submits them;
//! - [`thread`]: the thread that applies them;
//! - [`quota`]: how much may wait in one recipient's queue;
//! - [`schema`]: tables, migrations and the start-up snapshot;
//! - [`devices`]: device tokens (their hashes);
//! - [`postgres`]: in cluster mode, the same jobs on the shared PostgreSQL.

mod devices;
mod postgres;
mod quota;
mod schema;
#[cfg(test)]
mod tests;
mod thread;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use msg_proto::{MsgId, Timestamp};
use rusqlite::Connection;
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create the state directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("the store has shut down")]
    Closed,
    /// Too many jobs wait for the store (see [`MAX_WAITING_JOBS`]).
    #[error("the store is overloaded")]
    Busy,
    #[error("database error: {0}")]
    Postgres(String),
    /// The batch this job was part of did not commit.
    #[error("commit failed: {0}")]
    Commit(String),
}

/// A direct message held for a recipient who has not acknowledged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its place in the store's queue, oldest first; 0 until it is stored.
    pub seq: u64,
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
}

pub use devices::{Device, DeviceAnswer, DeviceOp, TokenHash, hash_token};
pub use quota::QueueLimits;

/// Called on the store thread once an enqueue's transaction has committed
/// (or failed). `Ok` lists the messages that were not stored because their
/// recipient's queue is at its quota; the others are durable.
pub type Completion = Box<dyn FnOnce(Result<Vec<MsgId>, StoreError>) + Send>;

enum Job {
    Enqueue {
        messages: Vec<StoredMessage>,
        done: Completion,
    },
    PendingAfter {
        recipient: String,
        after: u64,
        limit: usize,
        done: oneshot::Sender<Result<Vec<StoredMessage>, StoreError>>,
    },
    Delete {
        recipient: String,
        id: MsgId,
        /// In a cluster: the node and lease epoch of the session that
        /// acknowledged it (the delete is fenced by them).
        fence: Option<(String, i64)>,
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
    /// Gives up to `pages` free pages back to the file system.
    Vacuum { pages: u32 },
    /// A device-token operation; its answer is reported after the commit.
    Devices {
        op: DeviceOp,
        answer: Option<DeviceAnswer>,
        done: oneshot::Sender<Result<DeviceAnswer, StoreError>>,
    },
}

impl Job {
    /// What the job does, for the log (never its data).
    fn name(&self) -> &'static str {
        match self {
            Job::Enqueue { .. } => "enqueue",
            Job::PendingAfter { .. } => "read queue",
            Job::Delete { .. } => "delete",
            Job::SetBlock { .. } => "set block",
            Job::Presence { .. } => "presence",
            Job::Lockout { .. } => "lockout",
            Job::QueueLen { .. } => "queue length",
            Job::Barrier { .. } => "barrier",
            Job::Vacuum { .. } => "vacuum",
            Job::Devices { .. } => "devices",
        }
    }
}

/// Jobs waiting for the store's thread at most. Past it a job is refused
/// at once (a sender is told the message could not be stored; an ack's
/// delete is skipped, so the message comes again, same id): a flood of
/// requests that each make a job (acks of made-up ids, say) cannot grow the
/// queue without end.
pub const MAX_WAITING_JOBS: usize = 65_536;

pub struct Store {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    waiting: Arc<Waiting>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// How many jobs wait, and whether refusing them has been logged.
#[derive(Default)]
struct Waiting {
    count: AtomicUsize,
    overloaded: AtomicBool,
}

/// The store thread's end of the job queue.
struct Jobs {
    rx: mpsc::Receiver<Job>,
    waiting: Arc<Waiting>,
}

impl Jobs {
    fn new() -> (mpsc::Sender<Job>, Self) {
        let (tx, rx) = mpsc::channel();
        let waiting = Arc::default();
        (tx, Self { rx, waiting })
    }

    /// The next batch: the first job (waiting for one), then those already
    /// waiting, up to `max`. `None` once the store is closed and every job
    /// is taken.
    fn next_batch(&self, max: usize) -> Option<Vec<Job>> {
        let first = self.rx.recv().ok()?;
        let mut batch = vec![first];
        while batch.len() < max {
            match self.rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let left = self.waiting.count.fetch_sub(batch.len(), Ordering::AcqRel) - batch.len();
        if left < MAX_WAITING_JOBS / 2 {
            self.waiting.overloaded.store(false, Ordering::Relaxed);
        }
        Some(batch)
    }
}

impl Store {
    /// Opens (or creates) `msg.db` in `dir` with the default quotas and
    /// returns the snapshot the server starts from.
    pub fn open(dir: &Path, now: Timestamp) -> Result<(Self, Snapshot), StoreError> {
        Self::open_with(dir, now, QueueLimits::default())
    }

    /// Opens (or creates) `msg.db` in `dir`, each recipient's offline queue
    /// held to `limits`.
    pub fn open_with(
        dir: &Path,
        now: Timestamp,
        limits: QueueLimits,
    ) -> Result<(Self, Snapshot), StoreError> {
        std::fs::create_dir_all(dir)?;
        let mut conn = Connection::open(dir.join("msg.db"))?;
        schema::give_space_back(&conn)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // The WAL file shrinks back to this after a checkpoint.
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        schema::migrate(&conn)?;
        let snapshot = schema::load_snapshot(&mut conn, now)?;
        let quota = quota::Quota::load(&conn, limits);
        let (tx, rx) = Jobs::new();
        let waiting = rx.waiting.clone();
        let writer = thread::Writer { conn, quota };
        let thread = std::thread::Builder::new()
            .name("msg-store".into())
            .spawn(move || thread::run(writer, rx))?;
        Ok((
            Self {
                jobs: Mutex::new(Some(tx)),
                waiting,
                thread: Mutex::new(Some(thread)),
            },
            snapshot,
        ))
    }

    /// The store of a cluster node: the offline queue and device tokens in
    /// the shared PostgreSQL at `url` (its schema already migrated).
    /// Blocks, presence and lockouts live in the cluster's own tables:
    /// their snapshot is empty here.
    pub fn open_postgres(url: &str, limits: QueueLimits) -> Result<(Self, Snapshot), StoreError> {
        let (tx, rx) = Jobs::new();
        let waiting = rx.waiting.clone();
        let writer = postgres::Writer {
            url: url.to_owned(),
            limits,
        };
        let thread = std::thread::Builder::new()
            .name("msg-store".into())
            .spawn(move || postgres::run(writer, rx))?;
        Ok((
            Self {
                jobs: Mutex::new(Some(tx)),
                waiting,
                thread: Mutex::new(Some(thread)),
            },
            Snapshot::default(),
        ))
    }

    /// Hands a job to the thread, or gives it back: the store is closed,
    /// or too many jobs wait.
    fn submit(&self, job: Job) -> Result<(), Job> {
        let waiting = &self.waiting;
        if waiting.count.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING_JOBS {
            waiting.count.fetch_sub(1, Ordering::AcqRel);
            if !waiting.overloaded.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    waiting = MAX_WAITING_JOBS,
                    "the store is overloaded: refusing its jobs until it catches up"
                );
            }
            return Err(job);
        }
        let guard = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let sent = match guard.as_ref() {
            Some(tx) => tx.send(job).map_err(|e| e.0),
            None => Err(job),
        };
        if sent.is_err() {
            waiting.count.fetch_sub(1, Ordering::AcqRel);
        }
        sent
    }

    /// Stores messages durably unless their recipient's queue is full;
    /// `done` runs after the commit.
    pub fn enqueue(&self, messages: Vec<StoredMessage>, done: Completion) {
        if let Err(Job::Enqueue { done, .. }) = self.submit(Job::Enqueue { messages, done }) {
            let closed = self
                .jobs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_none();
            done(Err(if closed {
                StoreError::Closed
            } else {
                StoreError::Busy
            }));
        }
    }

    /// Up to `limit` queued messages for `recipient` after the one at queue
    /// position `after` (0: from the start), oldest first.
    pub fn pending_after(
        &self,
        recipient: &str,
        after: u64,
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
        self.delete_fenced(recipient, id, None);
    }

    /// The same in a cluster: the node and lease epoch of the recipient's
    /// session, taken when the ack came, fence the delete.
    pub fn delete_fenced(&self, recipient: &str, id: MsgId, fence: Option<(String, i64)>) {
        let _ = self.submit(Job::Delete {
            recipient: recipient.to_owned(),
            id,
            fence,
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

    /// Gives up to `pages` free pages of the database back to the file
    /// system (space freed by acknowledged messages).
    pub fn vacuum(&self, pages: u32) {
        let _ = self.submit(Job::Vacuum { pages });
    }

    /// Applies a device-token operation; the answer comes once it is
    /// durable.
    pub fn devices(&self, op: DeviceOp) -> oneshot::Receiver<Result<DeviceAnswer, StoreError>> {
        let (done, rx) = oneshot::channel();
        let _ = self.submit(Job::Devices {
            op,
            answer: None,
            done,
        });
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

//! The inbox: every inbound item, persisted (SQLite, synchronous commits)
//! before the server is acked, so a crash of the daemon loses nothing.
//!
//! Items are kept per account, so logging in as someone else in the same
//! environment does not show the previous user's mail. Direct messages carry
//! the server's `msg_id`, which is unique: a message delivered twice (an ack
//! lost in a crash) is stored once. A message the sender sent twice (a retry
//! after a lost reply) carries the same `client_id` both times and is also
//! stored once.

use std::path::Path;

use msg_proto::control::{InboxItem, ItemKind};
use msg_proto::{MsgId, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

#[derive(Debug, thiserror::Error)]
#[error("inbox storage failed: {0}")]
pub struct InboxError(#[from] rusqlite::Error);

/// An item to store.
#[derive(Debug, Clone)]
pub struct NewItem<'a> {
    pub msg_id: Option<MsgId>,
    /// The sender's idempotency key for direct messages.
    pub client_id: Option<&'a str>,
    pub kind: ItemKind,
    pub from: Option<&'a str>,
    pub text: &'a str,
    pub at: Timestamp,
}

impl<'a> NewItem<'a> {
    /// A session event (private sessions, logouts) shown in the inbox.
    pub fn system(from: Option<&'a str>, text: &'a str, at: Timestamp) -> Self {
        Self {
            msg_id: None,
            client_id: None,
            kind: ItemKind::System,
            from,
            text,
            at,
        }
    }
}

pub struct Inbox {
    db: Connection,
}

impl Inbox {
    pub fn open(path: &Path) -> Result<Self, InboxError> {
        let db = Connection::open(path)?;
        Self::init(db)
    }

    pub fn open_in_memory() -> Result<Self, InboxError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(db: Connection) -> Result<Self, InboxError> {
        // WAL + synchronous=FULL: every commit is fsynced before we ack.
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS items (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                account TEXT NOT NULL,
                msg_id INTEGER,
                kind TEXT NOT NULL,
                sender TEXT,
                text TEXT NOT NULL,
                at INTEGER NOT NULL,
                read INTEGER NOT NULL DEFAULT 0
            );
            CREATE UNIQUE INDEX IF NOT EXISTS items_msg_id ON items(account, msg_id);
            CREATE INDEX IF NOT EXISTS items_unread ON items(account, read, id);
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )?;
        // Inboxes created before client ids existed lack the column.
        let has_client_id: bool = db.query_row(
            "SELECT COUNT(*) FROM pragma_table_info('items') WHERE name = 'client_id'",
            [],
            |r| r.get(0),
        )?;
        if !has_client_id {
            db.execute_batch("ALTER TABLE items ADD COLUMN client_id TEXT")?;
        }
        // NULLs are distinct in a unique index: items without a client id
        // are unconstrained.
        db.execute_batch(
            "CREATE UNIQUE INDEX IF NOT EXISTS items_client_id ON items(account, sender, client_id);",
        )?;
        Ok(Self { db })
    }

    /// Stores an item durably. `None` when its `msg_id` was already stored.
    pub fn add(&self, account: &str, item: &NewItem<'_>) -> Result<Option<InboxItem>, InboxError> {
        // The id's string form (32 hex digits, or an old id's decimal).
        let msg_id = item.msg_id.map(|id| id.to_string());
        let inserted = self.db.execute(
            "INSERT OR IGNORE INTO items (account, msg_id, kind, sender, text, at, client_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                account,
                msg_id,
                item.kind.as_str(),
                item.from,
                item.text,
                item.at as i64,
                item.client_id
            ],
        )?;
        if inserted == 0 {
            return Ok(None);
        }
        Ok(Some(InboxItem {
            id: self.db.last_insert_rowid() as u64,
            kind: item.kind,
            from: item.from.map(str::to_owned),
            text: item.text.to_owned(),
            at: item.at,
        }))
    }

    /// Items of `account`, oldest first: the unread ones, or all.
    pub fn list(&self, account: &str, all: bool) -> Result<Vec<InboxItem>, InboxError> {
        let mut stmt = self.db.prepare(
            "SELECT id, kind, sender, text, at FROM items
             WHERE account = ?1 AND (?2 OR read = 0) ORDER BY id",
        )?;
        let rows = stmt.query_map(params![account, all], |row| {
            let kind: String = row.get(1)?;
            Ok(InboxItem {
                id: row.get::<_, i64>(0)? as u64,
                kind: ItemKind::parse(&kind).unwrap_or(ItemKind::System),
                from: row.get(2)?,
                text: row.get(3)?,
                at: row.get::<_, i64>(4)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks the items of `account` up to `last_id` read.
    pub fn mark_read(&self, account: &str, last_id: u64) -> Result<(), InboxError> {
        self.db.execute(
            "UPDATE items SET read = 1 WHERE account = ?1 AND id <= ?2 AND read = 0",
            params![account, last_id as i64],
        )?;
        Ok(())
    }

    pub fn unread(&self, account: &str) -> Result<u64, InboxError> {
        let n: i64 = self.db.query_row(
            "SELECT COUNT(*) FROM items WHERE account = ?1 AND read = 0",
            params![account],
            |row| row.get(0),
        )?;
        Ok(n as u64)
    }

    /// The distinct senders among the last `limit` items of `account`
    /// (messages, broadcasts, private messages), for completion.
    pub fn recent_senders(&self, account: &str, limit: usize) -> Result<Vec<String>, InboxError> {
        let mut stmt = self.db.prepare(
            "SELECT DISTINCT sender FROM (SELECT sender FROM items
                 WHERE account = ?1 AND sender IS NOT NULL
                   AND kind IN ('message', 'broadcast', 'private')
                 ORDER BY id DESC LIMIT ?2)",
        )?;
        let rows = stmt.query_map(params![account, limit as i64], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The account that last logged in here, so that `msg inbox` works while
    /// logged out (e.g. after a restart of the daemon).
    pub fn last_account(&self) -> Result<Option<String>, InboxError> {
        Ok(self
            .db
            .query_row(
                "SELECT value FROM meta WHERE key = 'last_account'",
                [],
                |row| row.get(0),
            )
            .optional()?)
    }

    pub fn set_last_account(&self, account: &str) -> Result<(), InboxError> {
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES ('last_account', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![account],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg<'a>(msg_id: u64, text: &'a str) -> NewItem<'a> {
        NewItem {
            msg_id: Some(msg_id.into()),
            client_id: None,
            kind: ItemKind::Message,
            from: Some("hans"),
            text,
            at: 1,
        }
    }

    #[test]
    fn a_retried_send_is_stored_once_by_client_id() {
        let inbox = Inbox::open_in_memory().unwrap();
        let with_key = |msg_id, from, key| NewItem {
            client_id: Some(key),
            from: Some(from),
            ..msg(msg_id, "hi")
        };
        assert!(
            inbox
                .add("luke", &with_key(1, "hans", "k1"))
                .unwrap()
                .is_some()
        );
        // Same sender and key, new server id: the sender retried.
        assert!(
            inbox
                .add("luke", &with_key(2, "hans", "k1"))
                .unwrap()
                .is_none()
        );
        // Another sender may use the same key.
        assert!(
            inbox
                .add("luke", &with_key(3, "yoda", "k1"))
                .unwrap()
                .is_some()
        );
        assert_eq!(inbox.list("luke", true).unwrap().len(), 2);
    }

    #[test]
    fn an_inbox_from_before_client_ids_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.db");
        {
            let db = Connection::open(&path).unwrap();
            db.execute_batch(
                "CREATE TABLE items (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL, msg_id INTEGER,
                    kind TEXT NOT NULL, sender TEXT, text TEXT NOT NULL, at INTEGER NOT NULL,
                    read INTEGER NOT NULL DEFAULT 0);
                 INSERT INTO items (account, msg_id, kind, sender, text, at)
                    VALUES ('luke', 1, 'message', 'hans', 'old', 1);",
            )
            .unwrap();
        }
        let inbox = Inbox::open(&path).unwrap();
        assert_eq!(inbox.list("luke", true).unwrap().len(), 1);
        let item = NewItem {
            client_id: Some("k"),
            ..msg(2, "new")
        };
        assert!(inbox.add("luke", &item).unwrap().is_some());
    }

    #[test]
    fn duplicates_are_stored_once_and_reads_are_tracked() {
        let inbox = Inbox::open_in_memory().unwrap();
        let first = inbox.add("luke", &msg(7, "hi")).unwrap().unwrap();
        assert!(inbox.add("luke", &msg(7, "hi")).unwrap().is_none());
        inbox
            .add(
                "luke",
                &NewItem {
                    msg_id: None,
                    client_id: None,
                    kind: ItemKind::Presence,
                    from: Some("yoda"),
                    text: "yoda logged in",
                    at: 2,
                },
            )
            .unwrap()
            .unwrap();
        inbox
            .add("leia", &msg(8, "other account"))
            .unwrap()
            .unwrap();
        assert_eq!(inbox.unread("luke").unwrap(), 2);
        let items = inbox.list("luke", false).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0], first);
        inbox.mark_read("luke", first.id).unwrap();
        assert_eq!(inbox.unread("luke").unwrap(), 1);
        assert_eq!(inbox.list("luke", true).unwrap().len(), 2);
        assert_eq!(inbox.unread("leia").unwrap(), 1);
    }

    #[test]
    fn survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.sqlite3");
        {
            let inbox = Inbox::open(&path).unwrap();
            inbox.add("luke", &msg(1, "kept")).unwrap();
            inbox.set_last_account("luke").unwrap();
        }
        let inbox = Inbox::open(&path).unwrap();
        assert_eq!(inbox.last_account().unwrap().as_deref(), Some("luke"));
        assert_eq!(inbox.list("luke", false).unwrap()[0].text, "kept");
    }
}

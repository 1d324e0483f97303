//! The inbox: every inbound item, persisted (SQLite, synchronous commits)
//! before the server is acked, so a crash of the daemon loses nothing.
//!
//! Items are kept per account, so logging in as someone else in the same
//! environment does not show the previous user's mail. A burst of items is
//! stored in one transaction ([`Inbox::add_batch`]): one fsync for the lot,
//! not one per item, so a flood does not leave the daemon behind.
//!
//! De-duplication: a message delivered twice (an ack lost in a crash)
//! carries the same server `msg_id` and content and is stored once; a
//! message the sender sent twice (a retry after a lost reply) carries the
//! same `client_id` and is stored once. An item whose `msg_id` is known but
//! whose sender or text differs is another message (a server whose
//! database was restored reuses ids) and is stored: a recipient never drops
//! a message it has not stored.
//!
//! Listing goes by pages ([`Inbox::page`]), so that a large inbox is never
//! held in memory; [`Inbox::purge_read`] applies the retention period.

mod schema;
#[cfg(test)]
mod tests;

use std::path::Path;

use msg_proto::control::{InboxItem, ItemKind};
use msg_proto::{MsgId, Timestamp, now_ms};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

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

/// Which items a listing covers.
#[derive(Debug, Clone, Copy)]
pub struct Listing {
    /// Read ones too.
    pub all: bool,
    /// Only items after this inbox id.
    pub after: u64,
    /// Only items up to this inbox id (those there when the listing began).
    pub up_to: u64,
}

pub struct Inbox {
    db: Connection,
    /// Transactions committed, for tests and measurements of batching.
    commits: u64,
}

impl Inbox {
    pub fn open(path: &Path) -> Result<Self, InboxError> {
        Self::init(Connection::open(path)?)
    }

    pub fn open_in_memory() -> Result<Self, InboxError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(db: Connection) -> Result<Self, InboxError> {
        schema::init(&db)?;
        Ok(Self { db, commits: 0 })
    }

    /// Stores one item durably. `None` when it was already stored.
    pub fn add(
        &mut self,
        account: &str,
        item: &NewItem<'_>,
    ) -> Result<Option<InboxItem>, InboxError> {
        Ok(self
            .add_batch(account, std::slice::from_ref(item))?
            .pop()
            .flatten())
    }

    /// Stores items in one transaction, durably once this returns: for each,
    /// the stored item, or `None` for a duplicate. On error nothing is
    /// stored.
    pub fn add_batch(
        &mut self,
        account: &str,
        items: &[NewItem<'_>],
    ) -> Result<Vec<Option<InboxItem>>, InboxError> {
        let tx = self.db.transaction()?;
        let stored_at = now_ms() as i64;
        let stored = items
            .iter()
            .map(|item| insert(&tx, account, item, stored_at))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit()?;
        self.commits += 1;
        Ok(stored)
    }

    /// Makes every write fail (or work again), as a full disk does.
    #[cfg(test)]
    pub fn set_writable(&self, writable: bool) {
        self.db
            .pragma_update(None, "query_only", !writable)
            .expect("query_only");
    }

    /// Transactions committed since the inbox was opened.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// One page of `account`'s items, oldest first, at most `limit`.
    pub fn page(
        &self,
        account: &str,
        listing: Listing,
        limit: usize,
    ) -> Result<Vec<InboxItem>, InboxError> {
        let mut stmt = self.db.prepare_cached(
            "SELECT id, kind, sender, text, at FROM items
             WHERE account = ?1 AND (?2 OR read = 0) AND id > ?3 AND id <= ?4
             ORDER BY id LIMIT ?5",
        )?;
        let rows = stmt.query_map(
            params![
                account,
                listing.all,
                listing.after as i64,
                listing.up_to as i64,
                limit as i64
            ],
            |row| {
                let kind: String = row.get(1)?;
                Ok(InboxItem {
                    id: row.get::<_, i64>(0)? as u64,
                    kind: ItemKind::parse(&kind).unwrap_or(ItemKind::System),
                    from: row.get(2)?,
                    text: row.get(3)?,
                    at: row.get::<_, i64>(4)? as u64,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest inbox id of any account (0 for an empty inbox).
    pub fn last_id(&self) -> Result<u64, InboxError> {
        let id: Option<i64> = self
            .db
            .query_row("SELECT MAX(id) FROM items", [], |row| row.get(0))?;
        Ok(id.unwrap_or(0) as u64)
    }

    /// Items of `account`, oldest first: the unread ones, or all. The whole
    /// list in memory: for tests.
    #[cfg(test)]
    pub fn list(&self, account: &str, all: bool) -> Result<Vec<InboxItem>, InboxError> {
        let listing = Listing {
            all,
            after: 0,
            up_to: u64::MAX >> 1,
        };
        self.page(account, listing, usize::MAX >> 1)
    }

    /// Marks the items of `account` up to `last_id` read.
    pub fn mark_read(&self, account: &str, last_id: u64) -> Result<(), InboxError> {
        self.db.execute(
            "UPDATE items SET read = 1 WHERE account = ?1 AND id <= ?2 AND read = 0",
            params![account, last_id as i64],
        )?;
        Ok(())
    }

    /// Marks one item of `account` read (shown by `msg watch`).
    pub fn mark_item_read(&self, account: &str, id: u64) -> Result<(), InboxError> {
        self.db.execute(
            "UPDATE items SET read = 1 WHERE account = ?1 AND id = ?2 AND read = 0",
            params![account, id as i64],
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

    /// Deletes at most `limit` read items (of any account) stored before
    /// `before` (ms since the epoch); how many went. Unread items stay
    /// whatever their age.
    pub fn purge_read(&self, before: Timestamp, limit: usize) -> Result<usize, InboxError> {
        Ok(self.db.execute(
            "DELETE FROM items WHERE id IN (
                SELECT id FROM items
                WHERE read = 1 AND COALESCE(stored_at, at) < ?1
                LIMIT ?2)",
            params![before.min(i64::MAX as u64) as i64, limit as i64],
        )?)
    }

    /// Whether a write goes through now (after one failed: disk full).
    pub fn probe_writable(&self) -> Result<(), InboxError> {
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES ('probe', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![now_ms().to_string()],
        )?;
        Ok(())
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

/// Inserts one item unless it is a duplicate (see the module header).
fn insert(
    tx: &Transaction<'_>,
    account: &str,
    item: &NewItem<'_>,
    stored_at: i64,
) -> Result<Option<InboxItem>, InboxError> {
    let msg_id = item.msg_id.map(|id| id.to_string());
    if let Some(msg_id) = &msg_id {
        let mut same_id = tx.prepare_cached(
            "SELECT sender IS ?3 AND text = ?4 FROM items WHERE account = ?1 AND msg_id = ?2",
        )?;
        let matches = same_id
            .query_map(params![account, msg_id, item.from, item.text], |row| {
                row.get::<_, bool>(0)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        if matches.iter().any(|&same| same) {
            return Ok(None);
        }
        if !matches.is_empty() {
            // Never the text or the sender: they are someone's message.
            tracing::warn!(
                msg_id,
                "a different message arrived with an id already stored (was the server's \
                 database restored?); storing it as a new one"
            );
        }
    }
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO items (account, msg_id, kind, sender, text, at, client_id, stored_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            account,
            msg_id,
            item.kind.as_str(),
            item.from,
            item.text,
            item.at as i64,
            item.client_id,
            stored_at
        ])?;
    if inserted == 0 {
        return Ok(None);
    }
    Ok(Some(InboxItem {
        id: tx.last_insert_rowid() as u64,
        kind: item.kind,
        from: item.from.map(str::to_owned),
        text: item.text.to_owned(),
        at: item.at,
    }))
}

//! The inbox's tables and the migrations of inboxes written by older
//! versions.

use rusqlite::Connection;

/// Creates the tables, or brings an older inbox up to date.
pub(super) fn init(db: &Connection) -> rusqlite::Result<()> {
    // synchronous=FULL: every commit is on disk before we ack. A rollback
    // journal, not WAL: the daemon has one connection, so WAL's concurrent
    // readers buy nothing, while its checkpoints write every item twice; a
    // flood is stored at about twice the rate without them (measured with
    // `examples/inbox_rate.rs`). An inbox in WAL mode is converted here.
    db.pragma_update(None, "journal_mode", "TRUNCATE")?;
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
        CREATE INDEX IF NOT EXISTS items_unread ON items(account, read, id);
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    )?;
    // Inboxes created before client ids existed lack the column.
    if !has_column(db, "client_id")? {
        db.execute_batch("ALTER TABLE items ADD COLUMN client_id TEXT")?;
    }
    // When the item was stored here (ms), for the retention period; older
    // inboxes lack it and their items count from the server's time.
    if !has_column(db, "stored_at")? {
        db.execute_batch("ALTER TABLE items ADD COLUMN stored_at INTEGER")?;
    }
    // A server `msg_id` is not unique for good: a server whose database was
    // restored hands out used ids again. Dedup compares the content, so the
    // index on it must not refuse a second row.
    db.execute_batch(
        "DROP INDEX IF EXISTS items_msg_id;
         CREATE INDEX IF NOT EXISTS items_by_msg_id ON items(account, msg_id);",
    )?;
    // NULLs are distinct in a unique index: items without a client id are
    // unconstrained.
    db.execute_batch(
        "CREATE UNIQUE INDEX IF NOT EXISTS items_client_id ON items(account, sender, client_id);",
    )?;
    Ok(())
}

fn has_column(db: &Connection, name: &str) -> rusqlite::Result<bool> {
    db.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('items') WHERE name = ?1",
        [name],
        |r| r.get(0),
    )
}

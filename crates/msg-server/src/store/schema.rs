//! The database's tables, their migrations, and the snapshot the server
//! starts from (blocks, login history, lockouts).

use msg_proto::Timestamp;
use rusqlite::Connection;

use crate::store::Snapshot;

/// Makes the database give freed pages back (`auto_vacuum = INCREMENTAL`;
/// the store then vacuums a little at a time). A database created without
/// it is converted once, by a full `VACUUM`, before anything else opens it.
pub(super) fn give_space_back(conn: &Connection) -> rusqlite::Result<()> {
    const INCREMENTAL: i64 = 2;
    let mode: i64 = conn.pragma_query_value(None, "auto_vacuum", |r| r.get(0))?;
    if mode != INCREMENTAL {
        let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
        if pages > 0 {
            tracing::info!(
                pages,
                "converting the database to incremental vacuum (once)"
            );
        }
        conn.pragma_update(None, "auto_vacuum", INCREMENTAL)?;
        conn.execute_batch("VACUUM")?;
    }
    Ok(())
}

pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS queue (
             seq INTEGER PRIMARY KEY AUTOINCREMENT,
             id TEXT NOT NULL UNIQUE,
             recipient TEXT NOT NULL,
             sender TEXT NOT NULL,
             text TEXT NOT NULL,
             at INTEGER NOT NULL,
             client_id TEXT,
             size INTEGER NOT NULL);
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
    if !has_column(conn, "queue", "client_id")? {
        conn.execute_batch("ALTER TABLE queue ADD COLUMN client_id TEXT")?;
    }
    // Databases from before 128-bit ids keyed the queue by a 64-bit id.
    if !has_column(conn, "queue", "seq")? {
        migrate_to_seq(conn)?;
    }
    super::devices::create_table(conn)?;
    conn.execute_batch(
        // With the size, quotas are counted from the index alone.
        "CREATE INDEX IF NOT EXISTS queue_by_recipient_seq ON queue (recipient, seq, size);",
    )
}

fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |r| r.get(0),
    )
}

/// The queue gets an ordering column of its own (`seq`, oldest first);
/// each old integer id becomes its decimal string, which no new id can
/// equal (new ones are 32 hex digits), and is delivered in its old order.
fn migrate_to_seq(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         DROP INDEX IF EXISTS queue_by_recipient;
         ALTER TABLE queue RENAME TO queue_before_seq;
         CREATE TABLE queue (
             seq INTEGER PRIMARY KEY AUTOINCREMENT,
             id TEXT NOT NULL UNIQUE,
             recipient TEXT NOT NULL,
             sender TEXT NOT NULL,
             text TEXT NOT NULL,
             at INTEGER NOT NULL,
             client_id TEXT,
             size INTEGER NOT NULL);
         INSERT INTO queue (id, recipient, sender, text, at, client_id, size)
             SELECT CAST(id AS TEXT), recipient, sender, text, at, client_id,
                 length(CAST(text AS BLOB)) + length(CAST(sender AS BLOB))
                     + COALESCE(length(CAST(client_id AS BLOB)), 0)
             FROM queue_before_seq ORDER BY id;
         DROP TABLE queue_before_seq;
         DELETE FROM meta WHERE key = 'boot';
         COMMIT;",
    )
}

pub(super) fn load_snapshot(conn: &mut Connection, now: Timestamp) -> rusqlite::Result<Snapshot> {
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM lockouts WHERE until <= ?1", [now as i64])?;
    let mut snapshot = Snapshot::default();
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

//! The database's tables, their migrations, and the snapshot the server
//! starts from (blocks, login history, lockouts, the boot counter).

use msg_proto::Timestamp;
use rusqlite::{Connection, OptionalExtension};

use crate::store::Snapshot;

pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
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

pub(super) fn load_snapshot(conn: &mut Connection, now: Timestamp) -> rusqlite::Result<Snapshot> {
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

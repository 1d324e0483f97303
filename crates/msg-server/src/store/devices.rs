//! Device tokens in the database: only their SHA-256 hash is stored, with
//! the user, a label and the time of last use. A token is checked by looking
//! its hash up (no argon2: it has 256 random bits, nothing to slow down).

use msg_proto::Timestamp;
use rusqlite::{Connection, params};
use sha2::{Digest, Sha256};

/// Tokens kept per user; the least recently used go first beyond this, so
/// that logging in again and again cannot grow the table without bound.
pub const MAX_DEVICES_PER_USER: i64 = 32;

/// The SHA-256 hash of a token, as stored.
pub type TokenHash = [u8; 32];

/// The stored form of `token`.
pub fn hash_token(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// A device as `msg-server revoke --list` shows it (never its token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub label: String,
    pub created_at: Timestamp,
    pub last_used: Timestamp,
}

/// What to do with a user's device tokens.
#[derive(Debug)]
pub enum DeviceOp {
    Add {
        user: String,
        hash: TokenHash,
        label: String,
        at: Timestamp,
    },
    /// Whether the token is `user`'s; marks it used if so.
    Use {
        user: String,
        hash: TokenHash,
        at: Timestamp,
    },
    Revoke {
        user: String,
        hash: TokenHash,
    },
    RevokeAll {
        user: String,
    },
    List {
        user: String,
    },
}

/// The answer to a [`DeviceOp`].
#[derive(Debug, Default, PartialEq, Eq)]
pub enum DeviceAnswer {
    #[default]
    Done,
    Found(bool),
    /// Tokens revoked.
    Revoked(u64),
    List(Vec<Device>),
}

pub(super) fn create_table(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS devices (
             hash BLOB PRIMARY KEY,
             user TEXT NOT NULL,
             label TEXT NOT NULL,
             created_at INTEGER NOT NULL,
             last_used INTEGER NOT NULL) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS devices_by_user ON devices (user, last_used);",
    )
}

/// Applies `op` inside the current transaction.
pub(super) fn apply(conn: &Connection, op: &DeviceOp) -> rusqlite::Result<DeviceAnswer> {
    Ok(match op {
        DeviceOp::Add {
            user,
            hash,
            label,
            at,
        } => {
            conn.execute(
                "INSERT OR REPLACE INTO devices (hash, user, label, created_at, last_used)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![&hash[..], user, label, *at as i64],
            )?;
            conn.execute(
                "DELETE FROM devices WHERE user = ?1 AND hash NOT IN (
                     SELECT hash FROM devices WHERE user = ?1
                     ORDER BY last_used DESC LIMIT ?2)",
                params![user, MAX_DEVICES_PER_USER],
            )?;
            DeviceAnswer::Done
        }
        DeviceOp::Use { user, hash, at } => {
            let found = conn
                .prepare_cached("UPDATE devices SET last_used = ?3 WHERE hash = ?1 AND user = ?2")?
                .execute(params![&hash[..], user, *at as i64])?;
            DeviceAnswer::Found(found == 1)
        }
        DeviceOp::Revoke { user, hash } => {
            let n = conn.execute(
                "DELETE FROM devices WHERE hash = ?1 AND user = ?2",
                params![&hash[..], user],
            )?;
            DeviceAnswer::Revoked(n as u64)
        }
        DeviceOp::RevokeAll { user } => {
            let n = conn.execute("DELETE FROM devices WHERE user = ?1", params![user])?;
            DeviceAnswer::Revoked(n as u64)
        }
        DeviceOp::List { user } => {
            let mut stmt = conn.prepare(
                "SELECT label, created_at, last_used FROM devices
                 WHERE user = ?1 ORDER BY last_used DESC",
            )?;
            let rows = stmt.query_map(params![user], |r| {
                Ok(Device {
                    label: r.get(0)?,
                    created_at: r.get::<_, i64>(1)? as Timestamp,
                    last_used: r.get::<_, i64>(2)? as Timestamp,
                })
            })?;
            DeviceAnswer::List(rows.collect::<rusqlite::Result<_>>()?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        create_table(&conn).unwrap();
        conn
    }

    fn add(conn: &Connection, user: &str, token: &str, at: Timestamp) {
        let op = DeviceOp::Add {
            user: user.into(),
            hash: hash_token(token),
            label: "msgd@host".into(),
            at,
        };
        apply(conn, &op).unwrap();
    }

    fn found(conn: &Connection, user: &str, token: &str) -> bool {
        let op = DeviceOp::Use {
            user: user.into(),
            hash: hash_token(token),
            at: 9,
        };
        apply(conn, &op).unwrap() == DeviceAnswer::Found(true)
    }

    #[test]
    fn a_token_is_found_only_for_its_user_until_revoked() {
        let conn = db();
        add(&conn, "hans", "aa", 1);
        assert!(found(&conn, "hans", "aa"));
        assert!(!found(&conn, "luke", "aa"));
        assert!(!found(&conn, "hans", "ab"));
        let op = DeviceOp::RevokeAll {
            user: "hans".into(),
        };
        assert_eq!(apply(&conn, &op).unwrap(), DeviceAnswer::Revoked(1));
        assert!(!found(&conn, "hans", "aa"));
    }

    #[test]
    fn only_the_hash_is_stored() {
        let conn = db();
        add(&conn, "hans", "secret-token", 1);
        let stored: Vec<u8> = conn
            .query_row("SELECT hash FROM devices", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored.len(), 32);
        assert!(!String::from_utf8_lossy(&stored).contains("secret-token"));
    }

    #[test]
    fn the_least_recently_used_go_beyond_the_limit() {
        let conn = db();
        for i in 0..MAX_DEVICES_PER_USER + 5 {
            add(&conn, "hans", &format!("t{i}"), i as Timestamp);
        }
        let DeviceAnswer::List(list) = apply(
            &conn,
            &DeviceOp::List {
                user: "hans".into(),
            },
        )
        .unwrap() else {
            panic!("not a list");
        };
        assert_eq!(list.len() as i64, MAX_DEVICES_PER_USER);
        assert!(!found(&conn, "hans", "t0"));
        assert!(found(
            &conn,
            "hans",
            &format!("t{}", MAX_DEVICES_PER_USER + 4)
        ));
    }
}

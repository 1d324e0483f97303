//! The accounts table: what the server's account list reads and writes
//! in cluster mode. Names are unique ignoring case (`name_key`), as in the
//! credentials file; a credential is an argon2 PHC string, or a plain
//! password imported from a classic file.

use deadpool_postgres::Pool;
use msg_proto::validate::username_key;
use tokio_postgres::error::SqlState;

use crate::cluster::ClusterError;

/// What the table looked like: changes whenever an account is added
/// (the count, which only grows) or changed (the highest version).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    count: i64,
    version: i64,
}

/// Every account, and the stamp of what was read.
pub async fn all(db: &Pool) -> Result<(Vec<(String, String)>, Stamp), ClusterError> {
    let mut client = db.get().await?;
    // One snapshot for the rows and the stamp.
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let rows = tx
        .query("SELECT name, credential, version FROM accounts", &[])
        .await?;
    tx.commit().await?;
    let mut stamp = Stamp {
        count: rows.len() as i64,
        version: 0,
    };
    let accounts = rows
        .into_iter()
        .map(|row| {
            stamp.version = stamp.version.max(row.get(2));
            (row.get(0), row.get(1))
        })
        .collect();
    Ok((accounts, stamp))
}

/// The table's stamp now.
pub async fn stamp(db: &Pool) -> Result<Stamp, ClusterError> {
    let row = db
        .get()
        .await?
        .query_one(
            "SELECT count(*), COALESCE(max(version), 0) FROM accounts",
            &[],
        )
        .await?;
    Ok(Stamp {
        count: row.get(0),
        version: row.get(1),
    })
}

/// `user`'s credential as it is now (a password changed on another node a
/// moment ago counts).
pub async fn credential(db: &Pool, user: &str) -> Result<Option<String>, ClusterError> {
    let row = super::query_opt_prepared(
        db,
        "SELECT credential FROM accounts WHERE name = $1",
        &[&user],
    )
    .await?;
    Ok(row.map(|row| row.get(0)))
}

/// What became of an account to add.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    Added,
    /// The name is taken, in this spelling.
    Taken(String),
}

/// Adds an account unless its name is taken (ignoring case).
pub async fn add(db: &Pool, user: &str, credential: &str) -> Result<Added, ClusterError> {
    let client = db.get().await?;
    let inserted = client
        .execute(
            "INSERT INTO accounts (name, name_key, credential) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&user, &username_key(user), &credential],
        )
        .await?;
    if inserted == 1 {
        return Ok(Added::Added);
    }
    Ok(Added::Taken(
        holder(&client, user).await?.unwrap_or_default(),
    ))
}

/// What [`set`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Set {
    Changed,
    Added,
    /// Another spelling of the name holds it.
    Taken(String),
}

/// Sets `user`'s credential, adding the account if there is none.
pub async fn set(db: &Pool, user: &str, credential: &str) -> Result<Set, ClusterError> {
    let client = db.get().await?;
    let result = client
        .query_one(
            "INSERT INTO accounts (name, name_key, credential) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE
                 SET credential = EXCLUDED.credential, version = nextval('account_version')
             RETURNING (xmax = 0)",
            &[&user, &username_key(user), &credential],
        )
        .await;
    match result {
        Ok(row) if row.get::<_, bool>(0) => Ok(Set::Added),
        Ok(_) => Ok(Set::Changed),
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            Ok(Set::Taken(holder(&client, user).await?.unwrap_or_default()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Adds the accounts that do not exist yet (by name, ignoring case);
/// returns how many were added. In name order, so that nodes importing the
/// same file at once lock the same rows in the same order (no deadlock).
pub async fn import(db: &Pool, accounts: &[(String, String)]) -> Result<u64, ClusterError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await?;
    let insert = tx
        .prepare(
            "INSERT INTO accounts (name, name_key, credential) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .await?;
    let mut sorted: Vec<&(String, String)> = accounts.iter().collect();
    sorted.sort_by_key(|(user, _)| username_key(user));
    let mut added = 0;
    for (user, credential) in sorted {
        added += tx
            .execute(&insert, &[user, &username_key(user), credential])
            .await?;
    }
    tx.commit().await?;
    Ok(added)
}

/// The spelling that holds `user`'s name, if any.
async fn holder(
    client: &deadpool_postgres::Client,
    user: &str,
) -> Result<Option<String>, ClusterError> {
    let row = client
        .query_opt(
            "SELECT name FROM accounts WHERE name_key = $1",
            &[&username_key(user)],
        )
        .await?;
    Ok(row.map(|row| row.get(0)))
}

/// Revokes every device token of `user`; returns how many there were.
pub async fn revoke_devices(db: &Pool, user: &str) -> Result<u64, ClusterError> {
    Ok(db
        .get()
        .await?
        .execute("DELETE FROM devices WHERE name = $1", &[&user])
        .await?)
}

/// `user`'s devices: label, created and last used (ms since the epoch),
/// most recently used first.
pub async fn devices(db: &Pool, user: &str) -> Result<Vec<(String, i64, i64)>, ClusterError> {
    let rows = db
        .get()
        .await?
        .query(
            "SELECT label, created_at, last_used FROM devices
             WHERE name = $1 ORDER BY last_used DESC",
            &[&user],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect())
}

//! Wrong passwords counted across every node: each failure is one
//! transaction on the user's row (locked), so two wrong passwords on one
//! node and one on another block the account, and the block's end is the
//! database's clock plus the block duration, whichever node decided it.

use std::time::Duration;

use deadpool_postgres::Pool;

use crate::cluster::ClusterError;

/// What a login of `user` on node `node` meets, in one round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginState {
    /// Seconds left of the login block, if blocked now.
    pub blocked_for: Option<u64>,
    /// Another node holds the user's lease.
    pub elsewhere: bool,
    /// Wrong passwords are counted for the user (a right one resets them).
    pub failures: bool,
    /// The account's credential as it is now (`None`: no such account), read
    /// in the same round trip: a password changed on another node a moment
    /// ago counts.
    pub credential: Option<String>,
}

pub async fn login_state(db: &Pool, node: &str, user: &str) -> Result<LoginState, ClusterError> {
    let row = super::query_opt_prepared(
        db,
        "SELECT
             (SELECT ceil(extract(epoch FROM blocked_until - now()))::bigint
              FROM login_failures WHERE name = $1 AND blocked_until > now()),
             EXISTS (SELECT 1 FROM leases
                     WHERE name = $1 AND node <> $2 AND expires_at > now()),
             EXISTS (SELECT 1 FROM login_failures WHERE name = $1),
             (SELECT credential FROM accounts WHERE name = $1)",
        &[&user, &node],
    )
    .await?
    .ok_or(ClusterError::Db(
        "no row from a query that returns one".into(),
    ))?;
    Ok(LoginState {
        blocked_for: row.get::<_, Option<i64>>(0).map(|secs| secs.max(1) as u64),
        elsewhere: row.get(1),
        failures: row.get(2),
        credential: row.get(3),
    })
}

/// Seconds left of `user`'s login block, if blocked now.
pub async fn blocked_for(db: &Pool, user: &str) -> Result<Option<u64>, ClusterError> {
    let row = db
        .get()
        .await?
        .query_opt(
            "SELECT ceil(extract(epoch FROM blocked_until - now()))::bigint
             FROM login_failures WHERE name = $1 AND blocked_until > now()",
            &[&user],
        )
        .await?;
    Ok(row.map(|row| row.get::<_, i64>(0).max(1) as u64))
}

/// What a wrong password did.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// Counted; the account is not blocked.
    Counted,
    /// This one blocked the account.
    Blocked,
    /// The account was already blocked (by a failure on another node a
    /// moment ago); not counted.
    AlreadyBlocked,
}

/// Counts a wrong password; the `threshold`th in a row blocks the account
/// for `block`.
pub async fn failed(
    db: &Pool,
    user: &str,
    threshold: u32,
    block: Duration,
) -> Result<Failure, ClusterError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO login_failures (name) VALUES ($1) ON CONFLICT DO NOTHING",
        &[&user],
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT failures, blocked_until IS NOT NULL, COALESCE(blocked_until > now(), false)
             FROM login_failures WHERE name = $1 FOR UPDATE",
            &[&user],
        )
        .await?;
    let (count, had_block, blocked): (i32, bool, bool) = (row.get(0), row.get(1), row.get(2));
    if blocked {
        tx.commit().await?;
        return Ok(Failure::AlreadyBlocked);
    }
    // A block that has run out starts the count afresh.
    let count = if had_block { 1 } else { count + 1 };
    let failure = if count as u32 >= threshold {
        let ms = block.as_millis().min(i64::MAX as u128) as i64;
        tx.execute(
            "UPDATE login_failures
             SET failures = 0, blocked_until = now() + $2 * interval '1 millisecond'
             WHERE name = $1",
            &[&user, &(ms as f64)],
        )
        .await?;
        Failure::Blocked
    } else {
        tx.execute(
            "UPDATE login_failures SET failures = $2, blocked_until = NULL WHERE name = $1",
            &[&user, &count],
        )
        .await?;
        Failure::Counted
    };
    tx.commit().await?;
    Ok(failure)
}

/// A right password ends the run of wrong ones.
pub async fn succeeded(db: &Pool, user: &str) -> Result<(), ClusterError> {
    db.get()
        .await?
        .execute(
            "DELETE FROM login_failures
             WHERE name = $1 AND (blocked_until IS NULL OR blocked_until <= now())",
            &[&user],
        )
        .await?;
    Ok(())
}

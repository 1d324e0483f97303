//! Device tokens on PostgreSQL: the same operations as the SQLite store's
//! ([`crate::store::devices`]), in the other dialect.

use msg_proto::Timestamp;
use tokio_postgres::Transaction;

use crate::store::devices::{Device, DeviceAnswer, DeviceOp, MAX_DEVICES_PER_USER};

pub(super) async fn apply_device_op(
    tx: &Transaction<'_>,
    op: &DeviceOp,
) -> Result<DeviceAnswer, tokio_postgres::Error> {
    Ok(match op {
        DeviceOp::Add {
            user,
            hash,
            label,
            at,
        } => {
            tx.execute(
                "INSERT INTO devices (hash, name, label, created_at, last_used)
                 VALUES ($1, $2, $3, $4, $4)
                 ON CONFLICT (hash) DO UPDATE SET name = $2, label = $3,
                     created_at = $4, last_used = $4",
                &[&&hash[..], user, label, &(*at as i64)],
            )
            .await?;
            tx.execute(
                "DELETE FROM devices WHERE name = $1 AND hash NOT IN (
                     SELECT hash FROM devices WHERE name = $1
                     ORDER BY last_used DESC LIMIT $2)",
                &[user, &MAX_DEVICES_PER_USER],
            )
            .await?;
            DeviceAnswer::Done
        }
        DeviceOp::Use { user, hash, at } => {
            let found = tx
                .execute(
                    "UPDATE devices SET last_used = $3 WHERE hash = $1 AND name = $2",
                    &[&&hash[..], user, &(*at as i64)],
                )
                .await?;
            DeviceAnswer::Found(found == 1)
        }
        DeviceOp::Revoke { user, hash } => {
            let n = tx
                .execute(
                    "DELETE FROM devices WHERE hash = $1 AND name = $2",
                    &[&&hash[..], user],
                )
                .await?;
            DeviceAnswer::Revoked(n)
        }
        DeviceOp::RevokeAll { user } => {
            let n = tx
                .execute("DELETE FROM devices WHERE name = $1", &[user])
                .await?;
            DeviceAnswer::Revoked(n)
        }
        DeviceOp::List { user } => {
            let rows = tx
                .query(
                    "SELECT label, created_at, last_used FROM devices
                     WHERE name = $1 ORDER BY last_used DESC",
                    &[user],
                )
                .await?;
            DeviceAnswer::List(
                rows.into_iter()
                    .map(|row| Device {
                        label: row.get(0),
                        created_at: row.get::<_, i64>(1).max(0) as Timestamp,
                        last_used: row.get::<_, i64>(2).max(0) as Timestamp,
                    })
                    .collect(),
            )
        }
    })
}

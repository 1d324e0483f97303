//! The facts of the live service that every node reads from the database:
//! who is online on which node, which nodes are alive, when users were
//! last seen, the block lists, and the database's clock, which is the
//! service's one clock.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Instant;

use msg_proto::Timestamp;

use crate::cluster::lease::Epoch;
use crate::cluster::{Cluster, ClusterError};

/// A user online on another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elsewhere {
    pub user: String,
    pub node: String,
    pub epoch: Epoch,
}

impl Cluster {
    /// The database's clock, in milliseconds since the Unix epoch: this
    /// node's clock corrected by the offset measured at the last lease
    /// renewal.
    pub fn now_ms(&self) -> Timestamp {
        let local = msg_proto::now_ms() as i64;
        (local + self.clock_offset.load(Ordering::Relaxed)).max(0) as Timestamp
    }

    /// Measures the offset of this node's clock from the database's.
    pub async fn measure_clock(&self) -> Result<(), ClusterError> {
        let client = self.control.get().await?;
        let sent = Instant::now();
        let before = msg_proto::now_ms() as i64;
        let row = client
            .query_one(
                "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
                &[],
            )
            .await?;
        let db_now: i64 = row.get(0);
        // The database read its clock about halfway through the round trip.
        let local = before + sent.elapsed().as_millis() as i64 / 2;
        self.clock_offset.store(db_now - local, Ordering::Relaxed);
        Ok(())
    }

    /// Users online on other nodes now, by their leases.
    pub async fn online_elsewhere(&self) -> Result<Vec<Elsewhere>, ClusterError> {
        let rows = self
            .db
            .get()
            .await?
            .query(
                "SELECT name, node, epoch FROM leases WHERE expires_at > now() AND node <> $1",
                &[&self.node_id],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| Elsewhere {
                user: row.get(0),
                node: row.get(1),
                epoch: row.get(2),
            })
            .collect())
    }

    /// Marks this node alive and returns the nodes alive now (renewed
    /// within a lease's life), this one included.
    pub async fn nodes_alive(&self) -> Result<HashSet<String>, ClusterError> {
        let client = self.control.get().await?;
        client
            .execute(
                "INSERT INTO nodes (id, name, renewed_at) VALUES ($1, $2, now())
                 ON CONFLICT (id) DO UPDATE SET renewed_at = now()",
                &[&self.node_id, &self.node_name],
            )
            .await?;
        // Nodes gone for an hour are forgotten.
        client
            .execute(
                "DELETE FROM nodes WHERE renewed_at < now() - interval '1 hour'",
                &[],
            )
            .await?;
        let rows = client
            .query(
                "SELECT id FROM nodes
                 WHERE renewed_at > now() - $1 * interval '1 millisecond'",
                &[&(self.leases.ttl().as_millis() as f64)],
            )
            .await?;
        Ok(rows.into_iter().map(|row| row.get(0)).collect())
    }

    /// When each user was last seen online.
    pub async fn last_seen(&self) -> Result<HashMap<String, Timestamp>, ClusterError> {
        let rows = self
            .db
            .get()
            .await?
            .query("SELECT name, at FROM last_seen", &[])
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.get(0), row.get::<_, i64>(1).max(0) as Timestamp))
            .collect())
    }

    /// Records that `user` was online at `at` (a later time wins).
    pub async fn record_seen(&self, user: &str, at: Timestamp) -> Result<(), ClusterError> {
        self.db
            .get()
            .await?
            .execute(
                "INSERT INTO last_seen (name, at) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET at = GREATEST(last_seen.at, EXCLUDED.at)",
                &[&user, &(at as i64)],
            )
            .await?;
        Ok(())
    }

    /// Every block list: blocker → the users they block.
    pub async fn blocks(&self) -> Result<HashMap<String, HashSet<String>>, ClusterError> {
        let rows = self
            .db
            .get()
            .await?
            .query("SELECT blocker, blocked FROM blocks", &[])
            .await?;
        let mut blocks: HashMap<String, HashSet<String>> = HashMap::new();
        for row in rows {
            blocks.entry(row.get(0)).or_default().insert(row.get(1));
        }
        Ok(blocks)
    }

    /// Adds or removes one block, durably.
    pub async fn set_block(
        &self,
        blocker: &str,
        blocked: &str,
        blocking: bool,
    ) -> Result<(), ClusterError> {
        let sql = if blocking {
            "INSERT INTO blocks (blocker, blocked) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM blocks WHERE blocker = $1 AND blocked = $2"
        };
        self.db
            .get()
            .await?
            .execute(sql, &[&blocker, &blocked])
            .await?;
        Ok(())
    }
}

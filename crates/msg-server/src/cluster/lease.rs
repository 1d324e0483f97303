//! One login per user across the nodes: a node may hold a user's session
//! only while it holds the user's lease, a row it renews every third of
//! the lease's life. A lease that is not renewed (its node died, or lost
//! the database) runs out, and another node may take it, with a higher
//! epoch: the fencing token that the node's later writes carry, so a node
//! that lost a lease cannot act on it.
//!
//! A node that cannot renew in time ends the sessions it held: another node
//! may already have given the same users new ones.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::cluster::{Cluster, ClusterError};

/// A lease's fencing token: grows with every new holder of a user's lease.
pub type Epoch = i64;

/// The leases this node holds, and those it has given up but not yet
/// written back.
pub struct Leases {
    ttl: Duration,
    /// user → the epoch held, and when it was taken.
    held: Mutex<HashMap<String, (Epoch, Instant)>>,
    /// Bounded by the sessions that ended since the last write (each ends
    /// once); written within moments.
    released: Mutex<Vec<(String, Epoch)>>,
    /// Leases this node lost while their sessions end: the epoch their
    /// logout notice carries (bounded by the sessions here).
    lost: Mutex<HashMap<String, Epoch>>,
    wake: Notify,
}

impl Leases {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            held: Mutex::default(),
            released: Mutex::default(),
            lost: Mutex::default(),
            wake: Notify::new(),
        }
    }

    /// How long a lease lasts unless renewed.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Epoch, Instant)>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn released(&self) -> std::sync::MutexGuard<'_, Vec<(String, Epoch)>> {
        self.released.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lost_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Epoch>> {
        self.lost.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The epoch of `user`'s lease, if this node holds it.
    pub fn epoch(&self, user: &str) -> Option<Epoch> {
        self.held().get(user).map(|(epoch, _)| *epoch)
    }

    /// The epoch of `user`'s session here: its lease's, held or just lost
    /// (what the session's logout notice carries).
    pub fn session_epoch(&self, user: &str) -> Option<Epoch> {
        self.epoch(user)
            .or_else(|| self.lost_map().get(user).copied())
    }

    /// Gives up `user`'s lease (the session ended); written back at once
    /// by [`Cluster::keep_leases`].
    pub fn release(&self, user: &str) {
        self.lost_map().remove(user);
        if let Some((epoch, _)) = self.held().remove(user) {
            self.released().push((user.to_owned(), epoch));
            self.wake.notify_one();
        }
    }

    /// Forgets every lease held (they ran out unrenewed); returns whose.
    fn lose_all(&self) -> Vec<String> {
        let held: Vec<(String, Epoch)> = self
            .held()
            .drain()
            .map(|(user, (epoch, _))| (user, epoch))
            .collect();
        let mut lost = self.lost_map();
        held.into_iter()
            .map(|(user, epoch)| {
                lost.insert(user.clone(), epoch);
                user
            })
            .collect()
    }

    fn ttl_ms(&self) -> f64 {
        self.ttl.as_millis() as f64
    }
}

impl Cluster {
    /// Takes `user`'s lease for this node: `None` while another node holds
    /// it. The caller must have no session of `user` on this node (it may
    /// then take over a lease of its own that it has not written back yet).
    pub async fn acquire_lease(&self, user: &str) -> Result<Option<Epoch>, ClusterError> {
        let row = super::query_opt_prepared(
            &self.db,
            "INSERT INTO leases (name, node, epoch, expires_at)
             VALUES ($1, $2, 1, now() + $3 * interval '1 millisecond')
             ON CONFLICT (name) DO UPDATE
                 SET node = EXCLUDED.node, epoch = leases.epoch + 1,
                     expires_at = EXCLUDED.expires_at
                 WHERE leases.expires_at <= now() OR leases.node = $2
             RETURNING epoch",
            &[&user, &self.node_id, &self.leases.ttl_ms()],
        )
        .await?;
        let epoch = row.map(|row| row.get::<_, Epoch>(0));
        if let Some(epoch) = epoch {
            let taken = (epoch, Instant::now());
            self.leases.held().insert(user.to_owned(), taken);
        }
        Ok(epoch)
    }

    /// Whether another node holds `user`'s lease now (a cheap check before
    /// the password's).
    pub async fn held_elsewhere(&self, user: &str) -> Result<bool, ClusterError> {
        let row = self
            .db
            .get()
            .await?
            .query_opt(
                "SELECT 1 FROM leases WHERE name = $1 AND node <> $2 AND expires_at > now()",
                &[&user, &self.node_id],
            )
            .await?;
        Ok(row.is_some())
    }

    /// Renews this node's leases every third of their life and writes back
    /// the released ones as they come; calls `lost` with the users whose
    /// leases this node no longer holds (their sessions must end). Returns
    /// when `stop` is cancelled, after releasing every lease.
    pub async fn keep_leases(
        &self,
        lost: impl Fn(Vec<String>),
        stop: tokio_util::sync::CancellationToken,
    ) {
        let period = self.leases.ttl / 3;
        // When the leases written by the last renewal run out in the
        // database: counted from before that renewal was sent, so this
        // node never believes in a lease longer than the database does.
        let mut valid_until = Instant::now() + self.leases.ttl;
        let mut next_renewal = tokio::time::Instant::now() + period;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.leases.wake.notified() => {}
                _ = tokio::time::sleep_until(next_renewal) => {}
            }
            // Bounded: a hung database must not hold up the deadline below.
            match tokio::time::timeout(period, self.write_releases()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot release leases yet"),
                Err(_) => tracing::warn!("releasing leases took too long"),
            }
            if tokio::time::Instant::now() >= next_renewal {
                next_renewal = tokio::time::Instant::now() + period;
                let sent = Instant::now();
                match tokio::time::timeout(period, self.renew()).await {
                    Ok(Ok(gone)) => {
                        valid_until = sent + self.leases.ttl;
                        if !gone.is_empty() {
                            tracing::warn!(users = gone.len(), "leases taken by other nodes");
                            lost(gone);
                        }
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot renew leases yet"),
                    Err(_) => tracing::warn!("renewing leases took too long"),
                }
            }
            if Instant::now() >= valid_until {
                // Other nodes may already hold them: stop serving them.
                let gone = self.leases.lose_all();
                if !gone.is_empty() {
                    tracing::error!(users = gone.len(), "leases ran out unrenewed");
                    lost(gone);
                }
            }
        }
        // Shutting down: every session has ended (or is ending); let the
        // users log in elsewhere at once.
        let all: Vec<(String, Epoch)> = self
            .leases
            .held()
            .drain()
            .map(|(user, (epoch, _))| (user, epoch))
            .collect();
        self.leases.released().extend(all);
        if let Err(e) = self.write_releases().await {
            tracing::warn!(error = %e, "leases left to run out");
        }
    }

    /// Expires the released leases that still carry this node's epoch.
    async fn write_releases(&self) -> Result<(), ClusterError> {
        let released = std::mem::take(&mut *self.leases.released());
        if released.is_empty() {
            return Ok(());
        }
        let (names, epochs): (Vec<String>, Vec<Epoch>) = released.iter().cloned().unzip();
        let result = async {
            self.control
                .get()
                .await?
                .execute(
                    "UPDATE leases AS l SET expires_at = now()
                     FROM unnest($2::text[], $3::bigint[]) AS r(name, epoch)
                     WHERE l.name = r.name AND l.epoch = r.epoch AND l.node = $1",
                    &[&self.node_id, &names, &epochs],
                )
                .await?;
            Ok::<_, ClusterError>(())
        }
        .await;
        if result.is_err() {
            // Tried again at the next wake-up; meanwhile they run out.
            self.leases.released().extend(released);
        }
        result
    }

    /// Extends every lease this node still holds; returns the users whose
    /// lease it no longer holds (run out, or taken at a higher epoch).
    async fn renew(&self) -> Result<Vec<String>, ClusterError> {
        // Leases taken while the update runs are not in its answer.
        let started = Instant::now();
        let rows = self
            .control
            .get()
            .await?
            .query(
                "UPDATE leases SET expires_at = now() + $2 * interval '1 millisecond'
                 WHERE node = $1 AND expires_at > now()
                 RETURNING name, epoch",
                &[&self.node_id, &self.leases.ttl_ms()],
            )
            .await?;
        let current: HashMap<String, Epoch> = rows
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let mut held = self.leases.held();
        let gone: Vec<String> = held
            .iter()
            .filter(|(user, (epoch, taken))| *taken < started && current.get(*user) != Some(epoch))
            .map(|(user, _)| user.clone())
            .collect();
        let mut lost = self.leases.lost_map();
        for user in &gone {
            if let Some((epoch, _)) = held.remove(user) {
                lost.insert(user.clone(), epoch);
            }
        }
        Ok(gone)
    }
}

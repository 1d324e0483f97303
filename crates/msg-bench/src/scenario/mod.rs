//! The scenarios. Each starts its own msg-server (and mosquitto), measures,
//! and returns figures for both.

pub mod broadcast;
pub mod cli;
pub mod cluster;
pub mod hold;
pub mod idle;
pub mod idle_tls;
pub mod non_readers;
pub mod offline;
pub mod pairs;
pub mod reconnect;
pub mod storm;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

/// How long the stragglers of a timed run get to arrive after it ends.
pub const DRAIN: Duration = Duration::from_secs(30);

/// Snapshots a delivery count when the timed run ends, while the caller
/// goes on waiting for the stragglers.
pub fn count_at_end(delivered: Arc<AtomicU64>, end: Instant) -> JoinHandle<u64> {
    tokio::spawn(async move {
        sleep_until(end).await;
        delivered.load(Ordering::Relaxed)
    })
}

/// Awaits every task, returning their results or the first failure.
pub async fn join_all<T>(tasks: Vec<JoinHandle<anyhow::Result<T>>>) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::with_capacity(tasks.len());
    let mut first_err = None;
    for task in tasks {
        match task.await.context("a bench task panicked or was cancelled") {
            Ok(Ok(v)) => out.push(v),
            Ok(Err(e)) | Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Aborts the tasks it holds when dropped, so a failed run leaves nothing
/// behind.
pub struct Tasks<T = ()>(pub Vec<JoinHandle<T>>);

impl<T> Drop for Tasks<T> {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

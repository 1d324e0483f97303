//! The retention period: read inbox items older than `retention_days` (by
//! when they were stored here) are deleted at start and then every hour,
//! in small chunks so that nobody waits long for the inbox. Unread items
//! stay whatever their age; `retention_days = 0` keeps everything.

use std::sync::Arc;
use std::time::Duration;

use msg_proto::now_ms;

use crate::state::Shared;

const EVERY: Duration = Duration::from_secs(3600);
/// Items deleted per transaction.
const CHUNK: usize = 1000;
const DAY_MS: u64 = 24 * 3600 * 1000;

/// Applies the retention period until shutdown.
pub async fn run(shared: Arc<Shared>) {
    let days = shared.config.retention_days;
    if days == 0 {
        return;
    }
    // The first tick is at once: at start.
    let mut every = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = every.tick() => purge(&shared, days).await,
        }
    }
}

/// Deletes the read items older than `days`, a chunk at a time.
pub async fn purge(shared: &Shared, days: u32) {
    let before = now_ms().saturating_sub(u64::from(days).saturating_mul(DAY_MS));
    let mut deleted = 0;
    loop {
        let chunk = shared.inbox().purge_read(before, CHUNK);
        match chunk {
            Ok(n) => {
                deleted += n;
                if n < CHUNK {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!("applying the retention period failed: {e}");
                break;
            }
        }
        // Others get at the inbox between chunks.
        tokio::task::yield_now().await;
    }
    if deleted > 0 {
        tracing::info!(
            deleted,
            days,
            "deleted read inbox items past the retention period"
        );
    }
}

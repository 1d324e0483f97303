//! The inbox requests: listing it (then marking it read) and watching it.
//!
//! A listing goes out page by page, so that msgd never holds a large inbox
//! in memory: its size is bounded by one page, whatever the inbox holds.

use futures::{SinkExt, StreamExt};
use msg_proto::control::{InboxItem, ItemKind, Reply, codes};
use tokio::sync::broadcast;

use crate::control::Conn;
use crate::inbox::{InboxError, Listing};
use crate::state::Shared;
use crate::texts;

/// Items read from the inbox and sent at a time.
const PAGE: usize = 500;

/// Streams the items, then marks them read unless `peek`.
pub async fn list(conn: &mut Conn, shared: &Shared, all: bool, peek: bool) -> std::io::Result<()> {
    let start = (|| {
        let Some(account) = shared.inbox_account()? else {
            return Ok(None);
        };
        // The items there now: what arrives meanwhile is for the next one.
        let up_to = shared.inbox().last_id()?;
        Ok::<_, InboxError>(Some((account, up_to)))
    })();
    let (account, up_to) = match start {
        Ok(Some(start)) => start,
        Ok(None) => return conn.send(Reply::End).await,
        Err(e) => return conn.send(unreadable(&e)).await,
    };
    let mut listing = Listing {
        all,
        after: 0,
        up_to,
    };
    loop {
        // The lock is held for one page only.
        let page = shared.inbox().page(&account, listing, PAGE);
        let page = match page {
            Ok(page) => page,
            Err(e) => return conn.send(unreadable(&e)).await,
        };
        let Some(last) = page.last().map(|item| item.id) else {
            break;
        };
        for item in page {
            conn.feed(Reply::Item(item)).await?;
        }
        conn.flush().await?;
        listing.after = last;
    }
    conn.send(Reply::End).await?;
    // Marked read only once the listing reached the CLI.
    if !peek
        && listing.after > 0
        && let Err(e) = shared.inbox().mark_read(&account, listing.after)
    {
        tracing::error!("{e}");
    }
    Ok(())
}

fn unreadable(e: &InboxError) -> Reply {
    tracing::error!("{e}");
    Reply::error(codes::INTERNAL, texts::INBOX_UNREADABLE)
}

/// Streams every new item until the CLI hangs up or msgd stops.
pub async fn watch(mut conn: Conn, shared: &Shared) -> std::io::Result<()> {
    let mut events = shared.events.subscribe();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(item) => {
                    let id = item.id;
                    conn.send(Reply::Item(item)).await?;
                    // Shown is read: `msg inbox` does not print it again.
                    mark_shown(shared, id);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("a watcher fell behind by {n} items");
                    let text = texts::watcher_skipped(n);
                    let note = InboxItem { id: 0, kind: ItemKind::System, from: None, text, at: 0 };
                    conn.send(Reply::Item(note)).await?;
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            // The CLI hung up (or sent something): end the stream.
            _ = conn.next() => return Ok(()),
            () = shared.shutdown.cancelled() => return Ok(()),
        }
    }
}

/// Marks an item `msg watch` has shown read, for the account it belongs to.
fn mark_shown(shared: &Shared, id: u64) {
    let marked = shared.inbox_account().and_then(|account| match account {
        Some(account) => shared.inbox().mark_item_read(&account, id),
        None => Ok(()),
    });
    if let Err(e) = marked {
        tracing::warn!("cannot mark a watched item read: {e}");
    }
}

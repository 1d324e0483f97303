//! The inbox requests: listing it (then marking it read) and watching it.

use futures::{SinkExt, StreamExt};
use msg_proto::control::{InboxItem, ItemKind, Reply, codes};
use tokio::sync::broadcast;

use crate::control::Conn;
use crate::inbox::InboxError;
use crate::state::Shared;
use crate::texts;

/// Streams the items, then marks them read unless `peek`.
pub async fn list(conn: &mut Conn, shared: &Shared, all: bool, peek: bool) -> std::io::Result<()> {
    let listed = (|| {
        let Some(account) = shared.inbox_account()? else {
            return Ok((None, Vec::new()));
        };
        let items = shared.inbox().list(&account, all)?;
        Ok::<_, InboxError>((Some(account), items))
    })();
    let (account, items) = match listed {
        Ok(listed) => listed,
        Err(e) => {
            tracing::error!("{e}");
            return conn
                .send(Reply::error(codes::INTERNAL, texts::INBOX_UNREADABLE))
                .await;
        }
    };
    let last = items.last().map(|item| item.id);
    for item in items {
        conn.feed(Reply::Item(item)).await?;
    }
    conn.send(Reply::End).await?;
    // Marked read only once the listing reached the CLI.
    if let (false, Some(account), Some(last)) = (peek, account, last)
        && let Err(e) = shared.inbox().mark_read(&account, last)
    {
        tracing::error!("{e}");
    }
    Ok(())
}

/// Streams every new item until the CLI hangs up or msgd stops.
pub async fn watch(mut conn: Conn, shared: &Shared) -> std::io::Result<()> {
    let mut events = shared.events.subscribe();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(item) => conn.send(Reply::Item(item)).await?,
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

//! Delivery of the offline queue after login, from the connection's own
//! loop: pages are read from the store one ahead, their messages queued as
//! the client reads, its acks handled meanwhile and its other frames held
//! until the last queued message has gone out. Messages stay in the store
//! until the client acknowledges each one.

use msg_proto::ErrorCode;
use msg_proto::server::ServerFrame;
use tokio::sync::oneshot::error::RecvError;
use tokio::time::Instant;

use crate::connection::{Connection, Phase};
use crate::hub::{DRAIN_PAGE, QueuePage};
use crate::store::{StoreError, StoredMessage};
use crate::texts;

/// Where a login's offline-queue delivery is.
pub(super) enum Drain {
    /// Waiting for a page from the store.
    Waiting(QueuePage),
    /// Queueing a page's messages as the client reads; `next` is the
    /// following page, already asked for, if there may be one.
    Writing {
        messages: std::vec::IntoIter<StoredMessage>,
        next: Option<QueuePage>,
    },
}

impl Connection {
    /// Starts delivering the offline queue from its first page.
    pub(super) fn start_drain(&mut self, first_page: QueuePage) {
        self.drain = Some(Box::new(Drain::Waiting(first_page)));
        self.drain_progress = Instant::now();
    }

    /// Whether the offline queue should be topped up: from half the
    /// high-water mark, so it goes out in large writes rather than a few
    /// lines at a time.
    pub(super) fn drain_due(&self) -> bool {
        matches!(self.drain.as_deref(), Some(Drain::Writing { .. }))
            && self.out.queued() <= self.high_water() / 2
    }

    /// Queues the next messages of the offline queue, oldest first, up to
    /// the high-water mark; asks the store for the next page when one is
    /// used up, and ends the drain after the last. The messages stay in the
    /// store until the client acknowledges each one.
    pub(super) fn step_drain(&mut self) {
        let high_water = self.high_water();
        let Some(Drain::Writing { messages, next }) = self.drain.as_deref_mut() else {
            return;
        };
        while self.out.queued() < high_water {
            let Some(m) = messages.next() else {
                self.drain = next.take().map(|page| Box::new(Drain::Waiting(page)));
                if self.drain.is_none() {
                    self.finish_drain();
                }
                return;
            };
            self.out.reply(&ServerFrame::Message {
                msg_id: m.id,
                from: m.sender,
                text: m.text,
                at: m.at,
                client_id: m.client_id,
            });
        }
    }

    /// A page of the offline queue has been read, or could not be: then
    /// the user is told, and the session goes on without the rest (it
    /// stays queued); one damaged page must not keep a user from logging in.
    pub(super) fn on_page(
        &mut self,
        page: Result<Result<Vec<StoredMessage>, StoreError>, RecvError>,
    ) {
        let messages = match page {
            Ok(Ok(messages)) => messages,
            Ok(Err(e)) => return self.abandon_drain(&e),
            Err(_) => return self.abandon_drain(&StoreError::Closed),
        };
        // Ask for the next page now, so the store reads it while this one
        // is written.
        self.drain_progress = Instant::now();
        let next = match (messages.last(), &self.phase) {
            (Some(last), Phase::Session(user)) if messages.len() == DRAIN_PAGE => {
                Some(self.hub.store.pending_after(user, last.seq, DRAIN_PAGE))
            }
            _ => None,
        };
        self.drain = Some(Box::new(Drain::Writing {
            messages: messages.into_iter(),
            next,
        }));
    }

    fn abandon_drain(&mut self, error: &StoreError) {
        tracing::error!(conn = self.id, error = %error, "cannot read the offline queue");
        self.reply(ServerFrame::error(
            None,
            ErrorCode::QueueUnreadable,
            texts::QUEUE_UNREADABLE,
        ));
        self.drain = None;
        self.finish_drain();
    }

    /// The drain is over: live messages held meanwhile follow, then the
    /// others learn that the user is online.
    fn finish_drain(&self) {
        if let Phase::Session(user) = &self.phase {
            self.hub.finish_drain(user, self.id);
        }
    }
}

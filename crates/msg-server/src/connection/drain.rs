//! Delivery of the offline queue after login, from the connection's own
//! loop: pages are read from the store one ahead, their messages queued as
//! the client reads, its acks handled meanwhile and its other frames held
//! until the last queued message has gone out. Messages stay in the store
//! until the client acknowledges each one.

use crate::connection::clock::Moment;
use msg_proto::ErrorCode;
use msg_proto::server::ServerFrame;
use tokio::sync::oneshot::error::RecvError;

use crate::connection::{Connection, Phase};
use crate::hub::{DRAIN_PAGE, QueuePage};
use crate::store::{StoreError, StoredMessage};
use crate::texts;

/// Where a login's offline-queue delivery is. `after` and `last`: the
/// queue position of the last message taken from the store.
pub(super) enum Drain {
    /// Waiting for a page from the store.
    Waiting { page: QueuePage, after: u64 },
    /// Queueing a page's messages as the client reads; `next` is the
    /// following page, already asked for, if there may be one.
    Writing {
        messages: std::vec::IntoIter<StoredMessage>,
        next: Option<QueuePage>,
        last: u64,
    },
}

impl Connection {
    /// Starts delivering the offline queue from its first page.
    pub(super) fn start_drain(&mut self, first_page: QueuePage) {
        self.drain = Some(Box::new(Drain::Waiting {
            page: first_page,
            after: 0,
        }));
        self.drain_progress = Moment::now();
    }

    /// Reads the offline queue again after the last message delivered from
    /// it: another node stored messages for the user while the session was
    /// live here (cluster mode). Ends like the login's delivery, without
    /// telling anyone again that the user is online.
    pub(super) fn read_queue_again(&mut self) {
        let Phase::Session(user) = &self.phase else {
            return;
        };
        let after = self.drained_to;
        let page = self.hub.store.pending_after(user, after, DRAIN_PAGE);
        self.drain = Some(Box::new(Drain::Waiting { page, after }));
        self.drain_progress = Moment::now();
    }

    /// Whether the offline queue should be topped up: from half the
    /// high-water marks, so it goes out in large writes rather than a few
    /// lines at a time.
    pub(super) fn drain_due(&self) -> bool {
        matches!(self.drain.as_deref(), Some(Drain::Writing { .. }))
            && self.out.queued() <= self.high_water() / 2
            && self.out.queued_bytes() <= self.out.budget() / 4
    }

    /// Queues the next messages of the offline queue, oldest first, up to
    /// the high-water marks; asks the store for the next page when one is
    /// used up, and ends the drain after the last. The messages stay in the
    /// store until the client acknowledges each one.
    pub(super) fn step_drain(&mut self) {
        let high_water = self.high_water();
        let byte_high_water = self.out.budget() / 2;
        let Some(Drain::Writing {
            messages,
            next,
            last,
        }) = self.drain.as_deref_mut()
        else {
            return;
        };
        while self.out.queued() < high_water && self.out.queued_bytes() < byte_high_water {
            let Some(m) = messages.next() else {
                let after = *last;
                self.drained_to = self.drained_to.max(after);
                self.drain = match next.take() {
                    Some(page) => Some(Box::new(Drain::Waiting { page, after })),
                    None => self
                        .finish_drain(Some(after))
                        .map(|page| Box::new(Drain::Waiting { page, after })),
                };
                return;
            };
            *last = m.seq;
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
        let after = match self.drain.as_deref() {
            Some(Drain::Waiting { after, .. }) => *after,
            _ => 0,
        };
        // Ask for the next page now, so the store reads it while this one
        // is written.
        self.drain_progress = Moment::now();
        let next = match (messages.last(), &self.phase) {
            (Some(last), Phase::Session(user)) if messages.len() == DRAIN_PAGE => {
                Some(self.hub.store.pending_after(user, last.seq, DRAIN_PAGE))
            }
            _ => None,
        };
        self.drain = Some(Box::new(Drain::Writing {
            messages: messages.into_iter(),
            next,
            last: after,
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
        self.finish_drain(None);
    }

    /// The store has nothing more after queue position `after` (`None`:
    /// it cannot be read). Unless live messages were stored meanwhile (the
    /// hub then returns the page that holds them), the drain is over: the
    /// live messages held meanwhile follow, then the others learn that the
    /// user is online.
    fn finish_drain(&self, after: Option<u64>) -> Option<QueuePage> {
        match &self.phase {
            Phase::Session(user) => self.hub.finish_drain(user, self.id, after),
            _ => None,
        }
    }
}

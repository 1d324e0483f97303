//! Bursts: what the server pushed that is already here, stored in one
//! transaction (one fsync for the lot) before any of it is acked. A flood
//! then costs a commit per burst, not per item, and the daemon keeps up
//! instead of being dropped as a slow consumer.
//!
//! The commit runs on a blocking thread ([`Storer`]), one at a time and in
//! order, while the link reads and decodes the next burst: the fsync never
//! stalls the runtime, and decoding overlaps it.

use std::sync::Arc;

use msg_proto::control::ItemKind;
use msg_proto::{MsgId, Timestamp};
use tokio::task::JoinHandle;

use crate::inbox::{InboxError, NewItem};
use crate::state::Shared;
use crate::texts;

/// Items in one burst at most, and their text's bytes: bounds the memory a
/// burst holds (two at a time: one committing, one being read) and the time
/// the inbox is locked for one commit.
const MAX_ITEMS: usize = 512;
const MAX_BYTES: usize = 4 * 1024 * 1024;

/// One pushed item waiting for its burst's commit.
pub(super) struct Arrival {
    pub msg_id: Option<MsgId>,
    pub client_id: Option<String>,
    pub kind: ItemKind,
    pub from: String,
    pub text: String,
    pub at: Timestamp,
    /// Raise a notification once it is stored (and new).
    pub notify: bool,
}

#[derive(Default)]
pub(super) struct Burst {
    arrivals: Vec<Arrival>,
    bytes: usize,
}

impl Burst {
    pub fn push(&mut self, arrival: Arrival) {
        self.bytes += arrival.text.len();
        self.arrivals.push(arrival);
    }

    pub fn is_full(&self) -> bool {
        self.arrivals.len() >= MAX_ITEMS || self.bytes >= MAX_BYTES
    }

    fn take(&mut self) -> Vec<Arrival> {
        self.bytes = 0;
        std::mem::take(&mut self.arrivals)
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum StoreError {
    #[error(transparent)]
    Inbox(#[from] InboxError),
    #[error("the inbox writer stopped")]
    Writer,
}

/// A committed burst: its items, and for each whether it was new.
type Committed = (Vec<Arrival>, Result<Vec<bool>, InboxError>);

/// Commits bursts for one account off the runtime, one at a time, in order.
pub(super) struct Storer {
    shared: Arc<Shared>,
    account: String,
    in_flight: Option<JoinHandle<Committed>>,
}

impl Storer {
    pub fn new(shared: Arc<Shared>, account: String) -> Self {
        Self {
            shared,
            account,
            in_flight: None,
        }
    }

    /// Whether a commit is in flight.
    pub fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Starts committing `burst` (emptying it); none may be in flight.
    pub fn start(&mut self, burst: &mut Burst) {
        debug_assert!(!self.busy(), "one commit at a time");
        let arrivals = burst.take();
        if arrivals.is_empty() {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let account = self.account.clone();
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            let items: Vec<NewItem<'_>> = arrivals
                .iter()
                .map(|a| NewItem {
                    msg_id: a.msg_id,
                    client_id: a.client_id.as_deref(),
                    kind: a.kind,
                    from: Some(&a.from),
                    text: &a.text,
                    at: a.at,
                })
                .collect();
            let stored = shared
                .record_batch(&account, &items)
                .map(|stored| stored.iter().map(Option::is_some).collect());
            drop(items);
            (arrivals, stored)
        }));
    }

    /// Waits for the commit in flight (if any), then notifies of its new
    /// items; the message ids to ack (duplicates too: stored earlier). On
    /// error nothing of it is stored, and nothing may be acked.
    /// Cancel-safe: dropped before it is done, the commit stays in flight.
    pub async fn finished(&mut self) -> Result<Vec<MsgId>, StoreError> {
        let Some(in_flight) = self.in_flight.as_mut() else {
            return Ok(Vec::new());
        };
        let joined = in_flight.await;
        self.in_flight = None;
        let (arrivals, stored) = joined.map_err(|_| StoreError::Writer)?;
        let stored = stored?;
        let mut acks = Vec::new();
        for (arrival, new) in arrivals.iter().zip(stored) {
            if arrival.notify && new {
                // A broadcast says so in its title: it was not written to us alone.
                let title = match arrival.kind {
                    ItemKind::Broadcast => texts::broadcast_title(&arrival.from),
                    _ => arrival.from.clone(),
                };
                self.shared.notifier.notify(&title, &arrival.text);
            }
            if arrival.kind == ItemKind::Message
                && let Some(msg_id) = arrival.msg_id
            {
                acks.push(msg_id);
            }
        }
        Ok(acks)
    }

    /// Commits the one in flight and then `burst`, and waits: all the acks.
    pub async fn flush(&mut self, burst: &mut Burst) -> Result<Vec<MsgId>, StoreError> {
        let mut acks = self.finished().await?;
        self.start(burst);
        acks.extend(self.finished().await?);
        Ok(acks)
    }
}

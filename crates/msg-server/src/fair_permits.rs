//! Permits to run password work, shared fairly among client addresses.
//!
//! A FIFO queue lets one address that sends a hundred logins make everyone
//! else wait behind all of them. Here each address waits in its own line
//! and a free permit goes to the next address in turn (round-robin), so an
//! innocent login waits for at most one check per other waiting address
//! plus the checks already running, however many an attacker queued.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::per_address::Key;

pub struct FairPermits {
    at_once: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    running: usize,
    /// Each waiting address's line, first come first served.
    lines: HashMap<Key, VecDeque<oneshot::Sender<FairPermit>>>,
    /// The addresses with someone waiting, in the order they are served.
    turns: VecDeque<Key>,
}

/// The right to run one piece of work; passed on when dropped.
pub struct FairPermit {
    permits: Option<Arc<FairPermits>>,
}

impl FairPermits {
    pub fn new(at_once: usize) -> Arc<Self> {
        Arc::new(Self {
            at_once: at_once.max(1),
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a permit in `from`'s line. Dropping the future gives up
    /// the place (a permit already handed to it moves on).
    pub async fn acquire(self: &Arc<Self>, from: Key) -> FairPermit {
        let granted = {
            let mut state = self.state();
            if state.running < self.at_once && state.turns.is_empty() {
                state.running += 1;
                return FairPermit {
                    permits: Some(self.clone()),
                };
            }
            let (tx, rx) = oneshot::channel();
            let line = state.lines.entry(from).or_default();
            if line.is_empty() {
                state.turns.push_back(from);
            }
            // Re-borrow: `turns` was touched above.
            state.lines.entry(from).or_default().push_back(tx);
            rx
        };
        // Senders are dropped only after sending (a permit), so this waits
        // for one; if it ever failed, running without one is the lesser harm
        // than waiting forever.
        granted.await.unwrap_or(FairPermit { permits: None })
    }

    /// Hands a freed permit to the next waiter in turn, or counts it free.
    fn release(self: &Arc<Self>) {
        loop {
            let next = {
                let mut state = self.state();
                match state.next_waiter() {
                    Some(next) => next,
                    None => {
                        state.running -= 1;
                        return;
                    }
                }
            };
            let permit = FairPermit {
                permits: Some(self.clone()),
            };
            match next.send(permit) {
                Ok(()) => return,
                // That waiter left: the same permit goes to the next one.
                Err(mut unsent) => unsent.permits = None,
            }
        }
    }

    #[cfg(test)]
    fn running(&self) -> usize {
        self.state().running
    }
}

impl State {
    /// The first waiter of the address whose turn it is; that address goes
    /// to the back of the turns if more of its waiters remain.
    fn next_waiter(&mut self) -> Option<oneshot::Sender<FairPermit>> {
        while let Some(key) = self.turns.pop_front() {
            let Some(line) = self.lines.get_mut(&key) else {
                continue;
            };
            let next = line.pop_front();
            if line.is_empty() {
                self.lines.remove(&key);
            } else {
                self.turns.push_back(key);
            }
            if next.is_some() {
                return next;
            }
        }
        None
    }
}

impl Drop for FairPermit {
    fn drop(&mut self) {
        if let Some(permits) = self.permits.take() {
            permits.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use super::*;

    fn key(last: u8) -> Key {
        Key::of(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)))
    }

    #[tokio::test]
    async fn a_newcomer_waits_behind_one_of_an_attackers_hundred() {
        let permits = FairPermits::new(1);
        let running = permits.acquire(key(1)).await;
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut waiting = Vec::new();
        for n in 0..100 {
            let (permits, order_tx) = (permits.clone(), order_tx.clone());
            waiting.push(tokio::spawn(async move {
                let permit = permits.acquire(key(1)).await;
                order_tx.send(format!("attacker {n}")).unwrap();
                drop(permit);
            }));
            tokio::task::yield_now().await;
        }
        let innocent = tokio::spawn({
            let permits = permits.clone();
            async move {
                let permit = permits.acquire(key(2)).await;
                order_tx.send("innocent".to_owned()).unwrap();
                drop(permit);
            }
        });
        tokio::task::yield_now().await;
        drop(running);
        for task in waiting {
            task.await.unwrap();
        }
        innocent.await.unwrap();
        let first = order.recv().await.unwrap();
        let second = order.recv().await.unwrap();
        assert_eq!(
            (first.as_str(), second.as_str()),
            ("attacker 0", "innocent")
        );
        assert_eq!(permits.running(), 0);
    }

    #[tokio::test]
    async fn a_waiter_that_leaves_passes_its_permit_on() {
        let permits = FairPermits::new(1);
        let running = permits.acquire(key(1)).await;
        let leaver = tokio::spawn({
            let permits = permits.clone();
            async move { drop(permits.acquire(key(2)).await) }
        });
        tokio::task::yield_now().await;
        leaver.abort();
        let _ = leaver.await;
        let stayer = tokio::spawn({
            let permits = permits.clone();
            async move { drop(permits.acquire(key(3)).await) }
        });
        tokio::task::yield_now().await;
        drop(running);
        tokio::time::timeout(Duration::from_secs(5), stayer)
            .await
            .expect("the permit reached the stayer")
            .unwrap();
        assert_eq!(permits.running(), 0);
    }
}

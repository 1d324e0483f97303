//! The peer listener: the TCP port other users' daemons dial for private
//! sessions.
//!
//! Its port is advertised to the server at login. It is bound on the
//! unspecified address of the family the server connection uses, because
//! peers dial the address the server sees for us.
//!
//! The port is open to the world, so what a connection may cost is bounded:
//! only a connection from the address the server brokered for a pending
//! session (`caller_ip`) gets a handshake (see `handshake`: Noise, then
//! `hello`); any other is closed at once,
//! without a word and without taking a slot. A handshake has a short
//! deadline, at most [`MAX_PER_ADDRESS`] run at once per address and
//! [`MAX_HANDSHAKES`] in all; refusals being delivered are bounded too.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use msg_proto::peer::PeerKey;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use crate::private::handshake::{self, HANDSHAKE_DEADLINE};
use crate::private::state::{Private, canonical};
use crate::state::lock;

/// Handshakes in progress at once, in all and per address; a caller over
/// either is closed at once.
const MAX_HANDSHAKES: usize = 16;
const MAX_PER_ADDRESS: usize = 2;
/// Refusals being delivered at once (each waits briefly for the caller to
/// read it); beyond that a refused caller is simply closed.
const MAX_REFUSING: usize = 16;
/// Pause after a failed accept, so that a persistent error (e.g. out of
/// file descriptors) does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The listener, bound lazily for the family of the server connection.
pub struct PeerListener {
    private: Arc<Private>,
    /// `--peer-port` / `peer_port` in the config; ephemeral when `None`.
    pinned: Option<u16>,
    bound: tokio::sync::Mutex<Option<Bound>>,
}

struct Bound {
    v6: bool,
    port: u16,
    stop: CancellationToken,
}

impl PeerListener {
    pub fn new(private: Arc<Private>, pinned: Option<u16>) -> Arc<Self> {
        Arc::new(Self {
            private,
            pinned,
            bound: tokio::sync::Mutex::new(None),
        })
    }

    /// Our static public key, advertised with the port.
    pub fn public_key(&self) -> PeerKey {
        PeerKey::new(*self.private.identity.public())
    }

    /// The port to advertise when our end of the server connection is
    /// `local`; binds (or rebinds for another family) on first use. `None`,
    /// logged, when binding fails: the server then refuses private sessions
    /// with us, everything else works.
    pub async fn port_for(&self, local: IpAddr) -> Option<u16> {
        let v6 = match local {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().is_none(),
            IpAddr::V4(_) => false,
        };
        let mut bound = self.bound.lock().await;
        if let Some(b) = bound.as_ref() {
            if b.v6 == v6 {
                return Some(b.port);
            }
            b.stop.cancel();
            *bound = None;
        }
        let port = self.pinned.unwrap_or(0);
        let addr: SocketAddr = if v6 {
            (Ipv6Addr::UNSPECIFIED, port).into()
        } else {
            (Ipv4Addr::UNSPECIFIED, port).into()
        };
        let listener = match TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(
                    "no peer listener on port {port}, private sessions unavailable: {e}"
                );
                return None;
            }
        };
        let port = match listener.local_addr() {
            Ok(addr) => addr.port(),
            Err(e) => {
                tracing::warn!("peer listener: {e}");
                return None;
            }
        };
        tracing::info!(port, "listening for private sessions");
        let stop = self.private.shared.shutdown.child_token();
        tokio::spawn(serve(listener, Arc::clone(&self.private), stop.clone()));
        *bound = Some(Bound { v6, port, stop });
        Some(port)
    }
}

async fn serve(listener: TcpListener, private: Arc<Private>, stop: CancellationToken) {
    let slots = Arc::new(Slots::new(MAX_HANDSHAKES, MAX_PER_ADDRESS));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, from)) => {
                    let ip = canonical(from.ip());
                    // Logged at debug only: a flood must not fill the log.
                    if !private.state().expects_caller_from(ip, Instant::now()) {
                        tracing::debug!(%ip, "peer connection closed: no session expects it");
                        continue;
                    }
                    let Some(slot) = slots.take(ip) else {
                        tracing::debug!(%ip, "peer connection closed: too many handshakes");
                        continue;
                    };
                    let private = Arc::clone(&private);
                    let refusing = Arc::clone(&refusing);
                    tokio::spawn(async move {
                        let admitted = timeout(
                            HANDSHAKE_DEADLINE,
                            handshake::admit_caller(stream, ip, &private),
                        )
                        .await;
                        drop(slot);
                        match admitted {
                            Ok(Ok(admitted)) => handshake::open_inbound(private, admitted).await,
                            Ok(Err(Some(refused))) => {
                                if let Ok(_permit) = refusing.try_acquire() {
                                    refused.send().await;
                                }
                            }
                            Ok(Err(None)) => {}
                            Err(_) => tracing::info!(%ip, "peer connection closed: not through the handshake in time"),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("peer listener: {e}");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            }
        }
    }
}

/// Handshake slots: at most `total` at once, `per_address` per address.
struct Slots {
    total: usize,
    per_address: usize,
    taken: Mutex<HashMap<IpAddr, usize>>,
}

/// One handshake's slot, given back on drop.
struct Slot {
    slots: Arc<Slots>,
    ip: IpAddr,
}

impl Slots {
    fn new(total: usize, per_address: usize) -> Self {
        Self {
            total,
            per_address,
            taken: Mutex::new(HashMap::new()),
        }
    }

    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut taken = lock(&self.taken);
        let in_all: usize = taken.values().sum();
        let here = taken.entry(ip).or_default();
        if in_all >= self.total || *here >= self.per_address {
            return None;
        }
        *here += 1;
        Some(Slot {
            slots: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut taken = lock(&self.slots.taken);
        if let Some(here) = taken.get_mut(&self.ip) {
            *here -= 1;
            if *here == 0 {
                taken.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_per_address_and_in_all() {
        let slots = Arc::new(Slots::new(3, 2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = slots.take(a).unwrap();
        let _a2 = slots.take(a).unwrap();
        assert!(slots.take(a).is_none(), "two per address");
        let b1 = slots.take(b).unwrap();
        assert!(slots.take(b).is_none(), "three in all");
        drop(b1);
        drop(a1);
        let _a3 = slots.take(a).unwrap();
        let _b2 = slots.take(b).unwrap();
        assert!(lock(&slots.taken).values().sum::<usize>() == 3);
    }
}

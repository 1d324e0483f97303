//! The peer listener: the TCP port other users' daemons dial for private
//! sessions.
//!
//! Its port is advertised to the server at login. It is bound on the
//! unspecified address of the family the server connection uses, because
//! peers dial the address the server sees for us. Each caller goes through
//! the handshake; a bounded number of handshakes run at once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::private::handshake;
use crate::private::state::Private;

/// Handshakes in progress at once; more callers wait in the accept queue.
const MAX_HANDSHAKES: usize = 16;
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
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else {
            return;
        };
        tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, from)) => {
                    let private = Arc::clone(&private);
                    tokio::spawn(async move {
                        let admitted = handshake::admit_caller(stream, from, &private).await;
                        drop(permit);
                        if let Some(admitted) = admitted {
                            handshake::open_inbound(private, admitted).await;
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

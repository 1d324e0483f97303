//! The peer listener for private sessions.
//!
//! Its port is advertised to the server at login, which is what lets other
//! users' daemons be brokered to us (`msg private start/accept`). The direct
//! data path (token check, private messages) is the next step; until then a
//! caller is told nothing and disconnected, and `msg private send` says
//! private messaging is not enabled.

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::state::Shared;

/// Binds the listener on every interface (peers dial the address the server
/// sees for us); `None`, logged, when that fails: private sessions are then
/// refused by the server, everything else works.
pub async fn bind() -> Option<TcpListener> {
    match TcpListener::bind(("0.0.0.0", 0)).await {
        Ok(listener) => Some(listener),
        Err(e) => {
            tracing::warn!("no peer listener, private sessions unavailable: {e}");
            None
        }
    }
}

pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tracing::info!("a peer called; direct private messages are not supported yet");
                    drop(stream);
                }
                Err(e) => {
                    tracing::warn!("peer listener: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}

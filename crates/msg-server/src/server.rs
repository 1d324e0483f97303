//! The accept loop, background duties and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connection;
use crate::hub::presence_log::ROUND_STEP;
use crate::hub::{Hub, SWEEP_INTERVAL};
use crate::stream::Stream;
use crate::tls::Tls;

/// How often the credentials file is checked for changes.
const CREDENTIALS_POLL: Duration = Duration::from_secs(1);
/// How often the database gives freed space back, and how much at most
/// (pages of 4 KiB: 16 MiB).
const VACUUM_INTERVAL: Duration = Duration::from_secs(30);
const VACUUM_PAGES: u32 = 4096;
/// How often addresses back within their rate limits are forgotten.
const RATE_PURGE_INTERVAL: Duration = Duration::from_secs(60);
/// How long connections get to say goodbye at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `listener` (over TLS only, with `tls`) until `shutdown` is
/// cancelled, then tells every client, waits for connections to finish
/// (bounded) and flushes the store.
pub async fn run(
    hub: Arc<Hub>,
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    tracker.spawn(sweep(hub.clone(), shutdown.clone()));
    tracker.spawn(presence_rounds(hub.clone(), shutdown.clone()));
    tracker.spawn(watch_credentials(hub.clone(), shutdown.clone()));
    tracker.spawn(vacuum(hub.clone(), shutdown.clone()));
    tracker.spawn(purge_rate_limits(hub.clone(), shutdown.clone()));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Chat frames are small and latency matters more than packing.
                let _ = stream.set_nodelay(true);
                let opened = Instant::now();
                match &tls {
                    None => tracker.spawn(connection::serve(
                        hub.clone(),
                        Stream::Plain(stream),
                        peer,
                        opened,
                    )),
                    Some(tls) => tracker.spawn(serve_tls(
                        hub.clone(),
                        tls.clone(),
                        stream,
                        peer,
                        shutdown.clone(),
                        opened,
                    )),
                };
            }
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    tracing::info!(online = hub.online_count(), "shutting down");
    hub.shut_down();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish in time");
    }
    let store_hub = hub.clone();
    let _ = tokio::task::spawn_blocking(move || store_hub.store.close()).await;
    tracing::info!("store flushed; bye");
}

/// The handshake, then the connection. The handshake has the login
/// deadline, which keeps running from the accept: a client that never
/// finishes it holds nothing for longer than one that never logs in.
async fn serve_tls(
    hub: Arc<Hub>,
    tls: Arc<Tls>,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    shutdown: CancellationToken,
    opened: Instant,
) {
    let deadline = hub.config.login_timeout;
    let handshake = tls.accept(stream, deadline);
    let stream = tokio::select! {
        _ = shutdown.cancelled() => return,
        stream = handshake => stream,
    };
    if let Some(stream) = stream {
        connection::serve(hub, Stream::Tls(stream), peer, opened).await;
    }
}

async fn sweep(hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => hub.sweep(),
        }
    }
}

/// Wakes the sessions for presence notices whose round was put off (see
/// [`crate::hub::presence_log::Rounds`]).
async fn presence_rounds(hub: Arc<Hub>, shutdown: CancellationToken) {
    /// Looks between two trims of what everyone has read.
    const TRIM_EVERY: u32 = 50;
    let mut ticks = tokio::time::interval(ROUND_STEP);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut count = 0u32;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {
                hub.presence_tick();
                count = (count + 1) % TRIM_EVERY;
                if count == 0 {
                    hub.trim_presence();
                }
            }
        }
    }
}

async fn vacuum(hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(VACUUM_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => hub.store.vacuum(VACUUM_PAGES),
        }
    }
}

async fn purge_rate_limits(hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(RATE_PURGE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => hub.purge_rate_limits(),
        }
    }
}

/// Picks up accounts added or changed while the server runs.
async fn watch_credentials(hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(CREDENTIALS_POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let checker = hub.clone();
        match tokio::task::spawn_blocking(move || checker.accounts.reload_if_changed()).await {
            Ok(Ok(Some(report))) => {
                tracing::info!(
                    accounts = report.accounts,
                    "credentials file changed; reloaded"
                );
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "keeping the previous accounts"),
            Err(_) => {}
        }
    }
}

/// The server's signal handlers.
///
/// Installed before readiness is announced: until a handler exists a signal
/// has its default effect, which for SIGHUP and SIGTERM is to kill the
/// process, so a `systemctl reload` right after start would be fatal.
pub struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
                hangup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// SIGTERM or SIGINT (Ctrl-C) cancels `shutdown`; SIGHUP reloads the
    /// credentials file and the TLS certificate (the unit's `ExecReload`).
    pub fn spawn(self, hub: Arc<Hub>, tls: Option<Arc<Tls>>, shutdown: CancellationToken) {
        #[cfg(unix)]
        {
            let Self {
                mut terminate,
                mut interrupt,
                mut hangup,
            } = self;
            let stopper = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = interrupt.recv() => {}
                }
                notify_systemd(&[sd_notify::NotifyState::Stopping]);
                stopper.cancel();
            });
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        received = hangup.recv() => if received.is_none() { return },
                    }
                    let checker = hub.clone();
                    match tokio::task::spawn_blocking(move || checker.accounts.reload()).await {
                        Ok(Ok(report)) => {
                            tracing::info!(
                                accounts = report.accounts,
                                "SIGHUP: credentials reloaded"
                            );
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "SIGHUP: keeping the previous accounts")
                        }
                        Err(_) => {}
                    }
                    if let Some(tls) = &tls {
                        reload_tls(tls).await;
                    }
                }
            });
        }
        #[cfg(not(unix))]
        {
            let _ = (hub, tls);
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                shutdown.cancel();
            });
        }
    }
}

/// Reads the certificate and key again; a pair that does not load keeps
/// the one in use.
#[cfg(unix)]
async fn reload_tls(tls: &Arc<Tls>) {
    let tls = tls.clone();
    match tokio::task::spawn_blocking(move || tls.reload()).await {
        Ok(Ok(fingerprint)) => {
            tracing::info!(%fingerprint, "SIGHUP: TLS certificate reloaded (SHA-256 fingerprint)");
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "SIGHUP: keeping the previous TLS certificate"),
        Err(_) => {}
    }
}

/// Tells systemd (`Type=notify`) about the service's state; a no-op outside
/// systemd.
#[cfg(unix)]
pub fn notify_systemd(state: &[sd_notify::NotifyState<'_>]) {
    let _ = sd_notify::notify(false, state);
}

/// `READY=1`: the server is listening and its signal handlers are in place.
pub fn notify_ready() {
    #[cfg(unix)]
    notify_systemd(&[sd_notify::NotifyState::Ready]);
}

//! Startup and shutdown: paths, lock and socket, inbox, link, control server,
//! signals.

use std::sync::Arc;
use std::time::Duration;

use crate::control::{self, Context};
use crate::device_token::DeviceTokens;
use crate::inbox::{Inbox, InboxError};
use crate::link;
use crate::notifier::Notifier;
use crate::private::keys::KeyError;
use crate::private::{PeerListener, Private};
use crate::retention;
use crate::socket::{self, BindError};
use crate::state::Shared;
use msg_local::config::{Config, ConfigError};
use msg_local::paths::{Paths, PathsError};

/// How long the final logout may take before the daemon exits anyway.
const LOGOUT_ON_EXIT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long private connections get to say goodbye before the daemon exits.
const GOODBYES_ON_EXIT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--no-notify`: overrides the config.
    pub no_notify: bool,
    /// `--peer-port`: overrides the config.
    pub peer_port: Option<u16>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Paths(#[from] PathsError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("cannot create the data directory: {0}")]
    DataDir(std::io::Error),
    #[error(transparent)]
    Inbox(#[from] InboxError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("msgd stopped because {0}")]
    Failed(String),
}

/// Runs the daemon until SIGTERM, Ctrl-C or `msg daemon stop`.
pub async fn run(options: Options) -> Result<(), DaemonError> {
    let paths = Paths::from_env()?;
    let config = Config::load(&paths.config_file)?;
    // Before the socket exists: from then on `msg` treats msgd as started,
    // and a SIGTERM must mean a clean stop, not the default instant death.
    let stop_signals = StopSignals::install()?;
    let bound = socket::bind(&paths).await?;
    msg_local::paths::create_private_dir(&paths.data_dir).map_err(DaemonError::DataDir)?;
    let inbox = Inbox::open(&paths.inbox_path())?;
    let notifier = Notifier::new(config.notify && !options.no_notify);
    let peer_port = options.peer_port.or(config.peer_port);
    let shared = Arc::new(Shared::new(inbox, notifier, config));
    // Half a daemon (a dead link task behind a live control socket) would
    // tell `msg` lies forever; a panic anywhere stops it cleanly instead.
    stop_on_panic(Arc::clone(&shared));
    tokio::spawn(retention::run(Arc::clone(&shared)));
    let private = Private::new(Arc::clone(&shared))?;
    let peers = PeerListener::new(Arc::clone(&private), peer_port);
    let tokens = DeviceTokens::new(paths.tokens_dir());
    let link = link::spawn(
        Arc::clone(&shared),
        Arc::clone(&private),
        Some(peers),
        Some(tokens),
    );
    tracing::info!(
        notifications = shared.notifier.enabled(),
        "msgd {} ready",
        env!("CARGO_PKG_VERSION")
    );

    let context = Context {
        shared: Arc::clone(&shared),
        private: Arc::clone(&private),
        link: link.clone(),
    };
    let server = tokio::spawn(control::serve(bound.listener, context));
    stop_signals.wait(&shared).await?;
    shared.shutdown.cancel();
    // Leave the server cleanly so that the others see us go; the device
    // token is kept for the next start.
    let _ = tokio::time::timeout(LOGOUT_ON_EXIT_TIMEOUT, link.logout(false)).await;
    let _ = server.await;
    // Exiting now would drop the peer connections mid-goodbye: the peers
    // would see them vanish instead of a stop.
    private.wait_for_goodbyes(GOODBYES_ON_EXIT_TIMEOUT).await;
    // `bound._lock` is released when the process exits; the socket file was
    // removed when the listener dropped.
    if let Some(why) = shared.failure() {
        return Err(DaemonError::Failed(why.to_owned()));
    }
    tracing::info!("msgd stopped");
    Ok(())
}

/// Makes any panic stop the daemon: logged, then the same clean stop as
/// SIGTERM, and a non-zero exit (so that a service manager restarts it).
pub fn stop_on_panic(shared: Arc<Shared>) {
    std::panic::set_hook(Box::new(move |info| {
        let location = info
            .location()
            .map_or_else(|| "an unknown place".to_owned(), ToString::to_string);
        let payload = info.payload();
        let what = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        tracing::error!("a task panicked at {location}: {what}; msgd stops");
        shared.fail(format!("a task panicked at {location}"));
    }));
}

/// SIGTERM and SIGINT (Ctrl-C on Windows), installed early, awaited late.
struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<Self, DaemonError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate()).map_err(DaemonError::Signals)?,
                int: signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Until a stop signal or `msg daemon stop`.
    async fn wait(self, shared: &Shared) -> Result<(), DaemonError> {
        #[cfg(unix)]
        {
            let Self { mut term, mut int } = self;
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
                () = shared.shutdown.cancelled() => {}
            }
        }
        #[cfg(not(unix))]
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map_err(DaemonError::Signals)?,
            () = shared.shutdown.cancelled() => {}
        }
        Ok(())
    }
}

//! Serving: the accounts (a credentials file, or a cluster's database),
//! the state directory and its store, TLS, then the listener and the
//! server's tasks until a signal stops them.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{ServeArgs, usage_error};
use crate::accounts::{self, Accounts, LoadReport};
#[cfg(unix)]
use crate::admin;
use crate::cluster::{Cluster, ClusterSpec};
use crate::config::Config;
use crate::hub::Hub;
use crate::server;
use crate::state_dir::StateDir;
use crate::store::Store;
use crate::tls::{Tls, TlsFiles};

/// How long a node's hold on its users' logins lasts unless renewed: a
/// dead node's users may log in elsewhere this long after it stopped
/// renewing.
const LEASE_TTL: Duration = Duration::from_secs(6);

pub(super) fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let config = config_checked(args)?;
    let cluster_spec = cluster_spec(args, &config);
    // A single server's accounts are its file; a node's are in the
    // cluster's database, read once the runtime runs.
    let file_accounts = match cluster_spec {
        Some(_) => None,
        None => {
            if args.allow_register
                && let Err(e) = accounts::create_if_missing(&args.credentials)
            {
                return usage_error(format_args!(
                    "cannot create {}: {e} (see --credentials)",
                    args.credentials.display()
                ));
            }
            match Accounts::load(&args.credentials) {
                Ok(loaded) => Some(loaded),
                Err(e) => {
                    return usage_error(format_args!(
                        "{}: {e} (see --credentials)",
                        args.credentials.display()
                    ));
                }
            }
        }
    };
    let state_dir = match args.state_dir().and_then(|dir| Ok(StateDir::prepare(dir)?)) {
        Ok(dir) => dir,
        Err(e) => return usage_error(e),
    };
    // A node's queue and devices are the cluster's, opened once it has
    // joined; the state directory keeps its lock and admin socket.
    let local_store = match cluster_spec {
        Some(_) => None,
        None => {
            match Store::open_with(state_dir.path(), msg_proto::now_ms(), config.queue_limits) {
                Ok(opened) => Some(opened),
                Err(e) => return usage_error(format_args!("cannot open the state directory: {e}")),
            }
        }
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let files = TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            };
            match Tls::load(files) {
                Ok((tls, fingerprint)) => {
                    tracing::info!(%fingerprint, "TLS certificate loaded (SHA-256 fingerprint)");
                    Some(Arc::new(tls))
                }
                Err(e) => return usage_error(e),
            }
        }
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let (accounts, report, cluster) = match (file_accounts, &cluster_spec) {
            (Some((accounts, report)), _) => (accounts, report, None),
            (None, Some(spec)) => {
                let (cluster, accounts, report) = join_cluster(spec, &args.credentials).await?;
                (accounts, report, Some(cluster))
            }
            (None, None) => unreachable!("accounts come from a file or a cluster"),
        };
        if report.plain > 0 {
            tracing::warn!(
                accounts = report.plain,
                "some accounts have plain-text passwords; convert them with `msg-server passwd USER`"
            );
        }
        let listener = match TcpListener::bind(args.listen_addr()).await {
            Ok(listener) => listener,
            Err(e) => {
                return usage_error(format_args!("cannot listen on {}: {e}", args.listen_addr()));
            }
        };
        let local = listener.local_addr().context("listener has no address")?;
        let (store, snapshot) = match (local_store, &cluster) {
            (Some(opened), _) => opened,
            (None, Some(cluster)) => cluster_store(cluster, config.queue_limits).await?,
            (None, None) => unreachable!("a store is local or the cluster's"),
        };
        let mut hub = Hub::new(config, accounts, store, snapshot);
        if let Some(cluster) = &cluster {
            hub = hub.in_cluster(cluster.clone());
        }
        let hub = Arc::new(hub);
        let leases = cluster.map(|cluster| keep_leases(cluster, hub.clone()));
        let shutdown = CancellationToken::new();
        start_admin_socket(state_dir.path(), &hub, &shutdown);
        server::Signals::install()
            .context("cannot install signal handlers")?
            .spawn(hub.clone(), tls.clone(), shutdown.clone());

        let transport = if tls.is_some() { "TLS" } else { "plain TCP" };
        tracing::info!(accounts = report.accounts, %local, transport, "listening");
        // Tests and scripts read this line to learn an ephemeral port.
        let mut stdout = std::io::stdout();
        let _ = writeln!(stdout, "msg-server listening on {local}");
        let _ = stdout.flush();
        server::notify_ready();
        server::run(hub, listener, tls, shutdown).await;
        if let Some((stop, keeper)) = leases {
            // Every session has ended: give their leases back at once.
            stop.cancel();
            let _ = keeper.await;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Listens for `msg-server revoke`/`passwd` in the state directory; a
/// server without the socket still serves (they then edit the database).
fn start_admin_socket(state_dir: &Path, hub: &Arc<Hub>, shutdown: &CancellationToken) {
    #[cfg(unix)]
    match admin::listen::bind(state_dir) {
        Ok(socket) => {
            tokio::spawn(admin::listen::run(socket, hub.clone(), shutdown.clone()));
        }
        Err(e) => tracing::warn!(error = %e, "no admin socket in the state directory"),
    }
    #[cfg(not(unix))]
    let _ = (state_dir, hub, shutdown);
}

/// The cluster to join, if `--store` names one.
fn cluster_spec(args: &ServeArgs, config: &Config) -> Option<ClusterSpec> {
    let (store, nats) = (args.store.clone()?, args.cluster.clone()?);
    let lease_ttl = args
        .lease_ttl_ms
        .map_or(LEASE_TTL, Duration::from_millis)
        // A dead connection's lease must not outlive the connection.
        .min(config.dead_timeout);
    Some(ClusterSpec {
        store,
        nats,
        node_name: args.node_name.clone(),
        lease_ttl,
    })
}

/// Connects to the cluster's engines and reads its accounts, after adding
/// those of the credentials file that it lacks (a missing file is fine
/// unless it was named on the command line).
async fn join_cluster(
    spec: &ClusterSpec,
    credentials: &Path,
) -> anyhow::Result<(Arc<Cluster>, Accounts, LoadReport)> {
    let cluster = Cluster::connect(spec).await?;
    let seed = credentials.is_file().then_some(credentials);
    if seed.is_none() && credentials != Path::new(super::DEFAULT_CREDENTIALS) {
        anyhow::bail!(
            "{}: no such file (see --credentials)",
            credentials.display()
        );
    }
    let (accounts, report, added) = Accounts::in_database(cluster.db.clone(), seed)
        .await
        .context("cannot read the cluster's accounts")?;
    if let Some(path) = seed {
        tracing::info!(added, file = %path.display(), "imported the accounts the cluster lacked");
    }
    Ok((Arc::new(cluster), accounts, report))
}

/// The cluster's store, and the snapshot the hub starts from: the
/// service's blocks and last-seen times.
async fn cluster_store(
    cluster: &Arc<Cluster>,
    limits: crate::store::QueueLimits,
) -> anyhow::Result<(Store, crate::store::Snapshot)> {
    let (store, mut snapshot) = Store::open_postgres(&cluster.store_url, limits)?;
    snapshot.blocks = cluster.blocks().await?;
    snapshot.last_seen = cluster.last_seen().await?;
    Ok((store, snapshot))
}

/// Renews this node's leases until stopped, ending the sessions whose
/// leases it lost, and follows the other nodes.
fn keep_leases(
    cluster: Arc<Cluster>,
    hub: Arc<Hub>,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    tokio::spawn(crate::hub::remote::follow_cluster(
        hub.clone(),
        cluster.clone(),
        stop.clone(),
    ));
    let stopped = stop.clone();
    let keeper = tokio::spawn(async move {
        cluster
            .keep_leases(|lost| hub.end_lost_sessions(&lost), stopped)
            .await;
    });
    (stop, keeper)
}

fn config_checked(args: &ServeArgs) -> anyhow::Result<Config> {
    if args.timeout_arg.is_some() && args.block_duration_arg.is_none() {
        anyhow::bail!("the classic form takes PORT BLOCK_DURATION TIMEOUT");
    }
    Ok(args.config())
}

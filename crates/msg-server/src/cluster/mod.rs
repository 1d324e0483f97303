//! Cluster mode: several `msg-server` nodes as one service. PostgreSQL
//! holds the facts every node must agree on; NATS carries what is live
//! between the nodes. No consensus of our own: the database's transactions
//! decide every race.
//!
//! - [`schema`]: the migrations, run at start under an advisory lock;
//! - [`accounts`]: the accounts table (import, registration, passwords);
//! - [`lockout`]: wrong passwords counted across nodes, by the database's
//!   clock;
//! - [`lease`]: one login per user across nodes, a lease with a fencing
//!   epoch that the holding node renews;
//! - [`shared`]: who is online where, which nodes are alive, last-seen
//!   times, block lists, and the database's clock;
//! - [`events`]: what the nodes tell each other over NATS.
//!
//! A node is one process: its id is drawn at every start, so a restarted
//! node never mistakes the leases of its previous life for its own.

pub mod accounts;
pub mod events;
pub mod lease;
pub mod lockout;
mod schema;
pub mod shared;

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

/// Connections one node keeps to PostgreSQL at most for its sessions'
/// queries...
const POOL_SIZE: usize = 16;
/// ...and apart from them, for renewing its leases and saying it is alive,
/// so that a crowd of logins can never make those wait.
const CONTROL_POOL_SIZE: usize = 2;
/// How long a query waits for a connection, or a connection to open.
const DB_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid --store address: {0}")]
    StoreUrl(String),
    /// A query or connection failed (the server's own words included).
    #[error("PostgreSQL: {0}")]
    Db(String),
    #[error("PostgreSQL: {0}")]
    Pool(String),
    #[error("cannot migrate the database schema: {0}")]
    Migration(String),
    #[error("NATS at {url}: {error}")]
    Nats { url: String, error: String },
}

impl From<tokio_postgres::Error> for ClusterError {
    /// The driver's own text is only "db error"; the database's message is
    /// in its source.
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => Self::Db(format!("{}: {}", db.severity(), db.message())),
            None => {
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    text.push_str(": ");
                    text.push_str(&cause.to_string());
                    source = cause.source();
                }
                Self::Db(text)
            }
        }
    }
}

impl From<deadpool_postgres::PoolError> for ClusterError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => Self::Pool(other.to_string()),
        }
    }
}

/// Where the shared store lives and how to reach the other nodes.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// `postgres://USER@HOST:PORT/DB`.
    pub store: String,
    /// `nats://HOST:PORT`.
    pub nats: String,
    /// A name for this node in logs [default: its id's first digits].
    pub node_name: Option<String>,
    /// How long a node's hold on its users' logins lasts unless renewed.
    pub lease_ttl: Duration,
}

/// This node's link to the others: the database pool, the NATS client and
/// the node's identity.
pub struct Cluster {
    pub(crate) db: Pool,
    /// Leases, liveness and the clock only (see [`CONTROL_POOL_SIZE`]).
    control: Pool,
    pub nats: async_nats::Client,
    /// Drawn at start: what the leases of this process are held under.
    pub node_id: String,
    pub node_name: String,
    /// The service's id, shared by its nodes (the prefix of every subject).
    pub service: String,
    pub leases: lease::Leases,
    /// Logins, logouts and block changes for the other nodes.
    pub events: events::Publisher,
    /// Notified when events from the other nodes may have been missed
    /// (NATS reconnected, or this node fell behind).
    pub resync: Arc<tokio::sync::Notify>,
    /// The database's clock minus this node's, in milliseconds.
    clock_offset: AtomicI64,
    /// NATS's address without credentials, for errors and the log.
    nats_url: String,
    /// The database's address (for the store's own connection).
    pub store_url: String,
}

impl Cluster {
    /// Connects to both engines, migrates the schema (one node at a time)
    /// and learns the service's id.
    pub async fn connect(spec: &ClusterSpec) -> Result<Self, ClusterError> {
        let db = open_store(&spec.store).await?;
        let control = open_pool(&spec.store, CONTROL_POOL_SIZE)?;
        let service: String = db
            .get()
            .await?
            .query_one("SELECT id FROM service", &[])
            .await?
            .get(0);
        let node_id = format!("{:016x}", msg_proto::MsgId::random_prefix());
        let node_name = spec
            .node_name
            .clone()
            .unwrap_or_else(|| format!("node-{}", &node_id[..8]));
        let resync = Arc::new(tokio::sync::Notify::new());
        let on_event = resync.clone();
        let nats = async_nats::ConnectOptions::new()
            .name(format!("msg-server {node_name}"))
            .connection_timeout(DB_WAIT)
            .subscription_capacity(events::RECEIVE_QUEUE)
            .event_callback(move |event| {
                let resync = on_event.clone();
                async move {
                    tracing::info!(%event, "NATS");
                    if matches!(
                        event,
                        async_nats::Event::Connected | async_nats::Event::SlowConsumer(_)
                    ) {
                        resync.notify_one();
                    }
                }
            })
            .connect(spec.nats.as_str())
            .await
            .map_err(|e| ClusterError::Nats {
                url: describe_nats(&spec.nats),
                error: e.to_string(),
            })?;
        tracing::info!(
            node = %node_name,
            node_id = %node_id,
            store = %describe_store(&spec.store),
            "joined the cluster"
        );
        let cluster = Self {
            leases: lease::Leases::new(spec.lease_ttl),
            events: events::start_publisher(nats.clone(), &service),
            resync,
            clock_offset: AtomicI64::new(0),
            nats_url: describe_nats(&spec.nats),
            store_url: spec.store.clone(),
            control,
            db,
            nats,
            node_id,
            node_name,
            service,
        };
        cluster.measure_clock().await?;
        Ok(cluster)
    }
}

/// A pool of connections to the store, its schema migrated.
pub async fn open_store(url: &str) -> Result<Pool, ClusterError> {
    let pool = open_pool(url, POOL_SIZE)?;
    schema::migrate(url).await?;
    Ok(pool)
}

/// A bounded pool of connections to the store.
fn open_pool(url: &str, size: usize) -> Result<Pool, ClusterError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| ClusterError::StoreUrl(e.to_string()))?;
    config.connect_timeout(DB_WAIT);
    config.application_name("msg-server");
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(DB_WAIT))
        .create_timeout(Some(DB_WAIT))
        .build()
        .map_err(|e| ClusterError::Pool(e.to_string()))
}

/// Runs one statement of the login path on a pooled connection, prepared
/// once per connection: one round trip instead of two (prepare, execute),
/// and a connection held half as long, which is what bounds cluster logins.
pub(crate) async fn query_opt_prepared(
    db: &Pool,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Option<tokio_postgres::Row>, ClusterError> {
    let client = db.get().await?;
    let statement = client.prepare_cached(sql).await?;
    Ok(client.query_opt(&statement, params).await?)
}

/// A NATS address without its user, password or token, for the log.
pub fn describe_nats(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{host}")
        }
        None => url
            .rsplit_once('@')
            .map_or(url, |(_, host)| host)
            .to_owned(),
    }
}

/// The store's address without its password, for the log.
pub fn describe_store(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(config) => {
            let host = config
                .get_hosts()
                .first()
                .map(|host| match host {
                    tokio_postgres::config::Host::Tcp(name) => name.clone(),
                    #[cfg(unix)]
                    tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .unwrap_or_default();
            let port = config.get_ports().first().copied().unwrap_or(5432);
            let db = config.get_dbname().unwrap_or("");
            format!("postgres://{host}:{port}/{db}")
        }
        Err(_) => "postgres://(unparsable)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_reach_the_log_without_credentials() {
        assert_eq!(describe_nats("nats://u:secret@h:4222"), "nats://h:4222");
        assert_eq!(describe_nats("nats://tok@h:4222"), "nats://h:4222");
        assert_eq!(describe_nats("nats://h:4222"), "nats://h:4222");
        assert_eq!(describe_nats("u:p@h:4222"), "h:4222");
        assert_eq!(
            describe_store("postgres://msg:secret@db:5433/msg"),
            "postgres://db:5433/msg"
        );
    }
}

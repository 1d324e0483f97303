//! The command line: which scenarios to run and their sizes.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Pairs,
    Broadcast,
    Idle,
    /// `idle` over TLS, beside Mosquitto with a TLS listener (not in `all`).
    IdleTls,
    Offline,
    Cli,
    /// Every scenario above (storm and non-readers run only by name).
    All,
    /// Login storm against argon2-hashed accounts (msg only).
    Storm,
    /// Recipients that never read while senders flood them (msg only).
    NonReaders,
    /// A server restart with many clients logged in: the time until all are
    /// back, reconnecting as msgd does (not in `all`).
    Reconnect,
    /// One node vs three of a cluster (PostgreSQL and NATS, given with
    /// --store and --nats): pairs, broadcast, and idle sessions over three
    /// nodes beyond one process's file limit (msg only; not in `all`).
    Cluster,
}

impl Scenario {
    /// What `all` (and no argument) runs. The hostile-load scenarios are
    /// left out: they are msg-only and measure robustness, not speed.
    pub const DEFAULT_SET: [Scenario; 5] = [
        Scenario::Pairs,
        Scenario::Broadcast,
        Scenario::Idle,
        Scenario::Offline,
        Scenario::Cli,
    ];
}

/// Load generator for msg-server, side by side with Eclipse Mosquitto.
#[derive(Debug, Parser)]
#[command(name = "msg-bench", version)]
pub struct Cli {
    /// Scenarios to run.
    #[arg(value_enum, default_values_t = [Scenario::All])]
    pub scenarios: Vec<Scenario>,
    /// Print the figures as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The msg-server binary [default: beside this executable].
    #[arg(long, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,
    /// Target a running msg-server instead of starting one. It must know the
    /// bench accounts (see --print-accounts).
    #[arg(long, value_name = "ADDR")]
    pub server: Option<SocketAddr>,
    /// Pid of the server given with --server, to sample its memory.
    #[arg(long, value_name = "PID", requires = "server")]
    pub server_pid: Option<u32>,
    /// The mosquitto binary.
    #[arg(long, value_name = "PATH", default_value = "mosquitto")]
    pub mosquitto_bin: PathBuf,
    /// The mosquitto_pub binary (cli scenario).
    #[arg(long, value_name = "PATH", default_value = "mosquitto_pub")]
    pub mosquitto_pub_bin: PathBuf,
    /// Skip the Mosquitto column.
    #[arg(long)]
    pub no_mqtt: bool,
    /// Print the accounts lines for N bench users (for --server) and exit.
    #[arg(long, value_name = "N")]
    pub print_accounts: Option<usize>,

    /// pairs: sender/recipient pairs.
    #[arg(long, default_value_t = 50)]
    pub pairs: usize,
    /// pairs: messages in flight per pair (sent, not yet confirmed).
    #[arg(long, default_value_t = 32)]
    pub window: usize,
    /// pairs: offered rate (messages/s, all pairs together) of the latency run.
    #[arg(long, default_value_t = 20_000)]
    pub rate: u64,
    /// Seconds each timed run lasts (pairs throughput, pairs latency,
    /// broadcast: 5; storm, non-readers: 10).
    #[arg(long)]
    pub secs: Option<f64>,
    /// broadcast: online recipients.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// broadcast: broadcasts in flight (sent, not yet received by everyone).
    #[arg(long, default_value_t = 16)]
    pub broadcast_window: usize,
    /// idle, idle-tls: logged-in idle sessions; several sizes (comma
    /// separated) run one after another, and idle reports how far their
    /// login rates spread.
    #[arg(long, value_delimiter = ',', default_values_t = [2_500, 5_000, 10_000, 19_000])]
    pub sessions: Vec<usize>,
    /// reconnect: clients logged in when the server restarts.
    #[arg(long, default_value_t = 10_000)]
    pub reconnect_sessions: usize,
    /// offline: messages queued to an offline user.
    #[arg(long, default_value_t = 100_000)]
    pub messages: usize,
    /// offline: sends awaiting their reply (the server allows 1,024).
    #[arg(long, default_value_t = 1000)]
    pub offline_window: usize,
    /// cli: timed runs of each one-shot command.
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
    /// storm: attacker connections, each sending logins one after another.
    #[arg(long, default_value_t = 120)]
    pub attackers: usize,
    /// non-readers: recipients that log in and never read.
    #[arg(long, default_value_t = 16)]
    pub non_readers: usize,
    /// non-readers: connections flooding them (1,024 sends outstanding each).
    #[arg(long, default_value_t = 4)]
    pub flooders: usize,
    /// cluster: the cluster's PostgreSQL database (postgres://USER@HOST:PORT/DB).
    #[arg(long, value_name = "URL", env = "MSG_BENCH_STORE")]
    pub store: Option<String>,
    /// cluster: the cluster's NATS server (nats://HOST:PORT).
    #[arg(long, value_name = "URL", env = "MSG_BENCH_NATS")]
    pub nats: Option<String>,
    /// cluster: idle sessions spread over three nodes.
    #[arg(long, default_value_t = 45_000)]
    pub cluster_sessions: usize,
    /// cluster: idle sessions one bench process holds at most (each process
    /// may have only so many open files).
    #[arg(long, default_value_t = 15_000)]
    pub sessions_per_process: usize,
    /// Internal: hold idle sessions for a parent bench (FIRST:COUNT users
    /// over --hold-servers), reporting on stdout.
    #[arg(long, hide = true, value_name = "FIRST:COUNT")]
    pub hold_users: Option<String>,
    #[arg(long, hide = true, value_delimiter = ',')]
    pub hold_servers: Vec<std::net::SocketAddr>,
}

impl Cli {
    /// `--secs`, or a scenario's own default.
    pub fn secs_or(&self, default: f64) -> f64 {
        self.secs.unwrap_or(default)
    }
}

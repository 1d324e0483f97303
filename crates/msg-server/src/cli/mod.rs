//! The command line: `msg-server [PORT BLOCK_DURATION TIMEOUT]` (the classic
//! positional form), the same as flags, and the subcommands
//! `msg-server passwd USER` and `msg-server cert --name HOST`.

mod serve;
mod subcommands;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::per_address::Rate;
use crate::state_dir;
use crate::store::QueueLimits;

/// The accounts file when none is named.
pub const DEFAULT_CREDENTIALS: &str = "credentials.txt";

/// Exit status for a bad command line or configuration (also clap's).
const EXIT_USAGE: u8 = 2;
/// The longest duration any flag takes: a year, in seconds. Larger values
/// would overflow deadlines (`Instant + Duration`) or wrap lockout times.
pub const MAX_SECS: u64 = 366 * 24 * 3600;

#[derive(Debug, Parser)]
#[command(
    name = "msg-server",
    version,
    about = "The msg messaging server",
    long_about = "The msg messaging server.\n\n\
        Classic form: msg-server PORT BLOCK_DURATION TIMEOUT\n\
        (the same as --port, --block-duration and --timeout).",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add an account or change its password (stored as an argon2id hash).
    Passwd(PasswdArgs),
    /// Revoke all of a user's device tokens and end the user's session
    /// (on the running server; with none, in its database).
    Revoke(RevokeArgs),
    /// Write a self-signed TLS certificate and its key (cert.pem, key.pem)
    /// and print the certificate's SHA-256 fingerprint.
    Cert(CertArgs),
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The account whose devices are signed out.
    pub user: String,
    /// The server's state directory [default: as the server's].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Only list the user's devices (label, last use); revoke nothing.
    #[arg(long)]
    pub list: bool,
    /// A cluster's database (postgres://USER@HOST:PORT/DB): revoke there.
    #[arg(long, value_name = "URL", conflicts_with = "state_dir")]
    pub store: Option<String>,
    /// With --store: the cluster's NATS server, to tell the node holding
    /// the user's session to end it.
    #[arg(long, value_name = "URL", requires = "store")]
    pub cluster: Option<String>,
    /// The port of the server whose state directory is meant (the default
    /// state directory is per port) [default: 4747].
    #[arg(long, default_value_t = msg_proto::DEFAULT_PORT)]
    pub port: u16,
}

#[derive(Debug, Args)]
pub struct CertArgs {
    /// A name clients use for the server: host name or IP address
    /// (repeat for several).
    #[arg(long = "name", value_name = "HOST", required = true)]
    pub names: Vec<String>,
    /// The directory to write cert.pem and key.pem (0600) into.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// The account to add or change.
    pub user: String,
    /// The credentials file to edit.
    #[arg(long, default_value = "credentials.txt")]
    pub credentials: PathBuf,
    /// Read the password from the first line of standard input instead of
    /// prompting on the terminal.
    #[arg(long)]
    pub password_stdin: bool,
    /// The server's state directory, where the user's device tokens are
    /// revoked [default: as the server's].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// The port of the server whose state directory is meant (the default
    /// state directory is per port) [default: 4747].
    #[arg(long, default_value_t = msg_proto::DEFAULT_PORT)]
    pub port: u16,
    /// A cluster's database (postgres://USER@HOST:PORT/DB): change the
    /// account there instead of in a credentials file.
    #[arg(long, value_name = "URL", conflicts_with = "credentials")]
    pub store: Option<String>,
    /// With --store: the cluster's NATS server, to tell the node holding
    /// the user's session to end it.
    #[arg(long, value_name = "URL", requires = "store")]
    pub cluster: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TCP port (classic positional form).
    #[arg(value_name = "PORT", conflicts_with = "port")]
    pub port_arg: Option<u16>,
    /// Seconds an account stays blocked after 3 failed logins (positional).
    #[arg(value_name = "BLOCK_DURATION", conflicts_with = "block_duration",
          value_parser = clap::value_parser!(u64).range(1..=MAX_SECS))]
    pub block_duration_arg: Option<u64>,
    /// Inactivity timeout in seconds, 0 to disable (positional).
    #[arg(value_name = "TIMEOUT", conflicts_with = "timeout",
          value_parser = clap::value_parser!(u64).range(0..=MAX_SECS))]
    pub timeout_arg: Option<u64>,

    /// TCP port to listen on, 0 picks a free one [default: 4747].
    #[arg(long)]
    pub port: Option<u16>,
    /// Seconds an account stays blocked after 3 failed logins [default: 60].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_SECS))]
    pub block_duration: Option<u64>,
    /// Seconds without a user command before a session is logged out;
    /// 0 disables [default: 600].
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=MAX_SECS))]
    pub timeout: Option<u64>,
    /// Speak TLS only, with this certificate chain (PEM; re-read on SIGHUP).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Address to listen on (`::` for IPv6 and IPv4).
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// The accounts file, one `username password` a line (in a cluster:
    /// accounts to add to the database when they are not there yet).
    #[arg(long, default_value = DEFAULT_CREDENTIALS)]
    pub credentials: PathBuf,
    /// Where the database lives; one server at a time may use it
    /// [default: $STATE_DIRECTORY under systemd, else the user's data
    /// directory's msg-server/PORT].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Run as a node of a cluster whose shared database is this PostgreSQL
    /// (postgres://USER@HOST:PORT/DB); needs --cluster.
    #[arg(long, value_name = "URL", requires = "cluster")]
    pub store: Option<String>,
    /// The cluster's NATS server (nats://HOST:PORT); needs --store.
    #[arg(long, value_name = "URL", requires = "store")]
    pub cluster: Option<String>,
    /// This node's name in logs [default: HOSTNAME:PORT].
    #[arg(long, value_name = "NAME", requires = "store")]
    pub node_name: Option<String>,
    /// Let unknown users create an account (`msg register`).
    #[arg(long)]
    pub allow_register: bool,
    /// Frames per second one connection may send before it is slowed down
    /// (0 = unlimited).
    #[arg(long, default_value_t = Config::default().max_frames_per_sec)]
    pub max_rate: u32,
    /// Messages that may wait in one user's offline queue; more are
    /// refused (recipient_queue_full).
    #[arg(long, value_name = "N", default_value_t = QueueLimits::default().max_messages,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_queued_messages: u64,
    /// Registrations one client address may make: COUNT/PERIOD (s, m, h, d),
    /// e.g. 10/h, or off.
    #[arg(long, value_name = "RATE", default_value = "10/h")]
    pub register_rate: Rate,
    /// Wrong passwords one client address may send: COUNT/PERIOD, or off.
    /// Past it, its logins are refused (rate_limited) until it recovers.
    #[arg(long, value_name = "RATE", default_value = "30/h")]
    pub login_fail_rate: Rate,
    /// Bytes of messages that may wait in one user's offline queue (64 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = QueueLimits::default().max_bytes,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_queued_bytes: u64,

    // Tuning for tests; the defaults are the documented behaviour.
    #[arg(long, hide = true, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=MAX_SECS * 1000))]
    pub login_timeout_ms: Option<u64>,
    #[arg(long, hide = true, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=MAX_SECS * 1000))]
    pub dead_timeout_ms: Option<u64>,
    #[arg(long, hide = true, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=MAX_SECS * 1000))]
    pub private_timeout_ms: Option<u64>,
    #[arg(long, hide = true, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=MAX_SECS * 1000))]
    pub ack_timeout_ms: Option<u64>,
    #[arg(long, hide = true, value_name = "N")]
    pub max_outstanding_sends: Option<usize>,
    #[arg(long, hide = true, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(300..=MAX_SECS * 1000))]
    pub lease_ttl_ms: Option<u64>,
    #[arg(long, hide = true, value_name = "MS")]
    pub close_grace_ms: Option<u64>,
    #[arg(long, hide = true, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(4096..=1 << 40))]
    pub connection_budget: Option<u64>,
    /// Test hook (debug builds only): a `send` with this text panics the
    /// sender's connection task.
    #[cfg(debug_assertions)]
    #[arg(long, hide = true, value_name = "TEXT")]
    pub panic_on_text: Option<String>,
}

impl ServeArgs {
    pub fn listen_addr(&self) -> SocketAddr {
        let port = self
            .port_arg
            .or(self.port)
            .unwrap_or(msg_proto::DEFAULT_PORT);
        SocketAddr::new(self.bind, port)
    }

    pub fn config(&self) -> Config {
        let defaults = Config::default();
        let ms =
            |value: Option<u64>, default: Duration| value.map_or(default, Duration::from_millis);
        let block = self.block_duration_arg.or(self.block_duration);
        let timeout = self.timeout_arg.or(self.timeout);
        Config {
            block_duration: block.map_or(defaults.block_duration, Duration::from_secs),
            idle_timeout: match timeout {
                Some(0) => None,
                Some(secs) => Some(Duration::from_secs(secs)),
                None => defaults.idle_timeout,
            },
            allow_register: self.allow_register,
            login_timeout: ms(self.login_timeout_ms, defaults.login_timeout),
            dead_timeout: ms(self.dead_timeout_ms, defaults.dead_timeout),
            private_timeout: ms(self.private_timeout_ms, defaults.private_timeout),
            ack_timeout: ms(self.ack_timeout_ms, defaults.ack_timeout),
            max_frames_per_sec: self.max_rate,
            max_outstanding_sends: self
                .max_outstanding_sends
                .unwrap_or(defaults.max_outstanding_sends),
            close_grace: ms(self.close_grace_ms, defaults.close_grace),
            connection_budget: self
                .connection_budget
                .map_or(defaults.connection_budget, |bytes| bytes as usize),
            #[cfg(debug_assertions)]
            panic_on_text: self.panic_on_text.clone(),
            register_rate: self.register_rate,
            login_fail_rate: self.login_fail_rate,
            queue_limits: QueueLimits {
                max_messages: self.max_queued_messages,
                max_bytes: self.max_queued_bytes,
            },
            ..defaults
        }
    }

    /// `--state-dir`, else systemd's `$STATE_DIRECTORY` (first entry), else
    /// the platform data directory's `msg-server/PORT`.
    pub fn state_dir(&self) -> anyhow::Result<PathBuf> {
        Ok(state_dir::resolve(
            self.state_dir.as_deref(),
            self.listen_addr().port(),
        )?)
    }
}

/// The state directory of the server on `port`, as the server finds it:
/// the same for the server and its subcommands.
pub fn state_dir_or_default(explicit: Option<&Path>, port: u16) -> anyhow::Result<PathBuf> {
    Ok(state_dir::resolve(explicit, port)?)
}

/// Runs what the command line asks for and returns the process's exit code.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Some(Command::Passwd(args)) => subcommands::passwd(&args),
        Some(Command::Revoke(args)) => subcommands::revoke(&args),
        Some(Command::Cert(args)) => subcommands::cert(&args),
        None => serve::serve(&cli.serve),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("msg-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn usage_error(message: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("msg-server: {message}");
    Ok(ExitCode::from(EXIT_USAGE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parses(args: &[&str]) -> bool {
        Cli::try_parse_from(std::iter::once("msg-server").chain(args.iter().copied())).is_ok()
    }

    #[test]
    fn durations_are_bounded() {
        assert!(parses(&["--timeout", "0"]));
        assert!(parses(&["--timeout", &MAX_SECS.to_string()]));
        assert!(!parses(&["--timeout", "18446744073709551615"]));
        assert!(!parses(&["--block-duration", "18446744073709551615"]));
        assert!(!parses(&["--block-duration", "0"]));
        assert!(!parses(&["4747", &(MAX_SECS + 1).to_string(), "10"]));
        assert!(!parses(&["--dead-timeout-ms", "18446744073709551615"]));
    }
}

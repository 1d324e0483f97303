//! `msgd`: parses arguments, sets up logging and runs [`msg_daemon::daemon`].

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// The per-user msg daemon: holds your session, inbox and notifications.
///
/// Normally started by `msg login` or the `msgd.service` user unit.
#[derive(Debug, Parser)]
#[command(name = "msgd", version)]
struct Args {
    /// Do not raise desktop notifications (overrides `notify` in config.toml).
    #[arg(long)]
    no_notify: bool,
    /// TCP port to listen on for private sessions (overrides `peer_port` in
    /// config.toml; default: any free port).
    #[arg(long, value_name = "PORT")]
    peer_port: Option<u16>,
    /// More log output (-v: debug, -vv: trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let level = match args.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("msgd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = msg_daemon::daemon::Options {
        no_notify: args.no_notify,
        peer_port: args.peer_port,
    };
    match runtime.block_on(msg_daemon::daemon::run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("msgd: {e}");
            ExitCode::FAILURE
        }
    }
}

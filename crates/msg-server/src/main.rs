//! The `msg-server` binary: sets up logging (to stderr, `RUST_LOG` or
//! `-v`), then does what the command line asks (see `msg_server::cli`).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

mod allocator;

fn main() -> ExitCode {
    let cli = msg_server::cli::Cli::parse();
    let default_level = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_level))
        // Their debug lines carry query parameters and message payloads
        // (password hashes, message text): never below info.
        .add_directive("tokio_postgres=info".parse().expect("a directive"))
        .add_directive("async_nats=info".parse().expect("a directive"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    msg_server::cli::run(cli)
}

//! `msgd`: parses arguments, sets up logging and runs [`msg_daemon::daemon`].
//!
//! msgd logs to stderr, which `msg` points at `msgd.log`. Logging must never
//! take the daemon down: a full disk makes every write fail, and tracing's
//! fallback for a failed write (`eprintln!`) would panic. So failed writes
//! are dropped, and nothing here uses `eprintln!`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use msg_daemon::cli::Args;
use tracing_subscriber::EnvFilter;

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
        .with_writer(|| Stderr)
        .log_internal_errors(false)
        // A log file gets no colour codes.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            say(&format!("msgd: cannot start the runtime: {e}"));
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
            say(&format!("msgd: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// Stderr for the log, dropping what cannot be written (a full disk).
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// A line on stderr, if it can be written.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

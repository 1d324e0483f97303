//! `msg-bench`: a load generator for `msg-server`, with the same scenarios
//! run against Eclipse Mosquitto so one run prints both columns.
//!
//! See `BENCHMARKS.md` at the repository root for how to run it and what the
//! figures mean. Unix only: it reads `/proc` and manages child processes.

#[cfg(unix)]
mod args;
#[cfg(unix)]
mod bench;
#[cfg(unix)]
mod client;
#[cfg(unix)]
mod compare;
#[cfg(unix)]
mod env;
#[cfg(unix)]
mod launch;
#[cfg(unix)]
mod mqtt;
#[cfg(unix)]
mod payload;
#[cfg(unix)]
mod procfs;
#[cfg(unix)]
mod report;
#[cfg(unix)]
mod scenario;

#[cfg(unix)]
fn main() -> std::process::ExitCode {
    bench::main()
}

#[cfg(not(unix))]
fn main() -> std::process::ExitCode {
    eprintln!("msg-bench runs on Linux only (it reads /proc)");
    std::process::ExitCode::from(2)
}

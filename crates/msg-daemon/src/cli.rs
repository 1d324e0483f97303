//! msgd's command line (the man page `msgd(1)` is generated from it).

use clap::Parser;

/// The per-user msg daemon: holds your session, inbox and notifications.
///
/// Normally started by `msg login` or the `msgd.service` user unit.
#[derive(Debug, Parser)]
#[command(name = "msgd", version)]
pub struct Args {
    /// Do not raise desktop notifications (overrides `notify` in config.toml).
    #[arg(long)]
    pub no_notify: bool,
    /// TCP port to listen on for private sessions (overrides `peer_port` in
    /// config.toml; default: any free port).
    #[arg(long, value_name = "PORT")]
    pub peer_port: Option<u16>,
    /// More log output (-v: debug, -vv: trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

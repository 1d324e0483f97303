//! The run of the chosen scenarios and the printed report.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::args::{Cli, Scenario};
use crate::env::Env;
use crate::report::{self, Figure};
use crate::{launch, procfs, scenario};

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Some(users) = &cli.hold_users {
        return match scenario::hold::main(users, &cli.hold_servers) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("msg-bench (holding sessions): {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(n) = cli.print_accounts {
        for name in launch::user_names(n) {
            println!("{name} {}", launch::PASSWORD);
        }
        return ExitCode::SUCCESS;
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("msg-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let bin_dir = exe
        .parent()
        .context("this executable has no directory")?
        .to_owned();
    let server_bin = cli
        .server_bin
        .clone()
        .unwrap_or_else(|| bin_dir.join("msg-server"));
    procfs::raise_nofile_limit();
    procfs::become_subreaper();
    let wanted = scenarios(&cli.scenarios);
    let env = Env {
        cli,
        server_bin,
        bin_dir,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let mut figures: Vec<Figure> = Vec::new();
    for s in wanted {
        tracing::info!(scenario = ?s, "running");
        let result = runtime.block_on(async {
            match s {
                Scenario::Pairs => scenario::pairs::run(&env).await,
                Scenario::Broadcast => scenario::broadcast::run(&env).await,
                Scenario::Idle => scenario::idle::run(&env).await,
                Scenario::IdleTls => scenario::idle_tls::run(&env).await,
                Scenario::Offline => scenario::offline::run(&env).await,
                Scenario::Cli => scenario::cli::run(&env).await,
                Scenario::Storm => scenario::storm::run(&env).await,
                Scenario::NonReaders => scenario::non_readers::run(&env).await,
                Scenario::Reconnect => scenario::reconnect::run(&env).await,
                Scenario::Cluster => scenario::cluster::run(&env).await,
                Scenario::All => Ok(Vec::new()),
            }
        });
        figures.extend(result.with_context(|| format!("scenario {s:?}"))?);
    }
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    if env.cli.json {
        println!("{}", report::json(&figures)?);
    } else {
        print!("{}", report::table(&figures));
    }
    Ok(())
}

/// The scenarios asked for, in order, `all` standing for the default set,
/// each once.
fn scenarios(asked: &[Scenario]) -> Vec<Scenario> {
    let mut wanted: Vec<Scenario> = Vec::new();
    for &s in asked {
        let expanded: &[Scenario] = if s == Scenario::All {
            &Scenario::DEFAULT_SET
        } else {
            std::slice::from_ref(&s)
        };
        for &one in expanded {
            if !wanted.contains(&one) {
                wanted.push(one);
            }
        }
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_the_default_set_without_the_hostile_scenarios() {
        let all = scenarios(&[Scenario::All]);
        assert_eq!(all, Scenario::DEFAULT_SET);
        assert!(!all.contains(&Scenario::Storm));
        assert!(!all.contains(&Scenario::NonReaders));
        assert_eq!(
            scenarios(&[Scenario::Storm, Scenario::All, Scenario::Pairs]),
            [
                Scenario::Storm,
                Scenario::Pairs,
                Scenario::Broadcast,
                Scenario::Idle,
                Scenario::Offline,
                Scenario::Cli,
            ]
        );
        assert_eq!(scenarios(&[Scenario::NonReaders]), [Scenario::NonReaders]);
    }

    #[test]
    fn no_argument_means_the_default_set() {
        let cli = Cli::try_parse_from(["msg-bench"]).expect("parses");
        assert_eq!(scenarios(&cli.scenarios), Scenario::DEFAULT_SET);
        let cli = Cli::try_parse_from(["msg-bench", "non-readers", "storm"]).expect("parses");
        assert_eq!(
            scenarios(&cli.scenarios),
            [Scenario::NonReaders, Scenario::Storm]
        );
    }
}

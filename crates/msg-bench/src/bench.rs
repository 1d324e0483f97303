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
        .init();
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
    let mut wanted = cli.scenarios.clone();
    if wanted.contains(&Scenario::All) {
        wanted = vec![
            Scenario::Pairs,
            Scenario::Broadcast,
            Scenario::Idle,
            Scenario::Offline,
            Scenario::Cli,
        ];
    }
    wanted.dedup();
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

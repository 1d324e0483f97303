//! A child bench process holding idle sessions for the `cluster` scenario:
//! one process may hold only so many sockets, so the parent spreads its
//! sessions over several of these. The conversation, one line each way:
//! the child prints `logged-in` once all its sessions are live; the parent
//! answers `quiet` once every child is there; the child pings again and
//! prints `quiet` once all its sessions have read everything; it holds the
//! sessions until its standard input closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Semaphore, watch};

use super::Tasks;
use super::idle::{PARALLEL, msg_session, wait_count};
use crate::client;
use crate::launch::user;

/// Runs a holding child: `users` is `FIRST:COUNT`.
pub fn main(users: &str, servers: &[SocketAddr]) -> anyhow::Result<()> {
    let (first, count) = users
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
        .context("--hold-users takes FIRST:COUNT")?;
    if servers.is_empty() {
        bail!("--hold-servers is empty");
    }
    crate::procfs::raise_nofile_limit();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?
        .block_on(hold(first, count, servers))
}

async fn hold(first: usize, count: usize, servers: &[SocketAddr]) -> anyhow::Result<()> {
    let gate = Arc::new(Semaphore::new(PARALLEL));
    let (phase_tx, phase_rx) = watch::channel(0u8);
    let counts = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let index = first + i;
        tasks.push(tokio::spawn(msg_session(
            servers[index % servers.len()],
            client::spread_source(index),
            user(index),
            gate.clone(),
            phase_rx.clone(),
            counts.clone(),
        )));
    }
    let mut parent = BufReader::new(tokio::io::stdin()).lines();
    wait_count(&counts[0], count, &mut tasks, "logins").await?;
    println!("logged-in");
    match parent.next_line().await? {
        Some(line) if line == "quiet" => {}
        _ => bail!("the parent bench went away"),
    }
    phase_tx.send(1).context("phase")?;
    wait_count(&counts[1], count, &mut tasks, "quiet").await?;
    println!("quiet");
    let _held = Tasks(tasks);
    // Until the parent is done measuring (it closes our input).
    while parent.next_line().await?.is_some() {}
    Ok(())
}

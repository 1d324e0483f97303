//! `cluster`: the service on one node and on three nodes of a cluster (the
//! PostgreSQL and NATS given with `--store` and `--nats`), msg only:
//! - pairs' closed-loop throughput and broadcast deliveries, the users
//!   spread over the nodes in turn (so most pairs cross nodes);
//! - idle sessions spread over three nodes, more than one process may hold
//!   (`--cluster-sessions`, 45,000 by default): the bench spreads its own
//!   clients over child processes (`hold`), each holding at most
//!   `--sessions-per-process`. Logins per second until all are live, and
//!   the nodes' memory per session.
//!
//! Each configuration uses users of its own, so leases left by the one
//! before (nodes are killed, not stopped) never refuse a login.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::future::try_join_all;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::time::Instant;

use super::idle::{SETTLE, SETUP};
use super::{broadcast, pairs};
use crate::client;
use crate::env::Env;
use crate::launch::{MsgServer, plain_accounts, user};
use crate::report::Figure;

/// The configurations compared.
const NODE_COUNTS: [usize; 2] = [1, 3];

pub async fn run(env: &Env) -> anyhow::Result<Vec<Figure>> {
    let c = &env.cli;
    let (Some(store), Some(nats)) = (c.store.clone(), c.nats.clone()) else {
        bail!("the cluster scenario needs --store postgres://… and --nats nats://…");
    };
    let pairs = c.pairs.max(1);
    let m = c.subscribers.max(1);
    let secs = c.secs_or(5.0);
    // Per configuration: the pairs, the broadcast's sender and recipients,
    // and one watcher per node.
    let per_config = 2 * pairs + m + 1 + 3;
    let idle_first = per_config * NODE_COUNTS.len();
    let sessions = c.cluster_sessions;
    let accounts = plain_accounts(idle_first + sessions);
    let mut figures = Vec::new();
    for (k, nodes) in NODE_COUNTS.into_iter().enumerate() {
        let base = k * per_config;
        let servers = start_nodes(env, &accounts, &store, &nats, nodes, &format!("c{nodes}"))?;
        let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        let watchers = base + 2 * pairs + m + 1;
        let throughput = pairs::throughput_over(
            &addrs,
            base,
            pairs,
            c.window,
            secs,
            known_everywhere(&addrs, watchers, base, 2 * pairs),
        )
        .await
        .with_context(|| format!("pairs over {nodes} node(s)"))?;
        let deliveries = broadcast::msg_run(
            &addrs,
            base + 2 * pairs,
            m,
            c.broadcast_window,
            Duration::from_secs_f64(secs),
        )
        .await
        .with_context(|| format!("broadcast over {nodes} node(s)"))?;
        let peak = servers.iter().filter_map(MsgServer::peak_kib).sum();
        figures.push(figure(
            format!("{pairs} pairs, window {}, {nodes} node(s)", c.window),
            "msg/s",
            throughput,
            peak,
        ));
        figures.push(figure(
            format!("broadcast to {m} online, {nodes} node(s)"),
            "deliveries/s",
            deliveries,
            peak,
        ));
    }
    if sessions > 0 {
        let servers = start_nodes(env, &accounts, &store, &nats, 3, "idle")?;
        let (rate, bytes) = match idle_over(env, &servers, idle_first, sessions).await {
            Ok(measured) => measured,
            Err(e) => {
                let logs: Vec<String> = servers
                    .iter()
                    .map(|s| s.log_tail(15).unwrap_or_default())
                    .collect();
                return Err(e.context(format!("the nodes' last words:\n{}", logs.join("\n--\n"))));
            }
        };
        let peak = servers.iter().filter_map(MsgServer::peak_kib).sum();
        figures.push(figure(
            format!("sessions set up over 3 nodes ({sessions})"),
            "logins/s",
            rate,
            peak,
        ));
        let mut memory = figure(
            format!("memory per idle session over 3 nodes ({sessions})"),
            "bytes",
            bytes,
            peak,
        );
        memory.higher_is_better = Some(false);
        figures.push(memory);
    }
    Ok(figures)
}

fn figure(name: String, unit: &'static str, value: f64, peak_kib: u64) -> Figure {
    Figure::new("cluster", name, unit)
        .values(Some(value), None)
        .rss(Some(peak_kib), None)
}

/// Starts `count` nodes of the cluster at once, each knowing `accounts`.
fn start_nodes(
    env: &Env,
    accounts: &str,
    store: &str,
    nats: &str,
    count: usize,
    name: &str,
) -> anyhow::Result<Vec<MsgServer>> {
    (0..count)
        .map(|i| {
            let node = format!("{name}-{i}");
            MsgServer::start_with(
                env,
                accounts,
                &["--store", store, "--cluster", nats, "--node-name", &node],
            )
        })
        .collect()
}

/// Waits until every node lists the `users` users from `first` as online
/// (each node learns of the others' logins over NATS), asking through one
/// watcher session per node (users `watchers..`).
async fn known_everywhere(
    addrs: &[SocketAddr],
    watchers: usize,
    first: usize,
    users: usize,
) -> anyhow::Result<()> {
    let wanted: Vec<String> = (first..first + users).map(user).collect();
    let deadline = Instant::now() + SETUP;
    for (i, addr) in addrs.iter().enumerate() {
        let mut conn = client::login(*addr, &user(watchers + i)).await?;
        loop {
            let online = client::who(&mut conn).await?;
            if wanted.iter().all(|name| online.contains(name)) {
                break;
            }
            if Instant::now() > deadline {
                bail!("node {addr} never learned who is online elsewhere");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// A child bench process holding sessions; killed when dropped.
struct Holder {
    child: Child,
    input: Option<ChildStdin>,
    output: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Holder {
    fn spawn(env: &Env, servers: &str, first: usize, count: usize) -> anyhow::Result<Self> {
        let mut child = Command::new(crate::launch::sibling(env, "msg-bench"))
            .args(["--hold-users", &format!("{first}:{count}")])
            .args(["--hold-servers", servers])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start a holding bench process")?;
        let input = child.stdin.take();
        let output = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        Ok(Self {
            child,
            input,
            output,
        })
    }

    async fn expect(&mut self, word: &str) -> anyhow::Result<()> {
        match tokio::time::timeout(SETUP, self.output.next_line()).await {
            Ok(Ok(Some(line))) if line == word => Ok(()),
            Ok(Ok(other)) => bail!("a holding process said {other:?}, not {word}"),
            Ok(Err(e)) => Err(e).context("reading a holding process"),
            Err(_) => bail!("a holding process did not say {word} in time"),
        }
    }

    async fn say(&mut self, word: &str) -> anyhow::Result<()> {
        let input = self.input.as_mut().context("input closed")?;
        input.write_all(format!("{word}\n").as_bytes()).await?;
        Ok(input.flush().await?)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.input.take();
        let _ = self.child.start_kill();
    }
}

/// Sets up `sessions` idle sessions (users `first..`) over the nodes from
/// holding processes; returns logins/s and the nodes' bytes per session.
async fn idle_over(
    env: &Env,
    servers: &[MsgServer],
    first: usize,
    sessions: usize,
) -> anyhow::Result<(f64, f64)> {
    let list = servers
        .iter()
        .map(|s| s.addr.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let before: u64 = servers.iter().filter_map(MsgServer::rss_kib).sum();
    let per_process = env.cli.sessions_per_process.max(1);
    let started = Instant::now();
    let mut holders = Vec::new();
    let mut next = first;
    let mut left = sessions;
    while left > 0 {
        let count = left.min(per_process);
        holders.push(Holder::spawn(env, &list, next, count)?);
        next += count;
        left -= count;
    }
    try_join_all(holders.iter_mut().map(|h| h.expect("logged-in"))).await?;
    let secs = started.elapsed().as_secs_f64();
    for holder in &mut holders {
        holder.say("quiet").await?;
    }
    try_join_all(holders.iter_mut().map(|h| h.expect("quiet"))).await?;
    tokio::time::sleep(SETTLE).await;
    let after: u64 = servers.iter().filter_map(MsgServer::rss_kib).sum();
    let bytes = after.saturating_sub(before) as f64 * 1024.0 / sessions as f64;
    drop(holders);
    Ok((sessions as f64 / secs, bytes))
}

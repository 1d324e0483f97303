//! `cli`: wall time of one `msg send` process (start → msgd → server →
//! recipient's ack → exit), beside a trivial process start (`/bin/true`) and
//! `mosquitto_pub -q 1` doing the same one-shot (exit after the broker's
//! PUBACK).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use msg_proto::server::{ClientFrame, ServerFrame};
use rumqttc::QoS;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::time::Instant;

use super::Tasks;
use crate::compare::compare;
use crate::env::Env;
use crate::launch::{self, Mosquitto, MsgServer, PASSWORD, user};
use crate::report::Figure;
use crate::{client, mqtt, payload, procfs};

/// Bound on one process run.
const RUN: Duration = Duration::from_secs(20);
/// Untimed runs first (page cache, msgd's first connection).
const WARMUP: usize = 3;

pub async fn run(env: &Env) -> anyhow::Result<Vec<Figure>> {
    let runs = env.cli.runs.max(1);
    let trivial = time_runs(runs, || Command::new("/bin/true")).await?;

    let sends = compare(
        env,
        2,
        async |server| {
            let measured = msg_runs(env, &server, runs).await?;
            Ok(server.finish(measured))
        },
        async |broker| {
            let measured = mqtt_runs(env, &broker, runs).await?;
            Ok(broker.finish(measured))
        },
    )
    .await?;
    let mut figures = Vec::new();
    for (i, q) in ["p50", "p99"].iter().enumerate() {
        figures.push(
            sends
                .figure(
                    "cli",
                    format!("one-shot send {q} (msg send / mosquitto_pub -q 1)"),
                    "ms",
                    |p| Some(p[i]),
                )
                .lower_is_better(),
        );
    }
    for (i, q) in ["p50", "p99"].iter().enumerate() {
        figures.push(
            Figure::new("cli", format!("process start {q} (/bin/true)"), "ms")
                .lower_is_better()
                .values(Some(trivial[i]), Some(trivial[i])),
        );
    }
    Ok(figures)
}

/// p50 and p99 wall time, in ms, of `runs` runs (after a warm-up) of a
/// command that must succeed.
async fn time_runs(runs: usize, make: impl Fn() -> Command) -> anyhow::Result<[f64; 2]> {
    let mut samples = Vec::with_capacity(runs);
    for i in 0..WARMUP + runs {
        let mut cmd = make();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let started = Instant::now();
        let output = tokio::time::timeout(RUN, cmd.output())
            .await
            .context("a run did not finish in time")?
            .context("cannot run the command")?;
        let took = started.elapsed();
        if !output.status.success() {
            bail!(
                "the command failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        if i >= WARMUP {
            samples.push(took.as_nanos() as u64);
        }
    }
    let p = payload::percentiles(&mut samples).context("no samples")?;
    // percentiles() gives µs.
    Ok([p[0] / 1000.0, p[1] / 1000.0])
}

/// One user's environment for `msg`/`msgd`: its own HOME, XDG dirs and
/// socket dir, so nothing of the person running the bench is touched.
struct UserEnv {
    dir: tempfile::TempDir,
    server: String,
}

impl UserEnv {
    fn new(server: String) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("cannot create a temp dir")?;
        let config = dir.path().join("config").join("msg");
        std::fs::create_dir_all(&config)?;
        // No desktop notifications from a benchmark.
        std::fs::write(config.join("config.toml"), "notify = false\n")?;
        std::fs::create_dir_all(dir.path().join("home"))?;
        Ok(Self { dir, server })
    }

    fn command(&self, program: &Path) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", d.join("home"))
            .env("XDG_CONFIG_HOME", d.join("config"))
            .env("XDG_DATA_HOME", d.join("data"))
            .env("XDG_STATE_HOME", d.join("state"))
            .env("XDG_CACHE_HOME", d.join("cache"))
            .env("XDG_RUNTIME_DIR", d.join("xdg-run"))
            .env("MSG_RUNTIME_DIR", d.join("sock"))
            .env("MSG_SERVER", &self.server);
        cmd
    }
}

/// Kills (and reaps, as subreaper) the msgd that `msg login` started.
struct Daemon(i32);

impl Drop for Daemon {
    fn drop(&mut self) {
        procfs::kill_and_reap(self.0);
    }
}

async fn msg_runs(env: &Env, server: &MsgServer, runs: usize) -> anyhow::Result<[f64; 2]> {
    let msg = launch::sibling(env, "msg");
    if !launch::exists(&msg) || !launch::exists(&launch::sibling(env, "msgd")) {
        bail!(
            "msg and msgd must be built beside msg-bench (cargo build --release -p msg-cli -p msg-daemon)"
        );
    }
    // The recipient: a protocol client that acknowledges every message.
    let peer = client::login(server.addr, &user(1)).await?;
    let _acker = Tasks(vec![tokio::spawn(ack_everything(peer))]);

    let user_env = UserEnv::new(server.addr.to_string())?;
    let mut login = user_env.command(&msg);
    login
        .args(["login", &user(0), "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = login.spawn().context("cannot run msg login")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(format!("{PASSWORD}\n").as_bytes()).await?;
    }
    let output = tokio::time::timeout(RUN, child.wait_with_output())
        .await
        .context("msg login did not finish in time")??;
    let daemon = Daemon(daemon_pid(&user_env, &msg).await.unwrap_or(0));
    if !output.status.success() {
        bail!(
            "msg login failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let to = user(1);
    let times = time_runs(runs, || {
        let mut cmd = user_env.command(&msg);
        cmd.args(["send", &to, "hello from the bench"]);
        cmd
    })
    .await;
    // Log out cleanly; the guard kills msgd whatever happens.
    let mut stop = user_env.command(&msg);
    stop.args(["daemon", "stop"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let _ = tokio::time::timeout(RUN, stop.status()).await;
    drop(daemon);
    times
}

async fn daemon_pid(user_env: &UserEnv, msg: &Path) -> Option<i32> {
    let mut cmd = user_env.command(msg);
    cmd.args(["status", "--json"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(RUN, cmd.output()).await.ok()?.ok()?;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    status["pid"].as_i64().map(|pid| pid as i32)
}

/// Acknowledges each message, as a recipient's client does.
async fn ack_everything(conn: client::Conn) {
    let (mut sink, mut stream) = conn.split();
    while let Some(frame) = stream.next().await {
        if let Ok(Ok(ServerFrame::Message { msg_id, .. })) = frame {
            if sink.send(ClientFrame::Ack { msg_id }).await.is_err() {
                return;
            }
        } else if frame.is_err() {
            return;
        }
    }
}

async fn mqtt_runs(env: &Env, broker: &Mosquitto, runs: usize) -> anyhow::Result<[f64; 2]> {
    const TOPIC: &str = "bench/cli";
    // A subscriber online, as the msg recipient is.
    let (sub, mut events) = mqtt::connect(mqtt::options("cli-sub", broker.port, true), 16).await?;
    mqtt::subscribe(&sub, &mut events, TOPIC, QoS::AtLeastOnce).await?;
    let _driver = Tasks(vec![tokio::spawn(async move {
        while events.poll().await.is_ok() {}
    })]);
    let port = broker.port.to_string();
    let result = time_runs(runs, || {
        let mut cmd = Command::new(&env.cli.mosquitto_pub_bin);
        cmd.args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-t", TOPIC])
            .args(["-m", "hello from the bench"]);
        cmd
    })
    .await;
    drop(sub);
    result
}

//! `idle`: K logged-in sessions doing nothing; the server's resident memory
//! per session (growth over the freshly started server, divided by K).
//!
//! msg announces every login to everyone online, so K logins push about
//! K²/2 presence events. Before measuring, each client pings twice — once
//! after its own login, once after all logins — and the pong (queued behind
//! everything sent to it before) says its queue has drained. A login holds
//! its place among the PARALLEL ones until the first pong: only then is the
//! session live (the server answers requests after the offline queue and
//! the announcement).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use msg_proto::PING_EVERY;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use super::Tasks;
use crate::compare::{Run, compare};
use crate::env::Env;
use crate::launch::{Mosquitto, MsgServer, user};
use crate::report::Figure;
use crate::{client, mqtt, procfs};

/// Bound on setting up all sessions.
pub(super) const SETUP: Duration = Duration::from_secs(300);
/// Connections being set up at once.
pub(super) const PARALLEL: usize = 128;
/// Time for the servers' memory to settle before it is read: tokio's
/// blocking-pool threads (password checks at login) exit after 10 s idle,
/// and msg-server's allocator hands freed pages back within a second.
pub(super) const SETTLE: Duration = Duration::from_secs(11);

/// One size's login rates: msg's, Mosquitto's.
type Rates = (Option<f64>, Option<f64>);

pub async fn run(env: &Env) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let mut rates: Vec<Rates> = Vec::new();
    for &k in &env.cli.sessions {
        let (memory, rate) = run_one(env, k.max(1)).await?;
        rates.push((rate.msg, rate.mosquitto));
        figures.extend([memory, rate]);
    }
    if rates.len() > 1 {
        // How far the login rates at the different sizes spread: a server
        // whose logins slow down as more users are online shows it here.
        let spread = |pick: fn(&Rates) -> Option<f64>| {
            let values: Option<Vec<f64>> = rates.iter().map(pick).collect();
            let values = values?;
            let max = values.iter().copied().fold(f64::MIN, f64::max);
            let min = values.iter().copied().fold(f64::MAX, f64::min);
            (min > 0.0).then(|| max / min)
        };
        figures.push(
            Figure::new(
                "idle",
                "login rate spread (fastest / slowest size)",
                "ratio",
            )
            .values(spread(|r| r.0), spread(|r| r.1))
            .lower_is_better(),
        );
    }
    Ok(figures)
}

/// The memory and login-rate figures for `k` sessions.
async fn run_one(env: &Env, k: usize) -> anyhow::Result<(Figure, Figure)> {
    // Each session costs the bench a socket (and the server one more).
    let fds = procfs::nofile_limit() as usize;
    if k + 64 > fds {
        bail!("{k} sessions need more open files than the limit ({fds}); lower --sessions");
    }
    let runs = compare(
        env,
        k,
        async |server| {
            let (measured, sessions) = msg_run(&server, k).await;
            // Stop the server before the sessions close, so it does not
            // announce K logouts to everyone.
            let Run { peak_kib, .. } = server.finish(());
            drop(sessions);
            Ok(Run {
                value: measured?,
                peak_kib,
            })
        },
        async |broker| {
            let (measured, sessions) = mqtt_run(&broker, k).await;
            let Run { peak_kib, .. } = broker.finish(());
            drop(sessions);
            Ok(Run {
                value: measured?,
                peak_kib,
            })
        },
    )
    .await?;
    Ok((
        runs.figure(
            "idle",
            format!("memory per idle session ({k})"),
            "bytes",
            |m| m.0,
        )
        .lower_is_better(),
        runs.figure("idle", format!("sessions set up ({k})"), "logins/s", |m| {
            Some(k as f64 / m.1)
        }),
    ))
}

pub(super) fn per_session(before: Option<u64>, after: Option<u64>, k: usize) -> Option<f64> {
    Some((after?.saturating_sub(before?) * 1024) as f64 / k as f64)
}

/// Waits until `count` reaches `k`, failing fast when a task ended early.
pub(super) async fn wait_count(
    count: &AtomicUsize,
    k: usize,
    tasks: &mut [tokio::task::JoinHandle<anyhow::Result<()>>],
    what: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETUP;
    while count.load(Ordering::Relaxed) < k {
        if let Some(t) = tasks.iter_mut().find(|t| t.is_finished()) {
            return match t.await {
                Ok(Err(e)) => Err(e).context(format!("a session failed ({what})")),
                _ => bail!("a session ended early ({what})"),
            };
        }
        if Instant::now() >= deadline {
            bail!(
                "{what}: only {} of {k} within {SETUP:?}",
                count.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Memory per session and setup time; the sessions, to close after the server.
pub(super) type Measured = (
    anyhow::Result<(Option<f64>, f64)>,
    Tasks<anyhow::Result<()>>,
);

async fn msg_run(server: &MsgServer, k: usize) -> Measured {
    let addr = server.addr;
    measure_sessions(server, k, |i, gate, phase, counts| {
        msg_session(addr, client::spread_source(i), user(i), gate, phase, counts)
    })
    .await
}

/// Starts `k` idle sessions (`session` makes the i-th, given the gate, the
/// phase and the counts it reports to), times their logins, lets them go
/// quiet and reads the server's memory per session. Shared with
/// `idle-tls`, whose sessions differ only in their transport.
pub(super) async fn measure_sessions<F, Fut>(server: &MsgServer, k: usize, session: F) -> Measured
where
    F: Fn(usize, Arc<Semaphore>, watch::Receiver<u8>, Arc<[AtomicUsize; 2]>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let before = server.rss_kib();
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(PARALLEL));
    let (phase_tx, phase_rx) = watch::channel(0u8);
    let counts = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let mut tasks = Vec::with_capacity(k);
    for i in 0..k {
        tasks.push(tokio::spawn(session(
            i,
            gate.clone(),
            phase_rx.clone(),
            counts.clone(),
        )));
    }
    let result = async {
        wait_count(&counts[0], k, &mut tasks, "logins").await?;
        let secs = started.elapsed().as_secs_f64();
        phase_tx.send(1).context("phase")?;
        wait_count(&counts[1], k, &mut tasks, "quiet").await?;
        tokio::time::sleep(SETTLE).await;
        Ok::<_, anyhow::Error>((per_session(before, server.rss_kib(), k), secs))
    }
    .await;
    (result, Tasks(tasks))
}

/// One idle session: log in, ping, wait for the all-clear, ping again,
/// then read (and discard) whatever comes until aborted.
pub(super) async fn msg_session(
    addr: SocketAddr,
    from: std::net::IpAddr,
    name: String,
    gate: Arc<Semaphore>,
    mut phase: watch::Receiver<u8>,
    counts: Arc<[AtomicUsize; 2]>,
) -> anyhow::Result<()> {
    // A login counts as set up once the session is live (offline queue
    // delivered, everyone told): the pong to a ping sent right after the
    // welcome says so, as the server answers requests only after that.
    // Until then it holds one of the PARALLEL places, as an MQTT connect
    // holds one until its CONNACK.
    let permit = gate.acquire().await.context("gate")?;
    let conn = client::login_from(addr, from, &name).await?;
    let ping = msg_proto::encode_line(&msg_proto::server::ClientFrame::Ping)?;
    // A live client says something now and then (a server drops a
    // connection silent for its dead-connection time); `activity` has no
    // reply, so it cannot be taken for the pongs counted here.
    let activity = msg_proto::encode_line(&msg_proto::server::ClientFrame::Activity)?;
    let mut alive = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    let (mut lines, mut write) = client::LineReader::new(conn);
    let mut permit = Some(permit);
    for round in 0..2 {
        if round == 1 {
            while *phase.borrow() < 1 {
                tokio::select! {
                    open = lines.read_lines(|_| {}) => if !open? { bail!("closed") },
                    changed = phase.changed() => changed.context("phase")?,
                    _ = alive.tick() => write.write_all(&activity).await?,
                }
            }
        }
        write.write_all(&ping).await?;
        let mut pong = false;
        let deadline = Instant::now() + SETUP;
        while !pong {
            tokio::select! {
                open = lines.read_lines(|line| pong |= line.trim_ascii() == b"{\"type\":\"pong\"}") => {
                    if !open? {
                        bail!("the server closed an idle session");
                    }
                }
                _ = alive.tick() => write.write_all(&activity).await?,
                _ = tokio::time::sleep_until(deadline) => bail!("no pong in time"),
            }
        }
        permit.take();
        counts[round].fetch_add(1, Ordering::Relaxed);
    }
    loop {
        tokio::select! {
            open = lines.read_lines(|_| {}) => if !open? { return Ok(()) },
            _ = alive.tick() => write.write_all(&activity).await?,
        }
    }
}

async fn mqtt_run(broker: &Mosquitto, k: usize) -> Measured {
    let before = broker.rss_kib();
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(PARALLEL));
    let counts = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let mut tasks = Vec::with_capacity(k);
    for i in 0..k {
        let gate = gate.clone();
        let counts = counts.clone();
        let port = broker.port;
        tasks.push(tokio::spawn(async move {
            // From the same source addresses as msg's sessions (rumqttc
            // cannot bind one: a bare CONNECT, as it would send).
            let mut conn = {
                let _permit = gate.acquire().await.context("gate")?;
                mqtt::connect_idle(port, client::spread_source(i), &format!("idle-{i}")).await?
            };
            counts[0].fetch_add(1, Ordering::Relaxed);
            let mut sink = [0u8; 64];
            while conn.read(&mut sink).await.is_ok_and(|n| n > 0) {}
            Ok(())
        }));
    }
    let result = async {
        wait_count(&counts[0], k, &mut tasks, "connects").await?;
        let secs = started.elapsed().as_secs_f64();
        // Mosquitto has no background threads or timers to wait for.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok::<_, anyhow::Error>((per_session(before, broker.rss_kib(), k), secs))
    }
    .await;
    (result, Tasks(tasks))
}

//! `reconnect`: K clients logged in, then the server restarts (stopped with
//! SIGTERM, as `systemctl restart` does, and started again on the same port
//! and state): the time from the stop until all K are logged in again. Each
//! client comes back as msgd does, waiting `msg_local::backoff`'s jittered,
//! growing delays between tries. Beside Mosquitto restarted the same way,
//! its clients reconnecting with the same delays.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use msg_local::backoff::Backoff;
use rumqttc::{Event, Packet};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::Tasks;
use super::idle::{PARALLEL, wait_count};
use crate::env::Env;
use crate::launch::{Mosquitto, MsgServer, user};
use crate::report::Figure;
use crate::{client, mqtt};

/// Counts of logins before and after the restart.
struct Progress {
    restarted: AtomicBool,
    before: AtomicUsize,
    after: AtomicUsize,
}

impl Progress {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            restarted: AtomicBool::new(false),
            before: AtomicUsize::new(0),
            after: AtomicUsize::new(0),
        })
    }

    fn logged_in(&self) {
        if self.restarted.load(Ordering::Acquire) {
            self.after.fetch_add(1, Ordering::Relaxed);
        } else {
            self.before.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub async fn run(env: &Env) -> anyhow::Result<Vec<Figure>> {
    let k = env.cli.reconnect_sessions.max(1);
    let mut server = MsgServer::start(env, k)?;
    let msg = msg_run(env, &mut server, k).await.context("msg side")?;
    drop(server);
    let mosquitto = if env.cli.no_mqtt {
        None
    } else {
        let mut broker = Mosquitto::start(env)?;
        Some(
            mqtt_run(env, &mut broker, k)
                .await
                .context("mosquitto side")?,
        )
    };
    Ok(vec![
        Figure::new(
            "reconnect",
            format!("all {k} back after a restart"),
            "seconds",
        )
        .values(Some(msg), mosquitto)
        .lower_is_better(),
    ])
}

/// Logs `k` clients in, restarts the server, and times their return.
async fn msg_run(env: &Env, server: &mut MsgServer, k: usize) -> anyhow::Result<f64> {
    let progress = Progress::new();
    let gate = Arc::new(Semaphore::new(PARALLEL));
    let mut tasks = Tasks(
        (0..k)
            .map(|i| {
                tokio::spawn(msg_client(
                    server.addr,
                    user(i),
                    gate.clone(),
                    progress.clone(),
                ))
            })
            .collect(),
    );
    wait_count(&progress.before, k, &mut tasks.0, "logins").await?;
    let stopped = restart(&progress, || server.restart(env)).await?;
    wait_count(&progress.after, k, &mut tasks.0, "logins after the restart").await?;
    Ok(stopped.elapsed().as_secs_f64())
}

/// Marks the restart, then stops and starts the server (blocking work,
/// off the runtime's threads); returns when the stop began.
async fn restart(
    progress: &Progress,
    restart: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<Instant> {
    progress.restarted.store(true, Ordering::Release);
    let stopped = Instant::now();
    tokio::task::block_in_place(restart).context("cannot restart the server")?;
    Ok(stopped)
}

/// One client as msgd behaves: logged in, it reads until the connection
/// ends; then it waits its backoff delay and tries again, growing the
/// delay after each failure. Only the first login waits for a place among
/// the PARALLEL ones (the set-up, as in `idle`).
async fn msg_client(
    addr: SocketAddr,
    name: String,
    gate: Arc<Semaphore>,
    progress: Arc<Progress>,
) -> anyhow::Result<()> {
    let mut backoff = Backoff::new();
    let conn = {
        let _permit = gate.acquire().await.context("gate")?;
        client::login(addr, &name).await?
    };
    progress.logged_in();
    let mut conn = Some(conn);
    loop {
        if let Some(conn) = conn.take() {
            let started = Instant::now();
            let (mut lines, _write) = client::LineReader::new(conn);
            while let Ok(true) = lines.read_lines(|_| {}).await {}
            backoff.session_ended(started.elapsed());
        }
        tokio::time::sleep(backoff.next_delay()).await;
        if let Ok(Ok(c)) = tokio::time::timeout(LOGIN_WAIT, client::login(addr, &name)).await {
            progress.logged_in();
            conn = Some(c);
        }
    }
}

/// How long one login attempt may take before the client gives up on it
/// and backs off (msgd's login deadline).
const LOGIN_WAIT: Duration = Duration::from_secs(10);

async fn mqtt_run(env: &Env, broker: &mut Mosquitto, k: usize) -> anyhow::Result<f64> {
    let progress = Progress::new();
    let gate = Arc::new(Semaphore::new(PARALLEL));
    let port = broker.port;
    let mut tasks = Tasks(
        (0..k)
            .map(|i| tokio::spawn(mqtt_client(port, i, gate.clone(), progress.clone())))
            .collect(),
    );
    wait_count(&progress.before, k, &mut tasks.0, "connects").await?;
    let stopped = restart(&progress, || broker.restart(env)).await?;
    wait_count(
        &progress.after,
        k,
        &mut tasks.0,
        "connects after the restart",
    )
    .await?;
    Ok(stopped.elapsed().as_secs_f64())
}

/// One MQTT client, reconnecting with the same delays as [`msg_client`].
async fn mqtt_client(
    port: u16,
    i: usize,
    gate: Arc<Semaphore>,
    progress: Arc<Progress>,
) -> anyhow::Result<()> {
    let options = mqtt::options(&format!("reconnect-{i}"), port, true);
    let (_client, mut events) = {
        let _permit = gate.acquire().await.context("gate")?;
        mqtt::connect(options, 4).await?
    };
    progress.logged_in();
    let mut backoff = Backoff::new();
    let mut connected = Instant::now();
    loop {
        // The next poll after an error connects again.
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                connected = Instant::now();
                progress.logged_in();
            }
            Ok(_) => {}
            Err(_) => {
                backoff.session_ended(connected.elapsed());
                connected = Instant::now();
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

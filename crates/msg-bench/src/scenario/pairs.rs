//! `pairs`: N senders each sending 100-byte messages to their own recipient,
//! with a window of messages in flight; throughput (closed loop) and latency
//! at a fixed offered rate (open loop; latency is timed from the moment the
//! message is written, send → recipient has it).
//!
//! msg: a message counts as in flight until its `sent` reply, which the
//! server sends only after the recipient's `ack`. MQTT: QoS 1; a message is
//! in flight until the subscriber received it (the broker's PUBACK only says
//! the broker has it), so both sides measure end-to-end delivery.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::{FutureExt, SinkExt, StreamExt};
use msg_proto::server::{ClientFrame, SendRequest, ServerFrame};
use rumqttc::{Event, Packet, QoS};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, sleep_until};

use super::{DRAIN, Tasks, count_at_end, join_all};
use crate::compare::compare;
use crate::env::Env;
use crate::launch::user;
use crate::payload::{self, Clock};
use crate::report::Figure;
use crate::{client, mqtt};

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// As fast as the window allows.
    Closed,
    /// This many messages per second over all pairs.
    Rate(u64),
}

/// What one timed run measured.
struct Outcome {
    /// Messages received by recipients during the timed run, per second.
    per_sec: f64,
    /// Delivery latencies (ns), scheduled send → received.
    latencies: Vec<u64>,
}

/// Timing shared by the tasks of one run.
#[derive(Clone, Copy)]
struct Plan {
    clock: Clock,
    mode: Mode,
    pairs: usize,
    window: usize,
    start: Instant,
    end: Instant,
}

impl Plan {
    fn new(mode: Mode, pairs: usize, window: usize, secs: f64) -> Self {
        // Time for every task to reach its start line.
        let start = Instant::now() + Duration::from_millis(200);
        Self {
            clock: Clock::new(),
            mode,
            pairs,
            window: window.max(1),
            start,
            end: start + Duration::from_secs_f64(secs),
        }
    }

    /// Gap between two sends of one pair and the first send of pair `i`.
    fn schedule(&self, i: usize) -> Option<(Duration, Instant)> {
        let Mode::Rate(rate) = self.mode else {
            return None;
        };
        let gap = Duration::from_secs_f64(self.pairs as f64 / rate.max(1) as f64);
        // Spread the pairs over one gap so sends do not come in lockstep.
        let offset = gap.mul_f64(i as f64 / self.pairs as f64);
        Some((gap, self.start + offset))
    }

    fn secs(&self) -> f64 {
        (self.end - self.start).as_secs_f64()
    }
}

pub async fn run(env: &Env) -> anyhow::Result<Vec<Figure>> {
    let c = &env.cli;
    let n = c.pairs.max(1);
    let (window, secs, rate) = (c.window, c.secs_or(5.0), c.rate);
    let closed = move || Plan::new(Mode::Closed, n, window, secs);
    let paced = move || Plan::new(Mode::Rate(rate), n, window, secs);
    let mut runs = compare(
        env,
        4 * n,
        async |server| {
            let throughput = msg_run(&[server.addr], 0, closed())
                .await
                .context("throughput run")?;
            let latency = msg_run(&[server.addr], 2 * n, paced())
                .await
                .context("latency run")?;
            Ok(server.finish([throughput, latency]))
        },
        async |broker| {
            let throughput = mqtt_run(broker.port, "t", closed())
                .await
                .context("throughput run")?;
            let latency = mqtt_run(broker.port, "l", paced())
                .await
                .context("latency run")?;
            Ok(broker.finish([throughput, latency]))
        },
    )
    .await?;
    let msg_p = payload::percentiles(&mut runs.msg.value[1].latencies);
    let mq_p = runs
        .mosquitto
        .as_mut()
        .and_then(|run| payload::percentiles(&mut run.value[1].latencies));
    let mut figures = vec![
        runs.figure(
            "pairs",
            format!("{n} pairs, window {window}"),
            "msg/s",
            |o| Some(o[0].per_sec),
        ),
        runs.figure(
            "pairs",
            format!("delivered at {rate}/s offered"),
            "msg/s",
            |o| Some(o[1].per_sec),
        ),
    ];
    for (i, q) in ["p50", "p99", "p99.9"].iter().enumerate() {
        let mut figure = runs
            .figure("pairs", format!("latency {q} at {rate}/s"), "µs", |_| None)
            .lower_is_better();
        figure.msg = msg_p.map(|p| p[i]);
        figure.mosquitto = mq_p.map(|p| p[i]);
        figures.push(figure);
    }
    Ok(figures)
}

// ---- msg ---------------------------------------------------------------------

/// Closed-loop throughput (messages/s) of `pairs` pairs over several
/// servers, users `first_user..` (the cluster scenario); `settle` runs
/// between the logins and the first send.
pub async fn throughput_over(
    addrs: &[SocketAddr],
    first_user: usize,
    pairs: usize,
    window: usize,
    secs: f64,
    settle: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<f64> {
    let conns = login_pairs(addrs, first_user, pairs).await?;
    settle.await?;
    let plan = Plan::new(Mode::Closed, pairs, window, secs);
    Ok(run_pairs(conns, first_user, plan).await?.per_sec)
}

async fn login_pairs(
    addrs: &[SocketAddr],
    first_user: usize,
    pairs: usize,
) -> anyhow::Result<Vec<client::Conn>> {
    let users = (0..2 * pairs).map(|i| user(first_user + i));
    client::login_many_over(addrs, users, 64).await
}

async fn msg_run(addrs: &[SocketAddr], first_user: usize, plan: Plan) -> anyhow::Result<Outcome> {
    let conns = login_pairs(addrs, first_user, plan.pairs).await?;
    run_pairs(conns, first_user, plan).await
}

async fn run_pairs(
    mut conns: Vec<client::Conn>,
    first_user: usize,
    plan: Plan,
) -> anyhow::Result<Outcome> {
    let n = plan.pairs;
    let delivered = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::with_capacity(n);
    let mut receivers = Vec::with_capacity(n);
    // Logged in as (sender, recipient), (sender, recipient), ...
    let mut i = 0;
    while conns.len() >= 2 {
        let recv_conn = conns.pop().context("connection")?;
        let send_conn = conns.pop().context("connection")?;
        let to = user(first_user + 2 * (n - 1 - i) + 1);
        let (total_tx, total_rx) = watch::channel(None);
        senders.push(tokio::spawn(msg_sender(
            send_conn,
            to,
            plan,
            n - 1 - i,
            total_tx,
        )));
        receivers.push(tokio::spawn(msg_receiver(
            recv_conn,
            plan,
            total_rx,
            delivered.clone(),
        )));
        i += 1;
    }
    let at_end = count_at_end(delivered.clone(), plan.end);
    join_all(senders).await?;
    let latencies: Vec<u64> = join_all(receivers).await?.into_iter().flatten().collect();
    let counted = at_end.await.context("counter task")?;
    Ok(Outcome {
        per_sec: counted as f64 / plan.secs(),
        latencies,
    })
}

/// Sends until the run ends, keeping at most `window` messages without their
/// `sent` reply; then waits for the remaining replies. Tells the recipient
/// how many to expect.
async fn msg_sender(
    conn: client::Conn,
    to: String,
    plan: Plan,
    index: usize,
    total: watch::Sender<Option<u64>>,
) -> anyhow::Result<()> {
    let (mut sink, mut stream) = conn.split();
    let schedule = plan.schedule(index);
    let mut next_due = schedule.map_or(plan.start, |(_, first)| first);
    let hard = plan.end + DRAIN;
    let (mut sent, mut confirmed) = (0u64, 0u64);
    let mut stopping = false;
    let mut request_id = 1u64;
    sleep_until(plan.start).await;
    loop {
        if !stopping && Instant::now() >= plan.end {
            stopping = true;
            let _ = total.send(Some(sent));
        }
        if stopping && confirmed == sent {
            return Ok(());
        }
        let room = plan.window as u64 - (sent - confirmed);
        tokio::select! {
            biased;
            frame = stream.next() => match frame {
                Some(Ok(Ok(ServerFrame::Sent { .. }))) => confirmed += 1,
                Some(Ok(Ok(ServerFrame::Error { message, .. }))) => bail!("send refused: {message}"),
                Some(Ok(Ok(_))) => {}
                Some(Ok(Err(e))) => bail!("bad frame from the server: {e}"),
                Some(Err(e)) => return Err(e).context("reading replies"),
                None => bail!("the server closed a sender's connection"),
            },
            _ = sleep_until(next_due), if !stopping && room > 0 => {
                let now = Instant::now();
                let mut batch = 0;
                while (batch as u64) < room && batch < 64 && now < plan.end {
                    if let Some((gap, _)) = schedule {
                        if next_due > now {
                            break;
                        }
                        next_due += gap;
                    }
                    // Stamped when written, not when due: tokio's timer
                    // wakes on millisecond ticks, which would otherwise add
                    // up to 1 ms of the bench's own to every figure.
                    let stamp = now;
                    request_id += 1;
                    sink.feed(ClientFrame::Send(SendRequest {
                        id: request_id,
                        to: to.clone(),
                        text: payload::text(sent, plan.clock.ns(stamp.into_std())),
                        client_id: None,
                    }))
                    .await?;
                    sent += 1;
                    batch += 1;
                }
                sink.flush().await?;
                if schedule.is_none() {
                    next_due = Instant::now();
                }
            },
            _ = sleep_until(plan.end), if !stopping => {}
            _ = sleep_until(hard) => bail!("{} sent replies missing after the run", sent - confirmed),
        }
    }
}

/// Acknowledges every message as the protocol asks, recording its latency.
async fn msg_receiver(
    conn: client::Conn,
    plan: Plan,
    mut total: watch::Receiver<Option<u64>>,
    delivered: Arc<AtomicU64>,
) -> anyhow::Result<Vec<u64>> {
    let (mut sink, mut stream) = conn.split();
    let hard = plan.end + DRAIN;
    let mut latencies = Vec::new();
    let mut received = 0u64;
    loop {
        if total.borrow().is_some_and(|n| received >= n) {
            return Ok(latencies);
        }
        tokio::select! {
            biased;
            frame = stream.next() => {
                let mut frame = frame;
                // Handle everything already buffered, then flush the acks once.
                loop {
                    let msg_id = match frame {
                        Some(Ok(Ok(ServerFrame::Message { msg_id, text, .. }))) => {
                            let now = plan.clock.now_ns();
                            if let Some((_, at)) = payload::parse(text.as_bytes()) {
                                latencies.push(now.saturating_sub(at));
                            }
                            Some(msg_id)
                        }
                        Some(Ok(Ok(_))) => None,
                        Some(Ok(Err(e))) => bail!("bad frame from the server: {e}"),
                        Some(Err(e)) => return Err(e).context("reading messages"),
                        None => bail!("the server closed a recipient's connection"),
                    };
                    if let Some(msg_id) = msg_id {
                        received += 1;
                        delivered.fetch_add(1, Ordering::Relaxed);
                        sink.feed(ClientFrame::Ack { msg_id }).await?;
                    }
                    match stream.next().now_or_never() {
                        Some(more) => frame = more,
                        None => break,
                    }
                }
                sink.flush().await?;
            }
            changed = total.changed() => {
                if changed.is_err() && total.borrow().is_none() {
                    bail!("the sender stopped early");
                }
            }
            _ = sleep_until(hard) => bail!("messages missing after the run"),
        }
    }
}

// ---- mosquitto -------------------------------------------------------------------

async fn mqtt_run(port: u16, tag: &str, plan: Plan) -> anyhow::Result<Outcome> {
    let n = plan.pairs;
    let delivered = Arc::new(AtomicU64::new(0));
    let subs = mqtt::connect_many(
        (0..n).map(|i| mqtt::options(&format!("{tag}-sub-{i}"), port, true)),
        64,
        64,
    )
    .await?;
    let pubs = mqtt::connect_many(
        (0..n).map(|i| mqtt::options(&format!("{tag}-pub-{i}"), port, true)),
        64,
        plan.window + 16,
    )
    .await?;
    let mut drivers = Tasks(Vec::new());
    let mut senders = Vec::with_capacity(n);
    let mut receivers = Vec::with_capacity(n);
    for (i, ((sub, mut sub_events), (publisher, mut pub_events))) in
        subs.into_iter().zip(pubs).enumerate()
    {
        let topic = format!("bench/{tag}/{i}");
        mqtt::subscribe(&sub, &mut sub_events, &topic, QoS::AtLeastOnce).await?;
        let window = Arc::new(Semaphore::new(plan.window));
        let (total_tx, total_rx) = watch::channel(None);
        // The publisher's event loop does its I/O (PUBLISH out, PUBACK in).
        drivers.0.push(tokio::spawn(async move {
            while pub_events.poll().await.is_ok() {}
        }));
        receivers.push(tokio::spawn(mqtt_receiver(
            sub_events,
            plan,
            window.clone(),
            total_rx,
            delivered.clone(),
        )));
        senders.push(tokio::spawn(mqtt_sender(
            publisher, topic, plan, i, window, total_tx,
        )));
        // Keep the subscriber's client alive (dropping it ends its loop).
        drivers.0.push(tokio::spawn(async move {
            let _keep = sub;
            std::future::pending::<()>().await;
        }));
    }
    let at_end = count_at_end(delivered.clone(), plan.end);
    // The publishers' clients live until every message has arrived.
    let _clients = join_all(senders).await?;
    let latencies: Vec<u64> = join_all(receivers).await?.into_iter().flatten().collect();
    let counted = at_end.await.context("counter task")?;
    Ok(Outcome {
        per_sec: counted as f64 / plan.secs(),
        latencies,
    })
}

async fn mqtt_sender(
    client: rumqttc::AsyncClient,
    topic: String,
    plan: Plan,
    index: usize,
    window: Arc<Semaphore>,
    total: watch::Sender<Option<u64>>,
) -> anyhow::Result<rumqttc::AsyncClient> {
    let schedule = plan.schedule(index);
    let mut next_due = schedule.map_or(plan.start, |(_, first)| first);
    let mut sent = 0u64;
    sleep_until(plan.start).await;
    loop {
        if schedule.is_some() {
            tokio::select! {
                _ = sleep_until(next_due) => {}
                _ = sleep_until(plan.end) => break,
            }
        }
        let permit = tokio::select! {
            p = window.acquire() => p.context("window closed")?,
            _ = sleep_until(plan.end) => break,
        };
        permit.forget();
        let now = Instant::now();
        if now >= plan.end {
            break;
        }
        if let Some((gap, _)) = schedule {
            next_due += gap;
        }
        let stamp = now;
        let text = payload::text(sent, plan.clock.ns(stamp.into_std()));
        client
            .publish(&topic, QoS::AtLeastOnce, false, text.into_bytes())
            .await?;
        sent += 1;
    }
    let _ = total.send(Some(sent));
    Ok(client)
}

/// Receives (rumqttc sends the PUBACK), records latency, and opens the
/// sender's window by one.
async fn mqtt_receiver(
    mut events: rumqttc::EventLoop,
    plan: Plan,
    window: Arc<Semaphore>,
    mut total: watch::Receiver<Option<u64>>,
    delivered: Arc<AtomicU64>,
) -> anyhow::Result<Vec<u64>> {
    let hard = plan.end + DRAIN;
    let mut latencies = Vec::new();
    let mut received = 0u64;
    loop {
        if total.borrow().is_some_and(|n| received >= n) {
            return Ok(latencies);
        }
        tokio::select! {
            biased;
            event = events.poll() => match event {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let now = plan.clock.now_ns();
                    if let Some((_, at)) = payload::parse(&p.payload) {
                        latencies.push(now.saturating_sub(at));
                    }
                    received += 1;
                    delivered.fetch_add(1, Ordering::Relaxed);
                    window.add_permits(1);
                }
                Ok(_) => {}
                Err(e) => return Err(e).context("subscriber connection failed"),
            },
            changed = total.changed() => {
                if changed.is_err() && total.borrow().is_none() {
                    bail!("the publisher stopped early");
                }
            }
            _ = sleep_until(hard) => bail!("messages missing after the run"),
        }
    }
}

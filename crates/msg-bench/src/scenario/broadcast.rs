//! `broadcast`: one sender, M online recipients; deliveries per second.
//!
//! The sender keeps a window of broadcasts that not every recipient has yet
//! received, so no recipient's queue overflows (the server disconnects a
//! client 1,024 events behind). msg broadcasts are not acknowledged, so the
//! MQTT side publishes and subscribes at QoS 0 on one topic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use msg_proto::server::{BroadcastRequest, ClientFrame, ServerFrame};
use rumqttc::{Event, Packet, QoS};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, sleep_until};

use super::{DRAIN, Tasks, count_at_end, join_all};
use crate::compare::compare;
use crate::env::Env;
use crate::launch::user;
use crate::payload;
use crate::report::Figure;
use crate::{client, mqtt};

/// Tracks which broadcasts every recipient has received. Each recipient
/// sees broadcasts in order, so they complete in order, and a ring twice
/// the window never wraps onto an incomplete one.
struct Completion {
    ring: Vec<AtomicU32>,
    recipients: u32,
    window: Semaphore,
    delivered: Arc<AtomicU64>,
}

impl Completion {
    fn new(recipients: usize, window: usize) -> Self {
        Self {
            ring: (0..2 * window.max(1)).map(|_| AtomicU32::new(0)).collect(),
            recipients: recipients as u32,
            window: Semaphore::new(window.max(1)),
            delivered: Arc::new(AtomicU64::new(0)),
        }
    }

    fn received(&self, seq: u64) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let slot = &self.ring[(seq % self.ring.len() as u64) as usize];
        if slot.fetch_add(1, Ordering::AcqRel) + 1 == self.recipients {
            slot.store(0, Ordering::Release);
            self.window.add_permits(1);
        }
    }
}

pub async fn run(env: &Env) -> anyhow::Result<Vec<Figure>> {
    let c = &env.cli;
    let m = c.subscribers.max(1);
    let secs = Duration::from_secs_f64(c.secs_or(5.0));
    let window = c.broadcast_window;
    let runs = compare(
        env,
        m + 1,
        async |server| {
            let measured = msg_run(&[server.addr], 0, m, window, secs).await?;
            Ok(server.finish(measured))
        },
        async |broker| {
            let measured = mqtt_run(broker.port, m, window, secs).await?;
            Ok(broker.finish(measured))
        },
    )
    .await?;
    Ok(vec![runs.figure(
        "broadcast",
        format!("1 sender to {m} online"),
        "deliveries/s",
        |per_sec| Some(*per_sec),
    )])
}

// ---- msg ---------------------------------------------------------------------

/// Deliveries per second of one sender (users `first_user`, on the first
/// server) to `m` recipients spread over `addrs` (also the cluster
/// scenario's).
pub async fn msg_run(
    addrs: &[SocketAddr],
    first_user: usize,
    m: usize,
    window: usize,
    secs: Duration,
) -> anyhow::Result<f64> {
    let done = Arc::new(Completion::new(m, window));
    let recipients = (first_user + 1..=first_user + m).map(user);
    let recipients = client::login_many_over(addrs, recipients, 64).await?;
    let sender = client::login(addrs[0], &user(first_user)).await?;
    let (total_tx, total_rx) = watch::channel(None::<u64>);
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + secs;
    let mut receivers = Vec::with_capacity(m);
    for conn in recipients {
        let done = done.clone();
        let mut total = total_rx.clone();
        receivers.push(tokio::spawn(async move {
            let (mut lines, _write) = client::LineReader::new(conn);
            let mut got = 0u64;
            let hard = end + DRAIN;
            loop {
                if total.borrow().is_some_and(|n| got >= n) {
                    return Ok(());
                }
                tokio::select! {
                    biased;
                    open = lines.read_lines(|line| {
                        if line.starts_with(b"{\"type\":\"broadcast\"")
                            && let Some((seq, _)) = client::text_field(line).and_then(payload::parse)
                        {
                            got += 1;
                            done.received(seq);
                        }
                    }) => if !open? { bail!("the server closed a recipient's connection") },
                    _ = total.changed() => {}
                    _ = sleep_until(hard) => bail!("broadcasts missing after the run"),
                }
            }
        }));
    }
    let at_end = count_at_end(done.delivered.clone(), end);
    let (mut sink, mut stream) = sender.split();
    let clock = payload::Clock::new();
    let mut sent = 0u64;
    let mut id = 1u64;
    sleep_until(start).await;
    loop {
        tokio::select! {
            biased;
            frame = stream.next() => match frame {
                Some(Ok(Ok(ServerFrame::Error { message, .. }))) => bail!("broadcast refused: {message}"),
                Some(Ok(Ok(_))) => {}
                Some(Ok(Err(e))) => bail!("bad frame from the server: {e}"),
                Some(Err(e)) => return Err(e).context("reading replies"),
                None => bail!("the server closed the sender's connection"),
            },
            permit = done.window.acquire() => {
                permit.context("window closed")?.forget();
                let mut batch = 1;
                loop {
                    id += 1;
                    sink.feed(ClientFrame::Broadcast(BroadcastRequest { id, text: payload::text(sent, clock.now_ns()) })).await?;
                    sent += 1;
                    if batch >= 64 || Instant::now() >= end {
                        break;
                    }
                    match done.window.try_acquire() {
                        Ok(p) => p.forget(),
                        Err(_) => break,
                    }
                    batch += 1;
                }
                sink.flush().await?;
            },
            _ = sleep_until(end) => break,
        }
    }
    let _ = total_tx.send(Some(sent));
    join_all(receivers).await?;
    let counted = at_end.await.context("counter task")?;
    drop((sink, stream));
    Ok(counted as f64 / secs.as_secs_f64())
}

// ---- mosquitto -------------------------------------------------------------------

async fn mqtt_run(port: u16, m: usize, window: usize, secs: Duration) -> anyhow::Result<f64> {
    const TOPIC: &str = "bench/all";
    let done = Arc::new(Completion::new(m, window));
    let subs = mqtt::connect_many(
        (0..m).map(|i| mqtt::options(&format!("bsub-{i}"), port, true)),
        64,
        16,
    )
    .await?;
    let (publisher, mut pub_events) = mqtt::connect(mqtt::options("bpub", port, true), 256).await?;
    let _driver = Tasks(vec![tokio::spawn(async move {
        while pub_events.poll().await.is_ok() {}
    })]);
    let (total_tx, total_rx) = watch::channel(None::<u64>);
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + secs;
    let mut receivers = Vec::with_capacity(m);
    let mut clients = Vec::with_capacity(m);
    for (client, mut events) in subs {
        mqtt::subscribe(&client, &mut events, TOPIC, QoS::AtMostOnce).await?;
        clients.push(client);
        let done = done.clone();
        let mut total = total_rx.clone();
        receivers.push(tokio::spawn(async move {
            let mut got = 0u64;
            let hard = end + DRAIN;
            loop {
                if total.borrow().is_some_and(|n| got >= n) {
                    return Ok(());
                }
                tokio::select! {
                    biased;
                    event = events.poll() => match event {
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            if let Some((seq, _)) = payload::parse(&p.payload) {
                                got += 1;
                                done.received(seq);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => return Err(e).context("subscriber connection failed"),
                    },
                    _ = total.changed() => {}
                    _ = sleep_until(hard) => bail!("publishes missing after the run"),
                }
            }
        }));
    }
    let at_end = count_at_end(done.delivered.clone(), end);
    let clock = payload::Clock::new();
    let mut sent = 0u64;
    sleep_until(start).await;
    loop {
        let permit = tokio::select! {
            p = done.window.acquire() => p.context("window closed")?,
            _ = sleep_until(end) => break,
        };
        permit.forget();
        if Instant::now() >= end {
            break;
        }
        publisher
            .publish(
                TOPIC,
                QoS::AtMostOnce,
                false,
                payload::text(sent, clock.now_ns()).into_bytes(),
            )
            .await?;
        sent += 1;
    }
    let _ = total_tx.send(Some(sent));
    join_all(receivers).await?;
    let counted = at_end.await.context("counter task")?;
    drop(clients);
    Ok(counted as f64 / secs.as_secs_f64())
}

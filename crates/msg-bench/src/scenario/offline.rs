//! `offline`: Q messages to a user who is offline, each `sent` reply only
//! once the message is durable on the server (group commit); then the user
//! logs in and drains the queue, acknowledging every message.
//!
//! Mosquitto runs with persistence off, so its column is a queue in memory
//! (a persistent session at QoS 1), not a durable one: it is shown for
//! scale, not as a like-for-like comparison.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::{FutureExt, SinkExt, StreamExt};
use msg_proto::server::{ClientFrame, SendRequest, ServerFrame};
use rumqttc::{Event, Outgoing, Packet, QoS};
use tokio::time::Instant;

use super::Tasks;
use crate::compare::compare;
use crate::env::Env;
use crate::launch::user;
use crate::payload;
use crate::report::Figure;
use crate::{client, mqtt};

/// Bound on either phase.
const PHASE: Duration = Duration::from_secs(120);

pub async fn run(env: &Env) -> anyhow::Result<Vec<Figure>> {
    let c = &env.cli;
    let q = c.messages.max(1) as u64;
    let window = c.offline_window;
    let runs = compare(
        env,
        2,
        async |server| {
            let enqueue = msg_enqueue(server.addr, q, window)
                .await
                .context("enqueue")?;
            let disk = server.disk_bytes();
            let drain = msg_drain(server.addr, q).await.context("drain")?;
            Ok(server.finish(Phases {
                enqueue,
                drain,
                disk,
            }))
        },
        async |broker| {
            let (enqueue, drain) = mqtt_run(broker.port, q).await?;
            Ok(broker.finish(Phases {
                enqueue,
                drain,
                disk: None,
            }))
        },
    )
    .await?;
    Ok(vec![
        runs.figure(
            "offline",
            format!("enqueue {q} (durable; mosq: memory)"),
            "msg/s",
            |p| Some(q as f64 / p.enqueue),
        ),
        runs.figure("offline", format!("drain {q} at login"), "msg/s", |p| {
            Some(q as f64 / p.drain)
        }),
        runs.figure("offline", format!("drain {q} at login"), "ms", |p| {
            Some(p.drain * 1e3)
        })
        .lower_is_better(),
        runs.figure("offline", "queue on disk (msg.db + WAL)", "bytes", |p| {
            p.disk.map(|b| b as f64)
        })
        .lower_is_better(),
    ])
}

/// Seconds each phase took, and the queue's size on disk (msg only).
struct Phases {
    enqueue: f64,
    drain: f64,
    disk: Option<u64>,
}

/// Seconds to get `q` `sent` (queued) replies with `window` outstanding.
async fn msg_enqueue(addr: SocketAddr, q: u64, window: usize) -> anyhow::Result<f64> {
    let conn = client::login(addr, &user(0)).await?;
    let to = user(1);
    let (mut sink, mut stream) = conn.split();
    let clock = payload::Clock::new();
    let window = window.clamp(1, 1024) as u64;
    let started = Instant::now();
    let deadline = started + PHASE;
    let (mut sent, mut confirmed) = (0u64, 0u64);
    while confirmed < q {
        while sent < q && sent - confirmed < window {
            sink.feed(ClientFrame::Send(SendRequest {
                id: sent + 2,
                to: to.clone(),
                text: payload::text(sent, clock.now_ns()),
                client_id: None,
            }))
            .await?;
            sent += 1;
        }
        sink.flush().await?;
        let frame = tokio::time::timeout_at(deadline, stream.next())
            .await
            .context("sent replies did not arrive in time")?;
        match frame {
            Some(Ok(Ok(ServerFrame::Sent { queued: true, .. }))) => confirmed += 1,
            Some(Ok(Ok(ServerFrame::Sent { queued: false, .. }))) => {
                bail!("a message was delivered: the recipient is not offline")
            }
            Some(Ok(Ok(ServerFrame::Error { message, .. }))) => bail!("send refused: {message}"),
            Some(Ok(Ok(_))) => {}
            Some(Ok(Err(e))) => bail!("bad frame from the server: {e}"),
            Some(Err(e)) => return Err(e).context("reading replies"),
            None => bail!("the server closed the sender's connection"),
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Seconds from the login request to the last queued message received.
async fn msg_drain(addr: SocketAddr, q: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let deadline = started + PHASE;
    let conn = client::login(addr, &user(1)).await?;
    let (mut sink, mut stream) = conn.split();
    let mut received = 0u64;
    while received < q {
        let mut frame = tokio::time::timeout_at(deadline, stream.next())
            .await
            .context("queued messages did not arrive in time")?;
        // Ack everything already buffered, then flush once.
        loop {
            match frame {
                Some(Ok(Ok(ServerFrame::Message { msg_id, .. }))) => {
                    received += 1;
                    sink.feed(ClientFrame::Ack { msg_id }).await?;
                }
                Some(Ok(Ok(_))) => {}
                Some(Ok(Err(e))) => bail!("bad frame from the server: {e}"),
                Some(Err(e)) => return Err(e).context("reading messages"),
                None => bail!("the server closed the connection"),
            }
            match stream.next().now_or_never() {
                Some(more) => frame = more,
                None => break,
            }
        }
        sink.flush().await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Enqueue and drain seconds through a persistent MQTT session.
async fn mqtt_run(port: u16, q: u64) -> anyhow::Result<(f64, f64)> {
    const TOPIC: &str = "bench/offline";
    let sub_options = || mqtt::options("offline-sub", port, false);
    // Subscribe with a persistent session, then go away.
    {
        let (sub, mut events) = mqtt::connect(sub_options(), 4).await?;
        mqtt::subscribe(&sub, &mut events, TOPIC, QoS::AtLeastOnce).await?;
        sub.disconnect().await?;
        let deadline = Instant::now() + client::STEP;
        loop {
            match tokio::time::timeout_at(deadline, events.poll()).await {
                Err(_) => bail!("disconnect did not go out"),
                Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) | Ok(Err(_)) => break,
                Ok(Ok(_)) => {}
            }
        }
    }
    let (publisher, mut events) =
        mqtt::connect(mqtt::options("offline-pub", port, true), 1024).await?;
    let started = Instant::now();
    let deadline = started + PHASE;
    let driver = Tasks(vec![tokio::spawn(async move {
        let mut acked = 0u64;
        while acked < q {
            match tokio::time::timeout_at(deadline, events.poll()).await {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(anyhow::Error::from(e)),
                Err(_) => bail!("PUBACKs did not arrive in time"),
            }
        }
        Ok(())
    })]);
    let clock = payload::Clock::new();
    for seq in 0..q {
        publisher
            .publish(
                TOPIC,
                QoS::AtLeastOnce,
                false,
                payload::text(seq, clock.now_ns()).into_bytes(),
            )
            .await?;
    }
    let mut driver = driver;
    let handle = driver.0.pop().context("driver")?;
    handle.await.context("publisher task")??;
    let enqueue = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let deadline = started + PHASE;
    let (_sub, mut events) = mqtt::connect(sub_options(), 4).await?;
    let mut received = 0u64;
    while received < q {
        match tokio::time::timeout_at(deadline, events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(_)))) => received += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e).context("subscriber connection failed"),
            Err(_) => bail!("queued publishes did not arrive in time ({received} of {q})"),
        }
    }
    Ok((enqueue, started.elapsed().as_secs_f64()))
}

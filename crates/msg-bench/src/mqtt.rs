//! MQTT clients for the Mosquitto column, through `rumqttc`; idle
//! sessions by a bare CONNECT of their own (they must choose their source
//! address, which `rumqttc` cannot).

use std::time::Duration;

use anyhow::{Context, bail};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, NetworkOptions, Packet, QoS};

use crate::client::STEP;

/// Options shared by every bench client: loopback, TCP_NODELAY, a long
/// keep-alive (idle clients must not ping during the measurement) and room
/// for the bench's windows.
pub fn options(id: &str, port: u16, clean: bool) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(600))
        .set_clean_session(clean)
        .set_inflight(1000)
        .set_max_packet_size(64 * 1024, 64 * 1024);
    o
}

/// Connects and waits for the broker's CONNACK.
pub async fn connect(options: MqttOptions, cap: usize) -> anyhow::Result<(AsyncClient, EventLoop)> {
    let (client, mut events) = AsyncClient::new(options, cap);
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    events.set_network_options(net);
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        match tokio::time::timeout_at(deadline, events.poll()).await {
            Err(_) => bail!("no CONNACK within {STEP:?}"),
            Ok(Err(e)) => return Err(e).context("cannot connect to mosquitto"),
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => return Ok((client, events)),
            Ok(Ok(_)) => {}
        }
    }
}

/// Subscribes and waits for the SUBACK.
pub async fn subscribe(
    client: &AsyncClient,
    events: &mut EventLoop,
    topic: &str,
    qos: QoS,
) -> anyhow::Result<()> {
    client.subscribe(topic, qos).await?;
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        match tokio::time::timeout_at(deadline, events.poll()).await {
            Err(_) => bail!("no SUBACK within {STEP:?}"),
            Ok(Err(e)) => return Err(e).context("subscribe failed"),
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => return Ok(()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Connects many clients, `parallel` at a time, in order.
pub async fn connect_many(
    options: impl IntoIterator<Item = MqttOptions>,
    parallel: usize,
    cap: usize,
) -> anyhow::Result<Vec<(AsyncClient, EventLoop)>> {
    use futures::StreamExt;
    let conns: Vec<anyhow::Result<(AsyncClient, EventLoop)>> = futures::stream::iter(options)
        .map(|o| connect(o, cap))
        .buffered(parallel.max(1))
        .collect()
        .await;
    conns.into_iter().collect()
}

/// An idle MQTT 3.1.1 session from the local address `from`: a clean
/// session with `rumqttc`'s defaults otherwise (the keep-alive of
/// [`options`]), connected once the broker's CONNACK accepts it.
pub async fn connect_idle(
    port: u16,
    from: std::net::IpAddr,
    id: &str,
) -> anyhow::Result<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let id_len = u16::try_from(id.len()).context("client id too long")?;
    // Variable header: protocol "MQTT", level 4, clean session, keep-alive.
    let mut packet = vec![0x10, 0, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02];
    packet.extend_from_slice(&600u16.to_be_bytes());
    packet.extend_from_slice(&id_len.to_be_bytes());
    packet.extend_from_slice(id.as_bytes());
    // One byte of remaining length holds up to 127 (ids here are short).
    packet[1] = u8::try_from(packet.len() - 2)
        .ok()
        .filter(|&n| n < 128)
        .context("client id too long")?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::new(from, 0))?;
    let connect = async {
        let mut stream = socket
            .connect((std::net::Ipv4Addr::LOCALHOST, port).into())
            .await
            .context("cannot connect to mosquitto")?;
        stream.set_nodelay(true)?;
        stream.write_all(&packet).await?;
        let mut connack = [0u8; 4];
        stream
            .read_exact(&mut connack)
            .await
            .context("no CONNACK")?;
        if connack != [0x20, 2, 0, 0] {
            bail!("mosquitto refused the connection: {connack:?}");
        }
        Ok(stream)
    };
    tokio::time::timeout(STEP, connect)
        .await
        .context("no CONNACK in time")?
}

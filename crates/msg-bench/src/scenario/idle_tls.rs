//! `idle-tls`: the `idle` scenario over TLS: K logged-in sessions doing
//! nothing, each a TLS connection, and the server's resident memory per
//! session; beside Mosquitto with a TLS listener (the same certificate,
//! made by `msg-server cert`), K MQTT connections idle over TLS.
//!
//! The msg side pings twice like `idle` (after its login, after all
//! logins), so every presence event is written before memory is read; the
//! MQTT side connects with keep-alive off and holds the connection.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use msg_proto::server::{ClientFrame, LoginRequest};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::Tasks;
use super::idle::{Measured, PARALLEL, SETUP, measure_sessions, per_session, wait_count};
use crate::compare::{Compared, Run};
use crate::env::Env;
use crate::launch::{Mosquitto, MsgServer, PASSWORD, user};
use crate::procfs;
use crate::report::Figure;

pub async fn run(env: &Env) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for &k in &env.cli.sessions {
        figures.extend(run_one(env, k.max(1)).await?);
    }
    Ok(figures)
}

async fn run_one(env: &Env, k: usize) -> anyhow::Result<Vec<Figure>> {
    let fds = procfs::nofile_limit() as usize;
    if k + 64 > fds {
        bail!("{k} sessions need more open files than the limit ({fds}); lower --sessions");
    }
    let certs = tempfile::tempdir().context("cannot create a temp dir")?;
    make_cert(env, certs.path())?;
    let cert = certs.path().join("cert.pem");
    let key = certs.path().join("key.pem");
    // Mosquitto started as root reads its files as the `mosquitto` user: a
    // throw-away bench key may be readable by all.
    {
        use std::os::unix::fs::PermissionsExt;
        let open = |path: &Path, mode| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        };
        open(certs.path(), 0o755).context("cannot open the certificate directory")?;
        open(&key, 0o644).context("cannot open the bench key")?;
    }
    let connector = connector(&cert)?;

    let args = [
        "--tls-cert".to_owned(),
        cert.display().to_string(),
        "--tls-key".to_owned(),
        key.display().to_string(),
    ];
    let server = MsgServer::start_with_args(env, k, &args)?;
    let (measured, sessions) = msg_run(&server, k, &connector).await;
    let Run { peak_kib, .. } = server.finish(());
    drop(sessions);
    let msg = Run {
        value: measured.context("msg side")?,
        peak_kib,
    };
    let mosquitto = if env.cli.no_mqtt {
        None
    } else {
        let listener = format!("certfile {}\nkeyfile {}\n", cert.display(), key.display());
        let broker = Mosquitto::start_with(env, &listener)?;
        let (measured, sessions) = mqtt_run(&broker, k, &connector).await;
        let Run { peak_kib, .. } = broker.finish(());
        drop(sessions);
        Some(Run {
            value: measured.context("mosquitto side")?,
            peak_kib,
        })
    };
    let runs = Compared { msg, mosquitto };
    Ok(vec![
        runs.figure(
            "idle-tls",
            format!("memory per idle TLS session ({k})"),
            "bytes",
            |m| m.0,
        )
        .lower_is_better(),
        runs.figure(
            "idle-tls",
            format!("TLS sessions set up ({k})"),
            "logins/s",
            |m| Some(k as f64 / m.1),
        ),
    ])
}

/// `msg-server cert --name 127.0.0.1 --out DIR`.
fn make_cert(env: &Env, dir: &Path) -> anyhow::Result<()> {
    let out = std::process::Command::new(&env.server_bin)
        .args(["cert", "--name", "127.0.0.1", "--out"])
        .arg(dir)
        .output()
        .context("cannot run msg-server cert")?;
    if !out.status.success() {
        bail!(
            "msg-server cert failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A connector trusting exactly the bench's certificate (as a CA).
fn connector(cert: &Path) -> anyhow::Result<TlsConnector> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(cert).context("cannot read the certificate")?)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

async fn tls_connect(
    addr: SocketAddr,
    connector: &TlsConnector,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let tcp = tokio::time::timeout(SETUP, TcpStream::connect(addr))
        .await
        .context("connect timed out")??;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
    Ok(tokio::time::timeout(SETUP, connector.connect(name, tcp))
        .await
        .context("handshake timed out")??)
}

async fn msg_run(server: &MsgServer, k: usize, connector: &TlsConnector) -> Measured {
    let addr = server.addr;
    measure_sessions(server, k, |i, gate, phase, counts| {
        msg_session(addr, connector.clone(), user(i), gate, phase, counts)
    })
    .await
}

/// One idle TLS session: log in, ping, wait for the all-clear, ping again,
/// then read (and discard) whatever comes until aborted.
async fn msg_session(
    addr: SocketAddr,
    connector: TlsConnector,
    name: String,
    gate: Arc<Semaphore>,
    mut phase: watch::Receiver<u8>,
    counts: Arc<[AtomicUsize; 2]>,
) -> anyhow::Result<()> {
    let permit = gate.acquire().await.context("gate")?;
    let stream = tls_connect(addr, &connector).await?;
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read).lines();
    let hello = ClientFrame::Hello {
        version: msg_proto::PROTOCOL_VERSION,
        agent: Some("msg-bench".into()),
    };
    let login = ClientFrame::Login(LoginRequest {
        id: 1,
        user: name,
        password: PASSWORD.into(),
        peer_port: None,
        peer_key: None,
        device: None,
    });
    let ping = msg_proto::encode_line(&ClientFrame::Ping)?;
    write.write_all(&msg_proto::encode_line(&hello)?).await?;
    write.write_all(&msg_proto::encode_line(&login)?).await?;
    write.write_all(&ping).await?;
    let mut permit = Some(permit);
    for round in 0..2 {
        if round == 1 {
            while *phase.borrow() < 1 {
                tokio::select! {
                    line = lines.next_line() => if line?.is_none() { bail!("closed") },
                    changed = phase.changed() => changed.context("phase")?,
                }
            }
            write.write_all(&ping).await?;
        }
        let deadline = Instant::now() + SETUP;
        loop {
            let line = tokio::time::timeout_at(deadline, lines.next_line())
                .await
                .context("no pong in time")??
                .context("the server closed an idle session")?;
            if line.contains("\"type\":\"error\"") {
                bail!("refused: {line}");
            }
            if line.trim() == "{\"type\":\"pong\"}" {
                break;
            }
        }
        permit.take();
        counts[round].fetch_add(1, Ordering::Relaxed);
    }
    while lines.next_line().await?.is_some() {}
    Ok(())
}

async fn mqtt_run(broker: &Mosquitto, k: usize, connector: &TlsConnector) -> Measured {
    let before = broker.rss_kib();
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(PARALLEL));
    let counts = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let addr = SocketAddr::from(([127, 0, 0, 1], broker.port));
    let mut tasks = Vec::with_capacity(k);
    for i in 0..k {
        let gate = gate.clone();
        let counts = counts.clone();
        let connector = connector.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = {
                let _permit = gate.acquire().await.context("gate")?;
                mqtt_connect(addr, &connector, &format!("idle-{i}")).await?
            };
            counts[0].fetch_add(1, Ordering::Relaxed);
            let mut buf = [0u8; 256];
            while stream.read(&mut buf).await? > 0 {}
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

/// An MQTT 3.1.1 CONNECT (clean session, keep-alive off) over TLS, and
/// its CONNACK.
async fn mqtt_connect(
    addr: SocketAddr,
    connector: &TlsConnector,
    client_id: &str,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let mut stream = tls_connect(addr, connector).await?;
    let id = client_id.as_bytes();
    let remaining = 10 + 2 + id.len();
    anyhow::ensure!(remaining < 128, "client id too long");
    let mut packet = vec![
        0x10,
        remaining as u8,
        0,
        4,
        b'M',
        b'Q',
        b'T',
        b'T',
        4,
        0x02,
        0,
        0,
    ];
    packet.extend_from_slice(&(id.len() as u16).to_be_bytes());
    packet.extend_from_slice(id);
    stream.write_all(&packet).await?;
    let mut connack = [0u8; 4];
    tokio::time::timeout(SETUP, stream.read_exact(&mut connack))
        .await
        .context("no CONNACK in time")??;
    if connack != [0x20, 0x02, 0x00, 0x00] {
        bail!("connection refused: {connack:?}");
    }
    Ok(stream)
}

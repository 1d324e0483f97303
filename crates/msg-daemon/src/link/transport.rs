//! The connection to the server: plain TCP or TLS, as the address says
//! (`tls://HOST:PORT`), with the trust decided once per login and reused
//! by every reconnect, and the rule that a password crosses plain TCP only
//! to this machine unless the user said `--insecure`. A service of several
//! nodes (`a:4747,b:4747`) is reached through the node that answered last;
//! when it is gone, the others are tried in turn.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use msg_local::server_addr::{self, ServerAddr, Transport};
use msg_proto::control::{Trust, codes};
use msg_proto::{Fingerprint, Refusal};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::link::trust::{self, Verdict};
use crate::link::unreachable;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The byte stream to the server.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// How to reach the server's nodes, and whom to trust there.
pub struct Dialer {
    nodes: Vec<Node>,
    /// The node that answered last: tried first.
    current: AtomicUsize,
    insecure: bool,
}

/// One node of the service.
struct Node {
    addr: ServerAddr,
    tls: Option<TlsDial>,
}

struct TlsDial {
    connector: TlsConnector,
    name: ServerName<'static>,
    verdict: Arc<Mutex<Option<Verdict>>>,
    /// A pin the user gave (flag or prompt): written to `known_servers`
    /// once a handshake proved the server holds that certificate.
    new_pin: Option<Fingerprint>,
    known_servers: PathBuf,
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal::new(codes::BAD_SERVER, message)
}

impl Dialer {
    /// Parses `server` and settles the trust: the system's roots and the CA
    /// file, the pin given now or kept in `known_servers`.
    pub fn new(server: &str, trust: &Trust, known_servers: PathBuf) -> Result<Self, Refusal> {
        let addrs = server_addr::parse_list(server).map_err(|e| bad(format!("{e}")))?;
        let mut nodes = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let tls = match addr.transport {
                Transport::Tcp => None,
                Transport::Tls => Some(tls_dial(&addr, trust, known_servers.clone())?),
            };
            nodes.push(Node { addr, tls });
        }
        Ok(Self {
            nodes,
            current: AtomicUsize::new(0),
            insecure: trust.insecure,
        })
    }

    /// The address(es) as the user wrote them (normalised), for texts and
    /// status, and the key of the device token.
    pub fn server(&self) -> String {
        let addrs: Vec<ServerAddr> = self.nodes.iter().map(|n| n.addr.clone()).collect();
        server_addr::list_to_string(&addrs)
    }

    /// Connects (and shakes hands) to the node that answered last, or else
    /// to the others in turn; the local address is the one the server sees
    /// us come from. Of several failures, a refusal that says more than
    /// "unreachable" (a certificate not trusted) is the one returned.
    pub async fn connect(&self) -> Result<(Stream, SocketAddr), Refusal> {
        let first = self.current.load(Ordering::Relaxed);
        let mut failure: Option<Refusal> = None;
        for step in 0..self.nodes.len() {
            let index = (first + step) % self.nodes.len();
            let node = &self.nodes[index];
            match self.connect_to(node).await {
                Ok(connected) => {
                    if index != first {
                        tracing::info!(server = %node.addr, "connected to another node");
                    }
                    self.current.store(index, Ordering::Relaxed);
                    return Ok(connected);
                }
                Err(refusal) => {
                    let telling = refusal.code != codes::SERVER_UNREACHABLE;
                    if failure.is_none() || telling {
                        failure = Some(refusal);
                    }
                    if telling {
                        break;
                    }
                }
            }
        }
        Err(failure.unwrap_or_else(|| unreachable(&self.server())))
    }

    async fn connect_to(&self, node: &Node) -> Result<(Stream, SocketAddr), Refusal> {
        let server = node.addr.to_string();
        let tcp = match timeout(CONNECT_TIMEOUT, TcpStream::connect(node.addr.authority())).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::info!("cannot connect to the server: {e}");
                return Err(unreachable(&server));
            }
            Err(_) => return Err(unreachable(&server)),
        };
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().map_err(|_| unreachable(&server))?;
        let Some(tls) = &node.tls else {
            let peer = tcp.peer_addr().map_err(|_| unreachable(&server))?;
            if !server_addr::plain_password_allowed(peer.ip(), self.insecure) {
                return Err(Refusal::new(
                    codes::INSECURE_TRANSPORT,
                    format!(
                        "Not sending the password over plain TCP to {server} ({}), which is not \
                         this machine: anyone on the way could read it. Use tls://{} if the \
                         server speaks TLS, or `msg login --insecure` (insecure = true in \
                         config.toml) to send it anyway",
                        peer.ip(),
                        node.addr.authority()
                    ),
                ));
            }
            return Ok((Stream::Plain(tcp), local));
        };
        *tls.verdict.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let handshake = tls.connector.connect(tls.name.clone(), tcp);
        let stream = match timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(refused(node, tls, &e)),
            Err(_) => {
                tracing::info!("the TLS handshake took too long");
                return Err(unreachable(&server));
            }
        };
        keep_pin(node, tls);
        Ok((Stream::Tls(Box::new(stream)), local))
    }
}

/// What a failed handshake with `node` tells the user.
fn refused(node: &Node, tls: &TlsDial, error: &io::Error) -> Refusal {
    let verdict = tls.verdict.lock().unwrap_or_else(|e| e.into_inner()).take();
    let server = node.addr.to_string();
    match verdict {
        Some(Verdict::Unknown { seen, reason }) => Refusal::new(
            codes::UNTRUSTED_CERTIFICATE,
            format!(
                "The TLS certificate of {server} is not trusted ({reason}). Its SHA-256 \
                     fingerprint is {seen}. If the server's administrator confirms it \
                     (`msg-server cert` printed it; `openssl x509 -noout -fingerprint -sha256 \
                     -in cert.pem` shows it), pin it: msg login --fingerprint {seen} USER"
            ),
        )
        .with_fingerprint(seen.to_string()),
        Some(Verdict::Changed { pinned, seen }) => Refusal::new(
            codes::CERTIFICATE_CHANGED,
            format!(
                "The TLS certificate of {server} has changed: pinned {pinned}, now {seen}. \
                     Someone may be impersonating the server. If its certificate really was \
                     replaced, remove the line for {} from {} and log in again",
                node.addr.authority(),
                tls.known_servers.display()
            ),
        )
        .with_fingerprint(seen.to_string()),
        _ => {
            tracing::info!("TLS handshake with the server failed: {error}");
            Refusal::new(
                codes::SERVER_UNREACHABLE,
                format!("The TLS handshake with {server} failed: {error}"),
            )
        }
    }
}

/// Writes a pin the user gave once the node proved to hold it.
fn keep_pin(node: &Node, tls: &TlsDial) {
    let Some(pin) = tls.new_pin else { return };
    let verdict = tls.verdict.lock().unwrap_or_else(|e| e.into_inner()).take();
    if verdict != Some(Verdict::Trusted { seen: pin }) {
        return;
    }
    let authority = node.addr.authority();
    match msg_local::known_servers::lookup(&tls.known_servers, &authority) {
        Ok(Some(known)) if known == pin => {}
        _ => match msg_local::known_servers::pin(&tls.known_servers, &authority, &pin) {
            Ok(()) => tracing::info!(server = %authority, fingerprint = %pin, "pinned"),
            Err(e) => tracing::warn!("{e}"),
        },
    }
}

fn tls_dial(addr: &ServerAddr, trust: &Trust, known_servers: PathBuf) -> Result<TlsDial, Refusal> {
    let name = ServerName::try_from(addr.host.clone())
        .map_err(|_| bad(format!("invalid server name `{}`", addr.host)))?;
    let new_pin = match &trust.fingerprint {
        Some(text) => Some(
            text.parse::<Fingerprint>()
                .map_err(|e| bad(e.to_string()))?,
        ),
        None => None,
    };
    let pin = match new_pin {
        Some(pin) => Some(pin),
        None => msg_local::known_servers::lookup(&known_servers, &addr.authority())
            .map_err(|e| Refusal::new(codes::INTERNAL, e.to_string()))?,
    };
    let ca = trust.ca.as_deref().map(std::path::Path::new);
    let roots = trust::roots(ca).map_err(|e| bad(e.to_string()))?;
    let verdict = Arc::new(Mutex::new(None));
    let config = trust::client_config(roots, pin, verdict.clone())
        .map_err(|e| Refusal::new(codes::INTERNAL, e.to_string()))?;
    Ok(TlsDial {
        connector: TlsConnector::from(config),
        name,
        verdict,
        new_pin,
        known_servers,
    })
}

/// A dialer for `server`, with the pins kept in the user's data dir.
pub fn dialer(server: &str, trust: &Trust) -> Result<Dialer, Refusal> {
    let known_servers = msg_local::paths::Paths::from_env()
        .map_err(|e| Refusal::new(codes::INTERNAL, e.to_string()))?
        .known_servers_path();
    Dialer::new(server, trust, known_servers)
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

//! A client of the msg server protocol: connect, greet, log in; and a cheap
//! line scanner for receivers that only need a field or two of each frame.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use msg_proto::Secret;
use msg_proto::server::{ClientFrame, LoginRequest, ServerFrame};
use msg_proto::{JsonLines, PROTOCOL_VERSION};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio_util::codec::Framed;

use crate::launch::PASSWORD;

pub type Conn = Framed<TcpStream, JsonLines<ServerFrame, ClientFrame>>;

/// Deadline of one protocol step (connect, hello, login).
pub const STEP: Duration = Duration::from_secs(30);

/// The next frame, within [`STEP`]; a bad frame or a closed stream is an error.
pub async fn next(conn: &mut Conn) -> anyhow::Result<ServerFrame> {
    match tokio::time::timeout(STEP, conn.next()).await {
        Err(_) => bail!("no frame from the server within {STEP:?}"),
        Ok(None) => bail!("the server closed the connection"),
        Ok(Some(Err(e))) => Err(e).context("reading from the server"),
        Ok(Some(Ok(Err(e)))) => Err(e).context("the server sent a bad frame"),
        Ok(Some(Ok(Ok(frame)))) => Ok(frame),
    }
}

/// Connects with TCP_NODELAY (as the server sets on its side) and says
/// hello: a connection ready to log in.
pub async fn greet(addr: SocketAddr) -> anyhow::Result<Conn> {
    let stream = tokio::time::timeout(STEP, TcpStream::connect(addr))
        .await
        .context("connect timed out")?
        .context("cannot connect to msg-server")?;
    hello(stream).await
}

/// [`greet`] from the local address `from`: another client, as far as the
/// server's per-address rules tell (any 127.x.y.z reaches loopback).
pub async fn greet_from(addr: SocketAddr, from: std::net::IpAddr) -> anyhow::Result<Conn> {
    let socket = if from.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(from, 0))?;
    let stream = tokio::time::timeout(STEP, socket.connect(addr))
        .await
        .context("connect timed out")?
        .context("cannot connect to msg-server")?;
    hello(stream).await
}

async fn hello(stream: TcpStream) -> anyhow::Result<Conn> {
    stream.set_nodelay(true)?;
    let mut conn = Framed::new(stream, JsonLines::new());
    conn.send(ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        agent: Some("msg-bench".into()),
    })
    .await?;
    match next(&mut conn).await? {
        ServerFrame::Hello { .. } => Ok(conn),
        other => bail!("expected hello, got {other:?}"),
    }
}

/// Connects, says hello and logs in as `user`. Events before the welcome
/// are skipped.
pub async fn login(addr: SocketAddr, user: &str) -> anyhow::Result<Conn> {
    authenticate(greet(addr).await?, user).await
}

/// [`login`] from the local address `from` (see [`spread_source`]).
pub async fn login_from(
    addr: SocketAddr,
    from: std::net::IpAddr,
    user: &str,
) -> anyhow::Result<Conn> {
    authenticate(greet_from(addr, from).await?, user).await
}

/// Loopback source addresses the many-session scenarios spread their
/// clients over, as clients on many machines would be. From one address,
/// Linux looks for a free local port to a server by walking its ephemeral
/// range, and past ~14,000 connections to the same server (half the range
/// is tried first) each connect walked thousands of used ports: the bench's
/// own kernel, not the server, set the pace of the biggest login storms.
pub const SOURCES: u8 = 16;

/// The source address of the `i`th client: 127.0.0.1 to 127.0.0.[`SOURCES`].
pub fn spread_source(i: usize) -> std::net::IpAddr {
    std::net::Ipv4Addr::new(127, 0, 0, 1 + (i % usize::from(SOURCES)) as u8).into()
}

async fn authenticate(mut conn: Conn, user: &str) -> anyhow::Result<Conn> {
    conn.send(ClientFrame::Login(LoginRequest {
        id: 1,
        user: user.to_owned(),
        password: Secret::from(PASSWORD),
        peer_port: None,
        peer_key: None,
        device: None,
    }))
    .await?;
    loop {
        match next(&mut conn).await? {
            ServerFrame::Welcome { .. } => return Ok(conn),
            ServerFrame::Error { message, .. } => bail!("login of {user} refused: {message}"),
            _ => {}
        }
    }
}

/// `who`: the users online but the asker, as the server lists them (events
/// before the reply are skipped).
pub async fn who(conn: &mut Conn) -> anyhow::Result<Vec<String>> {
    conn.send(ClientFrame::Who { id: 2 }).await?;
    loop {
        match next(conn).await? {
            ServerFrame::Users { users, .. } => return Ok(users),
            ServerFrame::Error { message, .. } => bail!("who refused: {message}"),
            _ => {}
        }
    }
}

/// Logs in many users, `parallel` at a time, in order.
pub async fn login_many(
    addr: SocketAddr,
    users: impl IntoIterator<Item = String>,
    parallel: usize,
) -> anyhow::Result<Vec<Conn>> {
    login_many_over(&[addr], users, parallel).await
}

/// The same over several servers (the nodes of a cluster): the `i`th user
/// logs in to `addrs[i % addrs.len()]`.
pub async fn login_many_over(
    addrs: &[SocketAddr],
    users: impl IntoIterator<Item = String>,
    parallel: usize,
) -> anyhow::Result<Vec<Conn>> {
    let conns: Vec<anyhow::Result<Conn>> = futures::stream::iter(users.into_iter().enumerate())
        .map(|(i, user)| async move { login(addrs[i % addrs.len()], &user).await })
        .buffered(parallel.max(1))
        .collect()
        .await;
    conns.into_iter().collect()
}

/// Reads raw lines from a logged-in connection without decoding them as
/// frames: receivers that only look for one field keep the load generator's
/// CPU out of the figure.
pub struct LineReader {
    read: OwnedReadHalf,
    buf: BytesMut,
    /// Where the newline search resumes.
    scanned: usize,
}

impl LineReader {
    /// Takes over a connection after login, keeping bytes already buffered.
    pub fn new(conn: Conn) -> (Self, tokio::net::tcp::OwnedWriteHalf) {
        let parts = conn.into_parts();
        let (read, write) = parts.io.into_split();
        let mut buf = BytesMut::with_capacity(16 * 1024);
        buf.extend_from_slice(&parts.read_buf);
        (
            Self {
                read,
                buf,
                scanned: 0,
            },
            write,
        )
    }

    /// Calls `each` for every complete line read by one socket read (or
    /// already buffered); `Ok(false)` at end of stream.
    pub async fn read_lines(&mut self, mut each: impl FnMut(&[u8])) -> anyhow::Result<bool> {
        if self.drain(&mut each) {
            return Ok(true);
        }
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        let n = self.read.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Ok(false);
        }
        self.drain(&mut each);
        Ok(true)
    }

    /// Hands out complete lines; whether there were any.
    fn drain(&mut self, each: &mut impl FnMut(&[u8])) -> bool {
        let mut start = 0;
        let mut any = false;
        let mut from = self.scanned;
        while let Some(i) = self.buf[from..].iter().position(|&b| b == b'\n') {
            let end = from + i;
            each(&self.buf[start..end]);
            any = true;
            start = end + 1;
            from = start;
        }
        let _ = self.buf.split_to(start);
        self.scanned = self.buf.len();
        any
    }
}

/// The text of a `broadcast` or `message` line, if it is one (the bench's
/// texts contain no escapes).
pub fn text_field(line: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"\"text\":\"";
    let at = line.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    line.get(at..)
}

//! Test harness: the real `msg-server` binary on an ephemeral loopback port,
//! with its own credentials file and state directory, driven by a small
//! protocol client. Every process is killed and reaped on drop; every wait
//! has a deadline.

#![allow(dead_code)]

pub mod cluster;
pub mod services;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use msg_proto::server::{
    BroadcastRequest, ClientFrame, LoginRequest, SendRequest, ServerFrame, UserRequest,
    WhoSinceRequest,
};
use msg_proto::{ErrorCode, JsonLines, PROTOCOL_VERSION};
use msg_proto::{MsgId, RequestId};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::Framed;

/// Longest any single expected event may take.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub const SAMPLE_ACCOUNTS: &str = "# test accounts\n\
hans falcon*solo\nyoda wise@!man\nluke jedi*knight\nvader sithlord**\nr2d2 do*!*ro\nleia alderaan01\n";

pub fn password_of(user: &str) -> &'static str {
    match user {
        "hans" => "falcon*solo",
        "yoda" => "wise@!man",
        "luke" => "jedi*knight",
        "vader" => "sithlord**",
        "r2d2" => "do*!*ro",
        "leia" => "alderaan01",
        _ => "pw",
    }
}

/// A temp directory with a credentials file and a state directory, outliving
/// server restarts.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Self::with_accounts(SAMPLE_ACCOUNTS)
    }

    pub fn with_accounts(accounts: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("credentials.txt"), accounts).expect("write credentials");
        Self { dir }
    }

    pub fn credentials(&self) -> PathBuf {
        self.dir.path().join("credentials.txt")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Starts the server on an ephemeral loopback port with these extra
    /// arguments.
    pub fn start(&self, extra: &[&str]) -> Server {
        self.start_with_env(extra, &[])
    }

    /// Starts the server on an ephemeral port of the loopback address
    /// `bind` (`127.0.0.1`, `::1`).
    pub fn start_bound(&self, bind: &str, extra: &[&str]) -> Server {
        self.start_full(bind, extra, &[])
    }

    pub fn start_with_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Server {
        self.start_full("127.0.0.1", extra, env)
    }

    fn start_full(&self, bind: &str, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut args: Vec<String> = vec![
            "--port".into(),
            "0".into(),
            "--bind".into(),
            bind.into(),
            "--credentials".into(),
            self.credentials().display().to_string(),
            "--state-dir".into(),
            self.state_dir().display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Server::spawn_with_env(&args, self.dir.path(), env)
    }
}

pub fn server_bin() -> &'static str {
    env!("CARGO_BIN_EXE_msg-server")
}

/// A running `msg-server`; killed and reaped on drop.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    stderr_log: PathBuf,
}

impl Server {
    pub fn spawn(args: &[String], workdir: &Path) -> Self {
        Self::spawn_with_env(args, workdir, &[])
    }

    pub fn spawn_with_env(args: &[String], workdir: &Path, env: &[(&str, &str)]) -> Self {
        let stderr_log = workdir.join(format!("server-{}.log", rand_suffix()));
        let log = std::fs::File::create(&stderr_log).expect("log file");
        let mut child = Command::new(server_bin())
            .args(args)
            .current_dir(workdir)
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start msg-server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Self {
            child: Some(child),
            addr: "0.0.0.0:0".parse().expect("addr"),
            stderr_log,
        };
        let line = rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("msg-server did not start; log:\n{}", server.log()));
        let addr = line
            .strip_prefix("msg-server listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        server.addr = addr.parse().expect("listening address");
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("running")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Sends `signal` ("TERM", "HUP", ...) to the server.
    #[cfg(unix)]
    pub fn signal(&self, signal: &str) {
        let number = match signal {
            "TERM" => libc::SIGTERM,
            "INT" => libc::SIGINT,
            "HUP" => libc::SIGHUP,
            other => panic!("no such signal in these tests: {other}"),
        };
        let pid = libc::pid_t::try_from(self.pid()).expect("a pid");
        // SAFETY: kill(2) on our own child, which is not reaped before
        // `self.child` is taken, so the pid cannot have been reused.
        let sent = unsafe { libc::kill(pid, number) };
        assert_eq!(sent, 0, "kill -{signal}");
    }

    /// Waits for the process to exit on its own; returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("msg-server did not exit in time");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A failing test shows what the server saw (its log goes with the
        // temp dir): the last lines, where the failure is.
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            eprintln!(
                "--- last lines of the server's log ---\n{}",
                tail.join("\n")
            );
        }
    }
}

/// Lines of the server's log shown when a test fails.
const LOG_TAIL: usize = 60;

/// Runs `msg-server passwd USER --password-stdin` on the env's credentials
/// file (an argon2 hash for `user`).
pub fn passwd(env: &Env, user: &str, stdin: &str) -> std::process::Output {
    let mut command = Command::new(server_bin());
    command
        .args(["passwd", user, "--password-stdin", "--credentials"])
        .arg(env.credentials())
        .arg("--state-dir")
        .arg(env.state_dir())
        // Its default state directory is under HOME: the test's own,
        // never the machine's.
        .env("HOME", env.dir.path())
        .env_remove("XDG_DATA_HOME")
        .env_remove("STATE_DIRECTORY");
    run_with_input(&mut command, stdin)
}

/// Runs an admin command (`msg-server passwd …`) with `stdin` as its input
/// and collects what it prints.
pub fn run_with_input(command: &mut Command, stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = ChildGuard::spawn(
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    // It may refuse (and exit) before reading: a broken pipe is fine.
    let _ = child
        .child()
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    // Hashing takes well under a second.
    child.wait_output(DEADLINE)
}

/// A `register` request for `user` with `password` (no private sessions,
/// no device token).
pub fn register(user: &str, password: &str) -> impl FnOnce(RequestId) -> ClientFrame + use<> {
    let (user, password) = (user.to_owned(), password.to_owned());
    move |id| {
        ClientFrame::Register(LoginRequest {
            id,
            user,
            password: password.as_str().into(),
            peer_port: None,
            peer_key: None,
            device: None,
        })
    }
}

/// A child process that is killed and reaped when dropped, so that no test
/// leaves one behind, even one that panics.
pub struct ChildGuard(Option<Child>);

impl ChildGuard {
    pub fn spawn(command: &mut Command) -> Self {
        Self::adopt(command.spawn().expect("start a child process"))
    }

    pub fn adopt(child: Child) -> Self {
        Self(Some(child))
    }

    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("running")
    }

    /// Waits at most `within` for the process to exit, collecting what it
    /// writes to piped stdout and stderr meanwhile (so a full pipe cannot
    /// stall it).
    pub fn wait_output(mut self, within: Duration) -> std::process::Output {
        use std::io::Read;
        let child = self.child();
        let collect = |pipe: Option<Box<dyn Read + Send>>| {
            pipe.map(|mut pipe| {
                std::thread::spawn(move || {
                    let mut bytes = Vec::new();
                    let _ = pipe.read_to_end(&mut bytes);
                    bytes
                })
            })
        };
        let stdout = collect(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let stderr = collect(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let deadline = std::time::Instant::now() + within;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            // Panicking drops the guard, which kills the process.
            assert!(
                std::time::Instant::now() < deadline,
                "a child process did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let joined = |reader: Option<std::thread::JoinHandle<Vec<u8>>>| {
            reader.map_or_else(Vec::new, |r| r.join().unwrap_or_default())
        };
        std::process::Output {
            status,
            stdout: joined(stdout),
            stderr: joined(stderr),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

type Conn = Framed<TcpStream, JsonLines<ServerFrame, ClientFrame>>;

/// A protocol client as a test sees it: requests with ids, events buffered.
pub struct Client {
    conn: Conn,
    next_id: RequestId,
    /// Frames received while waiting for something else.
    backlog: VecDeque<ServerFrame>,
    /// The rest of a `presence_batch` being split.
    split: VecDeque<ServerFrame>,
    /// Return `presence_batch` frames whole instead of split.
    pub whole_batches: bool,
    /// Acknowledge messages as a daemon would, as soon as they arrive.
    pub auto_ack: bool,
    /// Ping while waiting for a frame, every this long, as a real client
    /// does: a wait the server causes (a slow store on a busy machine) is
    /// then not taken for a dead connection.
    pub ping_every: Option<Duration>,
    pub user: String,
}

impl Client {
    /// Connects and exchanges `hello`.
    pub async fn connect(addr: SocketAddr) -> Self {
        let mut client = Self::connect_raw(addr).await;
        client
            .send(ClientFrame::Hello {
                version: PROTOCOL_VERSION,
                agent: Some("tests".into()),
            })
            .await;
        match client.next_frame().await {
            ServerFrame::Hello { version, .. } => assert_eq!(version, PROTOCOL_VERSION),
            other => panic!("expected hello, got {other:?}"),
        }
        client
    }

    /// Connects without saying anything.
    pub async fn connect_raw(addr: SocketAddr) -> Self {
        Self::connect_raw_with_buffer(addr, None).await
    }

    /// Logs in with a tiny socket receive buffer, so that a client which
    /// stops reading backs up into the server quickly.
    pub async fn login_with_small_buffer(addr: SocketAddr, user: &str) -> Self {
        let mut client = Self::connect_raw_with_buffer(addr, Some(4096)).await;
        client
            .send(ClientFrame::Hello {
                version: PROTOCOL_VERSION,
                agent: None,
            })
            .await;
        assert!(matches!(
            client.next_frame().await,
            ServerFrame::Hello { .. }
        ));
        assert!(matches!(
            client.try_login(user, password_of(user)).await,
            ServerFrame::Welcome { .. }
        ));
        client
    }

    /// Connects from another local address (`127.0.0.2`: the whole of
    /// 127.0.0.0/8 is loopback) and exchanges `hello`.
    pub async fn connect_from(addr: SocketAddr, local: std::net::IpAddr) -> Self {
        let mut client = Self::connect_raw_full(addr, None, Some(local)).await;
        client
            .send(ClientFrame::Hello {
                version: PROTOCOL_VERSION,
                agent: None,
            })
            .await;
        assert!(matches!(
            client.next_frame().await,
            ServerFrame::Hello { .. }
        ));
        client
    }

    async fn connect_raw_with_buffer(addr: SocketAddr, recv_buffer: Option<u32>) -> Self {
        Self::connect_raw_full(addr, recv_buffer, None).await
    }

    async fn connect_raw_full(
        addr: SocketAddr,
        recv_buffer: Option<u32>,
        local: Option<std::net::IpAddr>,
    ) -> Self {
        let socket = if addr.is_ipv6() {
            tokio::net::TcpSocket::new_v6()
        } else {
            tokio::net::TcpSocket::new_v4()
        }
        .expect("socket");
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        if let Some(ip) = local {
            socket.bind(SocketAddr::new(ip, 0)).expect("bind");
        }
        let stream = timeout(DEADLINE, socket.connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        Self {
            conn: Framed::new(stream, JsonLines::new()),
            next_id: 1,
            backlog: VecDeque::new(),
            split: VecDeque::new(),
            whole_batches: false,
            auto_ack: true,
            ping_every: None,
            user: String::new(),
        }
    }

    /// Connects and logs in with the sample password; panics on refusal.
    pub async fn login(addr: SocketAddr, user: &str) -> Self {
        let mut client = Self::connect(addr).await;
        match client.try_login(user, password_of(user)).await {
            ServerFrame::Welcome { .. } => client,
            other => panic!("login of {user} refused: {other:?}"),
        }
    }

    pub async fn try_login(&mut self, user: &str, password: &str) -> ServerFrame {
        self.user = user.to_owned();
        self.request(|id| {
            ClientFrame::Login(LoginRequest {
                id,
                user: user.into(),
                password: password.into(),
                peer_port: Some(40000),
                // Any well-formed key: these clients never dial each other.
                peer_key: Some(msg_proto::peer::PeerKey::new([0x5a; 32])),
                device: None,
            })
        })
        .await
    }

    pub async fn send(&mut self, frame: ClientFrame) {
        timeout(DEADLINE, self.conn.send(frame))
            .await
            .expect("send timed out")
            .expect("send");
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let stream = self.conn.get_mut();
        timeout(DEADLINE, stream.write_all(bytes))
            .await
            .expect("write timed out")
            .expect("write");
    }

    /// Writes raw bytes, reporting failure (the server may have closed).
    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match timeout(DEADLINE, self.conn.get_mut().write_all(bytes)).await {
            Ok(result) => result,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    /// Closes the sending side (the server reads end of stream); replies
    /// can still be read.
    pub async fn shutdown_write(&mut self) {
        timeout(DEADLINE, self.conn.get_mut().shutdown())
            .await
            .expect("shutdown timed out")
            .expect("shutdown");
    }

    /// Sends a request and returns its id, without waiting for the reply.
    pub async fn submit(&mut self, make: impl FnOnce(RequestId) -> ClientFrame) -> RequestId {
        let id = self.next_id;
        self.next_id += 1;
        self.send(make(id)).await;
        id
    }

    /// Sends a request and waits for its reply; events meanwhile are kept.
    pub async fn request(&mut self, make: impl FnOnce(RequestId) -> ClientFrame) -> ServerFrame {
        let id = self.submit(make).await;
        self.reply(id).await
    }

    /// Waits for the reply to request `id`.
    pub async fn reply(&mut self, id: RequestId) -> ServerFrame {
        if let Some(pos) = self.backlog.iter().position(|f| f.request_id() == Some(id)) {
            return self.backlog.remove(pos).expect("present");
        }
        loop {
            let frame = self.next_frame().await;
            if frame.request_id() == Some(id) {
                return frame;
            }
            self.backlog.push_back(frame);
        }
    }

    /// Waits for the reply to request `id`, pinging every `every` meanwhile
    /// as a real client does, so that a long wait is not taken for a dead
    /// connection.
    pub async fn reply_pinging(&mut self, id: RequestId, every: Duration) -> ServerFrame {
        let pinging = self.ping_every.replace(every);
        let reply = self.reply(id).await;
        self.ping_every = pinging;
        reply
    }

    /// The next frame that is not a reply (an event), in arrival order.
    pub async fn event(&mut self) -> ServerFrame {
        if let Some(pos) = self.backlog.iter().position(|f| f.request_id().is_none()) {
            return self.backlog.remove(pos).expect("present");
        }
        loop {
            let frame = self.next_frame().await;
            if frame.request_id().is_none() {
                return frame;
            }
            self.backlog.push_back(frame);
        }
    }

    /// Takes an already received event matching `what`, without waiting.
    pub fn pending_event(&mut self, what: impl Fn(&ServerFrame) -> bool) -> Option<ServerFrame> {
        let pos = self
            .backlog
            .iter()
            .position(|f| f.request_id().is_none() && what(f))?;
        self.backlog.remove(pos)
    }

    /// The next direct message, skipping other events.
    pub async fn next_message(&mut self) -> ServerFrame {
        self.event_matching(|f| matches!(f, ServerFrame::Message { .. }))
            .await
    }

    /// Whether the reply to request `id` has already arrived.
    pub fn has_reply(&self, id: RequestId) -> bool {
        self.backlog.iter().any(|f| f.request_id() == Some(id))
    }

    /// Skips events until one matches.
    pub async fn event_matching(&mut self, what: impl Fn(&ServerFrame) -> bool) -> ServerFrame {
        loop {
            let frame = self.event().await;
            if what(&frame) {
                return frame;
            }
        }
    }

    /// Asserts that no event arrives within `within` (a bounded wait, used
    /// only after a round trip that would have carried the event first).
    pub async fn assert_no_event(&mut self, within: Duration) {
        if let Some(frame) = self.backlog.iter().find(|f| f.request_id().is_none()) {
            panic!("unexpected event {frame:?}");
        }
        if let Ok(frame) = timeout(within, self.read()).await {
            panic!("unexpected frame {frame:?}");
        }
    }

    /// The next decoded frame; panics on timeout, bad frames or EOF.
    pub async fn next_frame(&mut self) -> ServerFrame {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let wait = self
                .ping_every
                .map_or(DEADLINE, |every| every.min(DEADLINE));
            // Only the receiving is timed: it loses nothing when cut short.
            match timeout(wait, self.receive()).await {
                Ok(Some(frame)) => {
                    self.acknowledge(&frame).await;
                    return frame;
                }
                Ok(None) => panic!("{}: connection closed", self.user),
                Err(_) if tokio::time::Instant::now() < deadline && self.ping_every.is_some() => {
                    self.send(ClientFrame::Ping).await;
                }
                Err(_) => panic!("{}: no frame within {DEADLINE:?}", self.user),
            }
        }
    }

    async fn read(&mut self) -> Option<ServerFrame> {
        let frame = self.receive().await?;
        self.acknowledge(&frame).await;
        Some(frame)
    }

    /// The next frame off the wire (cancel-safe). A `presence_batch` is
    /// split into the `presence` frames it stands for (tests ask about one
    /// user's notice), unless `whole_batches` is set.
    async fn receive(&mut self) -> Option<ServerFrame> {
        if let Some(frame) = self.split.pop_front() {
            return Some(frame);
        }
        let frame = match self.conn.next().await? {
            Ok(Ok(frame)) => frame,
            Ok(Err(e)) => panic!("server sent a bad frame: {e}"),
            Err(_) => return None,
        };
        match frame {
            ServerFrame::PresenceBatch { events } if !self.whole_batches => {
                assert!(!events.is_empty(), "an empty presence batch");
                self.split
                    .extend(events.into_iter().map(|event| ServerFrame::Presence {
                        user: event.user().to_owned(),
                        online: event.online(),
                        at: event.at(),
                    }));
                self.split.pop_front()
            }
            frame => Some(frame),
        }
    }

    /// Acknowledges a direct message, if this client does so by itself.
    async fn acknowledge(&mut self, frame: &ServerFrame) {
        if self.auto_ack
            && let ServerFrame::Message { msg_id, .. } = frame
        {
            let ack = ClientFrame::Ack { msg_id: *msg_id };
            let _ = self.conn.send(ack).await;
        }
    }

    pub async fn ack(&mut self, msg_id: MsgId) {
        self.send(ClientFrame::Ack { msg_id }).await;
    }

    /// Waits until the server closes the connection, returning what it sent
    /// before closing.
    pub async fn closed(&mut self) -> Vec<ServerFrame> {
        let mut seen: Vec<ServerFrame> = self.backlog.drain(..).collect();
        loop {
            match timeout(DEADLINE, self.read()).await {
                Ok(Some(frame)) => seen.push(frame),
                Ok(None) => return seen,
                Err(_) => panic!("{}: connection not closed within {DEADLINE:?}", self.user),
            }
        }
    }

    // ---- command shorthands -------------------------------------------------

    /// Sends a message and waits for the `sent` reply (the recipient, if
    /// online, must be acknowledging).
    pub async fn message(&mut self, to: &str, text: &str) -> ServerFrame {
        self.request(|id| {
            ClientFrame::Send(SendRequest {
                id,
                to: to.into(),
                text: text.into(),
                client_id: None,
            })
        })
        .await
    }

    pub async fn who(&mut self) -> Vec<String> {
        match self.request(|id| ClientFrame::Who { id }).await {
            ServerFrame::Users { users, .. } => users,
            other => panic!("who: {other:?}"),
        }
    }

    pub async fn who_since(&mut self, secs: u64) -> Vec<String> {
        match self
            .request(|id| ClientFrame::WhoSince(WhoSinceRequest { id, secs }))
            .await
        {
            ServerFrame::Users { users, .. } => users,
            other => panic!("who_since: {other:?}"),
        }
    }

    pub async fn block(&mut self, user: &str) -> ServerFrame {
        self.request(|id| {
            ClientFrame::Block(UserRequest {
                id,
                user: user.into(),
            })
        })
        .await
    }

    pub async fn unblock(&mut self, user: &str) -> ServerFrame {
        self.request(|id| {
            ClientFrame::Unblock(UserRequest {
                id,
                user: user.into(),
            })
        })
        .await
    }

    pub async fn broadcast(&mut self, text: &str) -> ServerFrame {
        self.request(|id| {
            ClientFrame::Broadcast(BroadcastRequest {
                id,
                text: text.into(),
            })
        })
        .await
    }

    pub async fn logout(mut self) {
        let reply = self
            .request(|id| ClientFrame::Logout {
                id,
                revoke_device: false,
            })
            .await;
        assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");
        self.closed().await;
    }
}

/// A `send` request to `to`, for [`Client::submit`].
pub fn send_to(to: &str, text: &str) -> impl FnOnce(RequestId) -> ClientFrame {
    let (to, text) = (to.to_owned(), text.to_owned());
    move |id| {
        ClientFrame::Send(SendRequest {
            id,
            to,
            text,
            client_id: None,
        })
    }
}

/// The text of an `ok` reply.
pub fn ok_text(frame: &ServerFrame) -> Option<&str> {
    match frame {
        ServerFrame::Ok { message, .. } => message.as_deref(),
        other => panic!("expected ok, got {other:?}"),
    }
}

/// The code and text of an `error` frame.
pub fn error_of(frame: &ServerFrame) -> (ErrorCode, &str) {
    match frame {
        ServerFrame::Error { code, message, .. } => (*code, message.as_str()),
        other => panic!("expected an error, got {other:?}"),
    }
}

pub fn is_presence(user: &str, online: bool) -> impl Fn(&ServerFrame) -> bool + '_ {
    move |f| matches!(f, ServerFrame::Presence { user: u, online: o, .. } if u == user && *o == online)
}

/// Polls `check` until it returns true or the deadline passes.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

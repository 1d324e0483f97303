//! Test harness: real `msg-server`, one `msgd` per simulated user (each with
//! its own HOME, XDG_* and MSG_RUNTIME_DIR), and the `msg` binary.
//!
//! Binaries: `msg` comes from Cargo (`CARGO_BIN_EXE_msg`); `msg-server` and
//! `msgd` live in other packages, so the harness runs
//! `cargo build -p msg-server -p msg-daemon --bins` once per test binary (a
//! no-op when they are fresh) and takes them from the same target directory.
//!
//! Cleanup: `msg login` starts `msgd` detached (its parent `msg` exits), so
//! the test process makes itself a child subreaper: orphaned daemons become
//! its children, and each `User` kills and reaps its daemons on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

#[cfg(target_os = "linux")]
pub mod capture;
#[cfg(unix)]
pub mod pty;
pub mod tls;

/// Deadline for any single command or wait in the tests.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Bins {
    pub server: PathBuf,
    pub msgd: PathBuf,
    pub msg: PathBuf,
}

pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| {
        #[cfg(target_os = "linux")]
        // SAFETY: prctl with these arguments only sets a flag on this process.
        unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "msg-server",
                "-p",
                "msg-daemon",
                "--bins",
            ])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building msg-server and msgd failed");
        let msg = PathBuf::from(env!("CARGO_BIN_EXE_msg"));
        let dir = msg.parent().expect("target dir").to_owned();
        let exe = |name: &str| dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        let bins = Bins {
            server: exe("msg-server"),
            msgd: exe("msgd"),
            msg,
        };
        assert!(bins.server.is_file() && bins.msgd.is_file());
        bins
    })
}

/// Kills and reaps a child on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads a child's stdout lines on a thread, so a test can wait for a line
/// with a deadline.
pub struct Lines(mpsc::Receiver<String>);

impl Lines {
    pub fn new(stdout: impl std::io::Read + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self(rx)
    }

    pub fn next(&self) -> String {
        self.0
            .recv_timeout(DEADLINE)
            .expect("a line within the deadline")
    }

    /// Waits for a line matching `want`, returning the ones skipped before it.
    pub fn until(&self, want: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + DEADLINE;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .0
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no matching line; got {skipped:?}"));
            if want(&line) {
                return skipped;
            }
            skipped.push(line);
        }
    }
}

pub struct ServerOptions {
    pub timeout: u64,
    pub block_duration: u64,
    pub allow_register: bool,
    /// The server's hidden `--private-timeout-ms` (unanswered requests).
    pub private_timeout_ms: Option<u64>,
    /// Keep the server's log (debug level) for [`Server::log`].
    pub log: bool,
    /// More arguments (e.g. `--tls-cert FILE --tls-key FILE`).
    pub extra_args: Vec<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            timeout: 600,
            block_duration: 60,
            allow_register: false,
            private_timeout_ms: None,
            log: false,
            extra_args: Vec::new(),
        }
    }
}

pub const ACCOUNTS: &[(&str, &str)] = &[
    ("hans", "falcon*solo"),
    ("luke", "jedi*knight"),
    ("yoda", "wise@!man"),
    ("leia", "alderaan01"),
];

pub fn password(user: &str) -> &'static str {
    ACCOUNTS
        .iter()
        .find(|(name, _)| *name == user)
        .map(|(_, p)| *p)
        .expect("known user")
}

pub struct Server {
    guard: Option<ChildGuard>,
    dir: tempfile::TempDir,
    options: ServerOptions,
    pub addr: String,
}

impl Server {
    pub fn start() -> Self {
        Self::with(ServerOptions::default())
    }

    pub fn with(options: ServerOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let creds: String = ACCOUNTS.iter().map(|(u, p)| format!("{u} {p}\n")).collect();
        std::fs::write(dir.path().join("credentials.txt"), creds).unwrap();
        let mut server = Self {
            guard: None,
            dir,
            options,
            addr: String::new(),
        };
        server.launch("0");
        server
    }

    fn launch(&mut self, port: &str) {
        let mut cmd = Command::new(&bins().server);
        cmd.args(["--port", port, "--bind", "127.0.0.1"])
            .arg("--block-duration")
            .arg(self.options.block_duration.to_string())
            .arg("--timeout")
            .arg(self.options.timeout.to_string())
            .arg("--credentials")
            .arg(self.dir.path().join("credentials.txt"))
            .arg("--state-dir")
            .arg(self.dir.path().join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if self.options.log {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join("server.log"))
                .unwrap();
            cmd.arg("-v").stderr(log);
        }
        if self.options.allow_register {
            cmd.arg("--allow-register");
        }
        if let Some(ms) = self.options.private_timeout_ms {
            cmd.arg("--private-timeout-ms").arg(ms.to_string());
        }
        cmd.args(&self.options.extra_args);
        let mut child = cmd.spawn().expect("start msg-server");
        let lines = Lines::new(child.stdout.take().unwrap());
        let guard = ChildGuard(child);
        let line = lines.next();
        let addr = line
            .strip_prefix("msg-server listening on ")
            .unwrap_or_else(|| panic!("unexpected: {line}"));
        self.addr = addr.to_owned();
        self.guard = Some(guard);
    }

    /// The server's process id (to signal it).
    pub fn pid(&self) -> u32 {
        self.guard.as_ref().expect("running").0.id()
    }

    pub fn port(&self) -> &str {
        self.addr.rsplit(':').next().unwrap()
    }

    /// Kills the server (no goodbye to clients) and starts it again on the
    /// same port with the same state.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Kills the server (no goodbye to clients), keeping its state.
    pub fn stop(&mut self) {
        self.guard = None;
    }

    /// Starts a stopped server again on the same port.
    pub fn start_again(&mut self) {
        let port = self.port().to_owned();
        self.launch(&port);
    }

    /// What the server logged (with [`ServerOptions::log`]).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The server's credentials file.
    pub fn credentials(&self) -> PathBuf {
        self.dir.path().join("credentials.txt")
    }

    /// Where the server keeps its database.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }
}

/// What a user saw from one `msg` invocation.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }

    pub fn out(&self) -> &str {
        self.stdout.trim_end()
    }

    pub fn err(&self) -> &str {
        self.stderr.trim_end()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(self.out()).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// One simulated user: an environment of their own and their msgd.
pub struct User {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub server: String,
    daemons: std::cell::RefCell<Vec<i32>>,
}

impl User {
    pub fn new(name: &str, server: &Server) -> Self {
        Self::with_server_addr(name, &server.addr)
    }

    /// A user whose daemon reaches the server at `addr` (e.g. a relay).
    pub fn with_server_addr(name: &str, addr: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            name: name.into(),
            dir,
            server: addr.into(),
            daemons: Default::default(),
        }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn runtime_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data").join("msg")
    }

    /// The environment every process of this user runs with.
    pub fn envs(&self) -> Vec<(&'static str, PathBuf)> {
        let d = self.dir.path();
        vec![
            ("PATH", std::env::var_os("PATH").unwrap_or_default().into()),
            ("HOME", self.home()),
            ("XDG_CONFIG_HOME", d.join("config")),
            ("XDG_DATA_HOME", d.join("data")),
            ("XDG_STATE_HOME", d.join("state")),
            ("XDG_CACHE_HOME", d.join("cache")),
            ("XDG_RUNTIME_DIR", d.join("xdg-run")),
            ("MSG_RUNTIME_DIR", self.runtime_dir()),
            ("MSG_SERVER", self.server.clone().into()),
        ]
    }

    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear().envs(self.envs()).stdin(Stdio::null());
        cmd
    }

    /// Runs `msg ARGS` with optional stdin, within the deadline.
    pub fn run_with(&self, args: &[&str], stdin: Option<&str>) -> Outcome {
        let mut cmd = assert_cmd::Command::from_std(self.command(&bins().msg));
        cmd.args(args).timeout(DEADLINE);
        if let Some(stdin) = stdin {
            cmd.write_stdin(stdin);
        }
        let output = cmd.output().expect("run msg");
        let outcome = Outcome {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        if args
            .first()
            .is_some_and(|a| matches!(*a, "login" | "register" | "daemon"))
        {
            self.track_daemon();
        }
        outcome
    }

    pub fn msg(&self, args: &[&str]) -> Outcome {
        self.run_with(args, None)
    }

    pub fn login(&self) -> Outcome {
        self.login_with(password(&self.name))
    }

    pub fn login_with(&self, password: &str) -> Outcome {
        self.run_with(
            &["login", &self.name, "--password-stdin"],
            Some(&format!("{password}\n")),
        )
    }

    /// Remembers the running daemon so that drop can kill and reap it.
    pub fn track_daemon(&self) {
        if let Some(pid) = self.daemon_pid() {
            let mut daemons = self.daemons.borrow_mut();
            if !daemons.contains(&pid) {
                daemons.push(pid);
            }
        }
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        let mut cmd = assert_cmd::Command::from_std(self.command(&bins().msg));
        let out = cmd
            .args(["status", "--json"])
            .timeout(DEADLINE)
            .output()
            .ok()?;
        let status: Value = serde_json::from_slice(&out.stdout).ok()?;
        status["pid"].as_i64().map(|pid| pid as i32)
    }

    pub fn status(&self) -> Value {
        self.msg(&["status", "--json"]).json()
    }

    /// Polls `msg status` until `ok` holds for it, or panics at the deadline.
    pub fn wait_status(&self, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let status = self.status();
            if ok(&status) {
                return status;
            }
            assert!(Instant::now() < deadline, "status never matched: {status}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the daemon with SIGKILL and reaps it.
    pub fn kill_daemon(&self) {
        for pid in self.daemons.borrow_mut().drain(..) {
            kill_and_reap(pid);
        }
    }

    /// Starts `msg watch` and returns its guard and its output lines, once
    /// the daemon has subscribed it (so no later event can be missed).
    pub fn watch(&self, json: bool) -> (ChildGuard, Lines) {
        let before = self.status()["watchers"].as_u64().unwrap();
        let mut cmd = self.command(&bins().msg);
        cmd.arg("watch")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd.spawn().expect("start msg watch");
        let lines = Lines::new(child.stdout.take().unwrap());
        let guard = ChildGuard(child);
        self.wait_status(|s| s["watchers"].as_u64().unwrap() > before);
        (guard, lines)
    }
}

pub fn kill_and_reap(pid: i32) {
    #[cfg(not(unix))]
    let _ = pid;
    #[cfg(unix)]
    // SAFETY: plain syscalls on a pid this test started (through msg).
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        // Our child thanks to the subreaper flag; otherwise ECHILD at once.
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

impl Drop for User {
    fn drop(&mut self) {
        // A daemon started another way than `login`, `register` or
        // `daemon` (another command starts one when none runs) is found
        // here, so that none outlives its test.
        self.track_daemon();
        self.kill_daemon();
    }
}

/// Logs `users` in on `server`.
pub fn online(server: &Server, users: &[&str]) -> Vec<User> {
    users
        .iter()
        .map(|name| {
            let user = User::new(name, server);
            user.login().ok();
            user
        })
        .collect()
}

/// A `msg` command running in the background (for commands that wait, such
/// as `msg private start`); `join` returns what the user saw. Dropped
/// unjoined (a test that failed first), it kills the command.
pub struct Background {
    child: ChildGuard,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
}

/// Reads a pipe to its end on a thread, so that a full pipe never stalls
/// the child.
fn read_to_end(mut from: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

impl Background {
    /// Waits, within the deadline, for the command to finish.
    pub fn join(self) -> Outcome {
        let Self {
            mut child,
            stdout,
            stderr,
        } = self;
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = child.0.try_wait().expect("wait for msg") {
                break status;
            }
            assert!(Instant::now() < deadline, "msg did not finish in time");
            std::thread::sleep(Duration::from_millis(10));
        };
        Outcome {
            code: status.code().unwrap_or(-1),
            stdout: stdout.join().expect("the stdout reader"),
            stderr: stderr.join().expect("the stderr reader"),
        }
    }
}

impl User {
    pub fn background(&self, args: &[&str]) -> Background {
        let mut cmd = self.command(&bins().msg);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start msg");
        let stdout = read_to_end(child.stdout.take().expect("piped stdout"));
        let stderr = read_to_end(child.stderr.take().expect("piped stderr"));
        Background {
            child: ChildGuard(child),
            stdout,
            stderr,
        }
    }

    /// Writes this user's config.toml (before their msgd starts).
    pub fn config(&self, text: &str) {
        let dir = self.dir.path().join("config").join("msg");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.toml"), text).unwrap();
    }
}

impl User {
    /// Polls the inbox (without marking anything read) until its messages
    /// and broadcasts, as human lines, are `expected`. Broadcasts are not
    /// acknowledged to their sender, so they may land a moment after
    /// `msg broadcast` returns.
    pub fn wait_messages(&self, expected: &[&str]) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let items = self.msg(&["inbox", "--peek", "--json"]).json_lines();
            let got: Vec<String> = items
                .iter()
                .filter_map(|i| match i["kind"].as_str() {
                    Some("message") => {
                        Some(format!("{}: {}", i["from"].as_str()?, i["text"].as_str()?))
                    }
                    Some("broadcast") => Some(format!(
                        "{} (broadcast): {}",
                        i["from"].as_str()?,
                        i["text"].as_str()?
                    )),
                    _ => None,
                })
                .collect();
            if got == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "inbox never matched {expected:?}: {got:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A TCP relay in front of the server that records every byte, both ways,
/// of every connection through it. Its threads end when their sockets close.
pub struct Relay {
    pub addr: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Relay {
    pub fn start(target: &str) -> Self {
        use std::net::{TcpListener, TcpStream};
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let target = target.to_owned();
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let pipe = |mut from: TcpStream, mut to: TcpStream, log: Arc<Mutex<Vec<u8>>>| {
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            log.lock().unwrap().extend_from_slice(&buf[..n]);
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                };
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    Arc::clone(&log),
                );
                pipe(server, client, Arc::clone(&log));
            }
        });
        Self { addr, seen }
    }

    /// Everything that crossed the relay so far.
    pub fn seen(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }
}

/// A port that was free a moment ago (for pinning a peer port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A raw NDJSON connection, for speaking a protocol by hand.
pub struct Raw {
    reader: BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
}

impl Raw {
    pub fn connect(addr: &str) -> Self {
        let stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        Self {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.writer.write_all(bytes).unwrap();
    }

    pub fn send(&mut self, frame: Value) {
        self.send_bytes(format!("{frame}\n").as_bytes());
    }

    /// The next frame; `None` once the other side closed.
    pub fn recv(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))),
            // A reset after the refusal counts as closed.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("no frame within the deadline: {e}"),
        }
    }

    /// Frames until one has `"type": kind`.
    pub fn until(&mut self, kind: &str) -> Value {
        loop {
            let frame = self
                .recv()
                .unwrap_or_else(|| panic!("closed before {kind}"));
            if frame["type"] == kind {
                return frame;
            }
        }
    }
}

//! Servers under test: `msg-server` and `mosquitto`, each started on
//! loopback with its own temporary files, killed and reaped on drop.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::env::Env;
use crate::procfs::{self, Sampler};

/// Password of every bench account (plain: cheap to check for 10,000 logins).
pub const PASSWORD: &str = "bench-pw";
/// How long a server gets to start listening.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// The bench's account names: `b00000`, `b00001`, ...
pub fn user_names(n: usize) -> impl Iterator<Item = String> {
    (0..n).map(user)
}

pub fn user(i: usize) -> String {
    format!("b{i:05}")
}

/// Kills and reaps a child on drop.
pub struct ChildGuard(Child);

impl ChildGuard {
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Stops the child as an operator's restart does (SIGTERM), killing it
    /// if it has not exited within `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if let Ok(pid) = libc::pid_t::try_from(self.0.id()) {
            // SAFETY: kill only sends a signal to our own child.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A msg-server for one scenario: started by the bench, or a running one.
pub struct MsgServer {
    pub addr: SocketAddr,
    pid: Option<u32>,
    sampler: Option<Sampler>,
    /// Kept for the state dir (offline queue size) and the accounts file.
    dir: Option<tempfile::TempDir>,
    guard: Option<ChildGuard>,
    /// The flags it was started with, to start it again.
    extra: Vec<String>,
}

impl MsgServer {
    /// Starts a server knowing `users` bench accounts, or uses `--server`.
    pub fn start(env: &Env, users: usize) -> anyhow::Result<Self> {
        Self::start_with_args(env, users, &[])
    }

    /// The same, with more arguments (e.g. `--tls-cert`), ignored for a
    /// running server.
    pub fn start_with_args(env: &Env, users: usize, extra: &[String]) -> anyhow::Result<Self> {
        if let Some(addr) = env.cli.server {
            return Ok(Self {
                addr,
                pid: env.cli.server_pid,
                sampler: env.cli.server_pid.map(Sampler::start),
                dir: None,
                guard: None,
                extra: Vec::new(),
            });
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        Self::launch(env, &plain_accounts(users), &extra)
    }

    /// Starts a server of its own with this accounts file (`--server` does
    /// not apply) and `extra` flags after the common ones.
    pub fn start_with(env: &Env, credentials: &str, extra: &[&str]) -> anyhow::Result<Self> {
        if env.cli.server.is_some() {
            bail!("this scenario starts a server of its own; it cannot use --server");
        }
        Self::launch(env, credentials, extra)
    }

    fn launch(env: &Env, credentials: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("cannot create a temp dir")?;
        let creds = dir.path().join("credentials.txt");
        std::fs::write(&creds, credentials).context("cannot write the accounts file")?;
        let (guard, addr) = Self::spawn(env, dir.path(), 0, extra)?;
        Ok(Self {
            addr,
            pid: Some(guard.id()),
            sampler: None,
            dir: Some(dir),
            guard: Some(guard),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    /// Stops the server (SIGTERM, as `systemctl restart` does) and starts
    /// it again on the same port, state and accounts. A server given with
    /// `--server` cannot be restarted.
    pub fn restart(&mut self, env: &Env) -> anyhow::Result<()> {
        let (Some(guard), Some(dir)) = (self.guard.as_mut(), self.dir.as_ref()) else {
            bail!("this scenario restarts the server; it cannot use --server");
        };
        guard.stop(Duration::from_secs(10));
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let (guard, addr) = Self::spawn(env, dir.path(), self.addr.port(), &extra)?;
        self.pid = Some(guard.id());
        self.guard = Some(guard);
        self.addr = addr;
        Ok(())
    }

    /// Starts the server process in `dir` on `port` (0: any free one).
    fn spawn(
        env: &Env,
        dir: &Path,
        port: u16,
        extra: &[&str],
    ) -> anyhow::Result<(ChildGuard, SocketAddr)> {
        let creds = dir.join("credentials.txt");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .context("cannot create the server log")?;
        let mut child = Command::new(&env.server_bin)
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--timeout", "0"])
            // The default per-connection rate limit (2,000 frames/s) would
            // cap the load generator, not measure the server.
            .args(["--max-rate", "0"])
            // Thousands of logins from one address: the per-address limit
            // on wrong passwords would refuse the bench's own right ones.
            .args(["--login-fail-rate", "off"])
            // `offline` queues 100,000 messages for one user, past the
            // default quota of 10,000 (Mosquitto runs with no queue limit).
            .args(["--max-queued-messages", "100000000"])
            .arg("--credentials")
            .arg(&creds)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start msg-server (build it first, or pass --server-bin): {}",
                    env.server_bin.display()
                )
            })?;
        let stdout = child.stdout.take().context("no stdout")?;
        let guard = ChildGuard(child);
        let line = first_line(stdout, START_DEADLINE).context("msg-server did not start")?;
        let addr = line
            .strip_prefix("msg-server listening on ")
            .with_context(|| format!("unexpected first line from msg-server: {line}"))?
            .trim()
            .parse()
            .context("msg-server printed a bad address")?;
        Ok((guard, addr))
    }

    /// The server's resident memory now, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        procfs::memory(self.pid?).map(|m| m.rss_kib)
    }

    /// Peak resident memory of this run, in KiB.
    pub fn peak_kib(&self) -> Option<u64> {
        match &self.sampler {
            Some(s) => s.peak_kib(),
            None => procfs::memory(self.pid?).map(|m| m.peak_kib),
        }
    }

    /// Whether the server process is still there (a started one: not
    /// exited; one given by `--server-pid`: not gone). `None` if unknown.
    pub fn running(&self) -> Option<bool> {
        self.pid.map(|pid| procfs::memory(pid).is_some())
    }

    /// The last lines of the server's log (a server the bench started).
    pub fn log_tail(&self, lines: usize) -> Option<String> {
        let text = std::fs::read_to_string(self.dir.as_ref()?.path().join("server.log")).ok()?;
        let all: Vec<&str> = text.lines().collect();
        Some(all[all.len().saturating_sub(lines)..].join("\n"))
    }

    /// Bytes of the durable queue on disk (`msg.db` and its WAL).
    pub fn disk_bytes(&self) -> Option<u64> {
        let state = self.dir.as_ref()?.path().join("state");
        let size = |name: &str| std::fs::metadata(state.join(name)).map_or(0, |m| m.len());
        Some(size("msg.db") + size("msg.db-wal"))
    }
}

/// The accounts file of `users` bench accounts, plain passwords.
pub fn plain_accounts(users: usize) -> String {
    let mut text = String::with_capacity(users * 16);
    for name in user_names(users) {
        text.push_str(&name);
        text.push(' ');
        text.push_str(PASSWORD);
        text.push('\n');
    }
    text
}

/// Argon2 hashes of [`PASSWORD`], one per name (each with its own salt),
/// made as an operator makes them: `msg-server passwd NAME --password-stdin`.
pub fn argon2_hashes(env: &Env, names: &[&str]) -> anyhow::Result<Vec<String>> {
    let dir = tempfile::tempdir().context("cannot create a temp dir")?;
    let creds = dir.path().join("credentials.txt");
    for name in names {
        let mut child = Command::new(&env.server_bin)
            .arg("passwd")
            .arg(name)
            .arg("--credentials")
            .arg(&creds)
            .arg("--password-stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {} passwd", env.server_bin.display()))?;
        {
            let mut stdin = child.stdin.take().context("no stdin")?;
            std::io::Write::write_all(&mut stdin, format!("{PASSWORD}\n").as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "msg-server passwd {name} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    let text = std::fs::read_to_string(&creds).context("cannot read the hashed accounts")?;
    names
        .iter()
        .map(|name| {
            text.lines()
                .find_map(|line| {
                    let (user, hash) = line.split_once(' ')?;
                    (user == *name && hash.starts_with("$argon2")).then(|| hash.to_owned())
                })
                .with_context(|| format!("no argon2 hash for {name} in the file passwd wrote"))
        })
        .collect()
}

/// A mosquitto broker on loopback, persistence off, for one scenario.
pub struct Mosquitto {
    pub port: u16,
    dir: tempfile::TempDir,
    guard: ChildGuard,
}

impl Mosquitto {
    pub fn start(env: &Env) -> anyhow::Result<Self> {
        Self::start_with(env, "")
    }

    /// The same, with more lines for its listener (e.g. `certfile`).
    pub fn start_with(env: &Env, listener: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("cannot create a temp dir")?;
        let port = free_port()?;
        let conf = dir.path().join("mosquitto.conf");
        // Stock broker, loopback, no persistence; only limits that would
        // refuse the bench's load are lifted, and Nagle is off as on our side.
        let text = format!(
            "listener {port} 127.0.0.1\n\
             {listener}\
             allow_anonymous true\n\
             persistence false\n\
             max_connections -1\n\
             set_tcp_nodelay true\n\
             max_inflight_messages 1000\n\
             max_queued_messages 0\n\
             log_dest stderr\n\
             log_type error\n\
             log_type warning\n"
        );
        std::fs::write(&conf, text).context("cannot write mosquitto.conf")?;
        let guard = Self::spawn(env, dir.path(), port)?;
        Ok(Self { port, dir, guard })
    }

    fn spawn(env: &Env, dir: &Path, port: u16) -> anyhow::Result<ChildGuard> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("mosquitto.log"))
            .context("cannot create the mosquitto log")?;
        let child = Command::new(mosquitto_bin(&env.cli.mosquitto_bin))
            .arg("-c")
            .arg(dir.join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start mosquitto (apt-get install mosquitto, or --no-mqtt)")?;
        let guard = ChildGuard(child);
        wait_listening(port, START_DEADLINE).context("mosquitto did not start listening")?;
        Ok(guard)
    }

    /// Stops the broker (SIGTERM) and starts it again on the same port.
    pub fn restart(&mut self, env: &Env) -> anyhow::Result<()> {
        self.guard.stop(Duration::from_secs(10));
        self.guard = Self::spawn(env, self.dir.path(), self.port)?;
        Ok(())
    }

    pub fn rss_kib(&self) -> Option<u64> {
        procfs::memory(self.guard.id()).map(|m| m.rss_kib)
    }

    pub fn peak_kib(&self) -> Option<u64> {
        procfs::memory(self.guard.id()).map(|m| m.peak_kib)
    }
}

/// Debian installs the broker in /usr/sbin, often not on a user's PATH.
fn mosquitto_bin(given: &Path) -> std::path::PathBuf {
    let sbin = Path::new("/usr/sbin/mosquitto");
    if given == Path::new("mosquitto") && sbin.is_file() {
        sbin.to_owned()
    } else {
        given.to_owned()
    }
}

/// A port free on loopback now (tiny race with other programs: acceptable).
fn free_port() -> anyhow::Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

fn wait_listening(port: u16, deadline: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + deadline;
    loop {
        if std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= until {
            bail!("nothing listens on port {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The first line a child prints, within `deadline`.
fn first_line(
    stdout: impl std::io::Read + Send + 'static,
    deadline: Duration,
) -> anyhow::Result<String> {
    let (tx, rx) = mpsc::channel();
    // The thread ends when the child's stdout closes (the guard kills it).
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    rx.recv_timeout(deadline)
        .context("no output within the deadline")
}

/// Path of a binary beside this executable.
pub fn sibling(env: &Env, name: &str) -> std::path::PathBuf {
    env.bin_dir.join(name)
}

pub fn exists(path: &Path) -> bool {
    path.is_file()
}

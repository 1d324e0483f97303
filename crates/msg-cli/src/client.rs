//! Talking to msgd: connect (or start it), handshake, request and replies.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use interprocess::local_socket::tokio::Stream;
use msg_local::paths::{Paths, create_private_dir};
use msg_local::socket::ConnectError;
use msg_proto::control::{CONTROL_VERSION, Reply, Request, codes};
use msg_proto::{JsonLines, Refusal};
use tokio_util::codec::Framed;

/// How long `msg` waits for a freshly started msgd to listen.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// How long `msg daemon stop` waits for msgd to be gone.
const STOP_DEADLINE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(25);
/// Ordinary requests; the daemon bounds its own server round trips well below.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Client {
    conn: Framed<Stream, JsonLines<Reply, Request>>,
}

fn not_running() -> Refusal {
    Refusal::new(
        codes::DAEMON_UNREACHABLE,
        "msgd is not running — run `msg login USER`",
    )
}

fn lost() -> Refusal {
    Refusal::new(codes::DAEMON_UNREACHABLE, "The connection to msgd was lost")
}

impl Client {
    /// Connects to the running msgd; `None` when none is running.
    pub async fn connect(paths: &Paths) -> Result<Option<Self>, Refusal> {
        let stream = match msg_local::socket::connect(paths).await {
            Ok(stream) => stream,
            Err(ConnectError::Untrusted(why)) => {
                return Err(Refusal::new(codes::UNTRUSTED_DAEMON, capitalized(&why)));
            }
            Err(ConnectError::NotRunning { path, source }) => {
                tracing::debug!("no msgd: {source}");
                if source.kind() == std::io::ErrorKind::PermissionDenied {
                    return Err(Refusal::new(
                        codes::DAEMON_UNREACHABLE,
                        format!("Permission denied: {}", path.display()),
                    ));
                }
                return Ok(None);
            }
        };
        let mut client = Self {
            conn: Framed::new(stream, JsonLines::new()),
        };
        match client
            .call(Request::Hello {
                version: CONTROL_VERSION,
            })
            .await?
        {
            Reply::Hello { .. } => Ok(Some(client)),
            Reply::Error {
                code,
                message,
                retry_after,
                fingerprint,
            } => Err(Refusal {
                code: code.into(),
                message,
                retry_after,
                fingerprint,
            }),
            _ => Err(Refusal::new(
                codes::VERSION_MISMATCH,
                "msgd answered the handshake oddly; restart it with `msg daemon stop`",
            )),
        }
    }

    /// Connects to msgd, failing with the "not running" hint.
    pub async fn require(paths: &Paths) -> Result<Self, Refusal> {
        Self::connect(paths).await?.ok_or_else(not_running)
    }

    /// Connects, starting msgd first when it is not running. The flag says
    /// whether it was started.
    pub async fn connect_or_start(paths: &Paths) -> Result<(Self, bool), Refusal> {
        if let Some(client) = Self::connect(paths).await? {
            return Ok((client, false));
        }
        let deadline = Instant::now() + START_DEADLINE;
        // A msgd that holds the lock but does not answer yet is starting or
        // exiting: wait for it to settle rather than start a second one.
        while msg_local::socket::lock_is_held(paths) && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
            if let Some(client) = Self::connect(paths).await? {
                return Ok((client, false));
            }
        }
        // What msgd writes to its log from here on says why it failed.
        let log_start = std::fs::metadata(paths.log_path()).map_or(0, |m| m.len());
        let mut child = spawn_daemon(paths)?;
        loop {
            if let Some(client) = Self::connect(paths).await? {
                return Ok((client, true));
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Another `msg` may have started one at the same moment.
                if let Some(client) = Self::connect(paths).await? {
                    return Ok((client, false));
                }
                let why = start_failure(paths, log_start)
                    .unwrap_or_else(|| format!("it exited ({status})"));
                return Err(Refusal::new(
                    codes::DAEMON_UNREACHABLE,
                    format!(
                        "msgd could not start: {why} (log: {})",
                        paths.log_path().display()
                    ),
                ));
            }
            if Instant::now() >= deadline {
                return Err(Refusal::new(
                    codes::DAEMON_UNREACHABLE,
                    format!(
                        "msgd did not start in time (log: {})",
                        paths.log_path().display()
                    ),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub async fn send(&mut self, request: Request) -> Result<(), Refusal> {
        self.conn.send(request).await.map_err(|_| lost())
    }

    /// The next reply; `None` when msgd closed the connection.
    pub async fn next(&mut self) -> Result<Option<Reply>, Refusal> {
        match self.conn.next().await {
            Some(Ok(Ok(reply))) => Ok(Some(reply)),
            Some(Ok(Err(e))) => {
                tracing::warn!("bad frame from msgd: {e}");
                Err(Refusal::new(
                    codes::INVALID_COMMAND,
                    "msgd sent a malformed reply",
                ))
            }
            Some(Err(_)) => Err(lost()),
            None => Ok(None),
        }
    }

    /// One request, one reply, within `limit`.
    pub async fn call_within(
        &mut self,
        request: Request,
        limit: Duration,
    ) -> Result<Reply, Refusal> {
        self.send(request).await?;
        match tokio::time::timeout(limit, self.next()).await {
            Ok(Ok(Some(reply))) => Ok(reply),
            Ok(Ok(None)) => Err(lost()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Refusal::new(
                codes::DAEMON_UNREACHABLE,
                "msgd did not answer in time",
            )),
        }
    }

    pub async fn call(&mut self, request: Request) -> Result<Reply, Refusal> {
        self.call_within(request, REPLY_TIMEOUT).await
    }
}

/// Waits until msgd has gone: no answer on the socket and its lock released
/// (so `msg daemon start` right after cannot find the old one still exiting).
pub async fn wait_until_stopped(paths: &Paths) -> Result<(), Refusal> {
    let deadline = Instant::now() + STOP_DEADLINE;
    while msg_local::socket::connect(paths).await.is_ok() || msg_local::socket::lock_is_held(paths)
    {
        if Instant::now() >= deadline {
            return Err(Refusal::new(
                codes::DAEMON_UNREACHABLE,
                "msgd did not stop in time",
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Longest reason quoted from msgd's log.
const MAX_REASON: usize = 2000;

/// Why a msgd that just exited failed: what it printed last (`msgd: ...`)
/// since `from` in its log, or `None` when it said nothing.
fn start_failure(paths: &Paths, from: u64) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut log = std::fs::File::open(paths.log_path()).ok()?;
    log.seek(SeekFrom::Start(from)).ok()?;
    let mut text = String::new();
    log.take(64 * 1024).read_to_string(&mut text).ok()?;
    // msgd's own last words come last and start with "msgd: ".
    let last = text
        .rfind("msgd: ")
        .map(|at| text[at + "msgd: ".len()..].trim().to_owned())
        .or_else(|| {
            text.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_owned)
        })?;
    Some(last.chars().take(MAX_REASON).collect())
}

/// The msgd binary: next to this `msg`, else from PATH.
fn daemon_binary() -> PathBuf {
    let name = format!("msgd{}", std::env::consts::EXE_SUFFIX);
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name(&name))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Starts msgd detached: its own session, no terminal, stdio away from ours
/// (its log goes to msgd.log in the data dir).
fn spawn_daemon(paths: &Paths) -> Result<std::process::Child, Refusal> {
    let failed = |what: &str, e: std::io::Error| {
        Refusal::new(
            codes::DAEMON_UNREACHABLE,
            format!("cannot start msgd: {what}: {e}"),
        )
    };
    create_private_dir(&paths.data_dir).map_err(|e| failed("data directory", e))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(paths.log_path())
        .map_err(|e| failed("log file", e))?;
    let mut command = Command::new(daemon_binary());
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // std opens every descriptor close-on-exec, so only stdio is inherited.
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: setsid is async-signal-safe; it detaches msgd from our
        // terminal and process group so that Ctrl-C and hangups spare it.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        const DETACHED_PROCESS: u32 = 0x0000_0008;
        const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
        command.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP);
    }
    tracing::debug!("starting msgd");
    command.spawn().map_err(|e| failed("spawn", e))
}

/// The text with its first letter in upper case, as the CLI's messages are.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// How long completion waits for msgd's names before offering nothing.
const NAMES_DEADLINE: Duration = Duration::from_millis(200);

/// The users msgd knows to offer for completion (online now, recent
/// correspondents); empty when msgd is not running, is slow or cannot say.
pub async fn names(paths: &Paths) -> Vec<String> {
    let ask = async {
        let mut client = Client::connect(paths).await.ok()??;
        match client.call(Request::Names).await.ok()? {
            Reply::Users { users } => Some(users),
            _ => None,
        }
    };
    tokio::time::timeout(NAMES_DEADLINE, ask)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

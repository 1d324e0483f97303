//! `non-readers` (msg only): `--non-readers` recipients log in and then
//! never read their socket (the connection stays open, the bench just
//! stops polling it), while `--flooders` connections send them
//! 4,000-character texts of control characters (`\u0001`, six bytes each
//! in JSON: 24 KB a frame) round-robin, as fast as the server takes them,
//! each keeping at most 1,024 sends awaiting their reply (the server's
//! limit), for `--secs`.
//!
//! The server holds at most its per-connection byte budget (1 MiB) for a
//! client that does not read; past it, it disconnects the client
//! (`logged_out`, `slow_consumer`, if the client ever reads that far) and
//! what was in flight to it goes to its offline queue. Measured: the
//! server's peak memory, which non-readers were disconnected and when (the
//! flooders see each go offline in a `presence` event), and what the
//! sends were answered. The flooders write pre-encoded lines, so the
//! bench's JSON encoding stays out of the figure.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use msg_proto::server::ServerFrame;
use msg_proto::validate::MAX_TEXT_CHARS;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::join_all;
use crate::client::{self, Conn, LineReader};
use crate::env::Env;
use crate::launch::{MsgServer, user, user_names};
use crate::procfs;
use crate::report::Figure;

const DEFAULT_SECS: f64 = 10.0;
/// Sends one connection may have awaiting their reply (the server's limit).
const WINDOW: usize = 1024;
/// Bytes written at once by a flooder.
const BATCH: usize = 256 * 1024;
/// How long a non-reader's socket may stay silent, once read at the end,
/// before it counts as still open.
const QUIET: Duration = Duration::from_secs(2);
/// Bound on reading the non-readers' sockets at the end.
const CHECK: Duration = Duration::from_secs(30);

pub async fn run(env: &Env) -> anyhow::Result<Vec<Figure>> {
    let c = &env.cli;
    let secs = c.secs_or(DEFAULT_SECS);
    if !(secs.is_finite() && secs > 0.0) {
        bail!("--secs must be a positive number of seconds");
    }
    let (n, f) = (c.non_readers.max(1), c.flooders.max(1));
    let fds = procfs::nofile_limit() as usize;
    if n + f + 64 > fds {
        bail!(
            "{} connections need more open files than the limit ({fds})",
            n + f
        );
    }
    let server = MsgServer::start(env, n + f)?;
    let fresh_kib = server.rss_kib();
    // Logged in first, so the flooders' logins are the last presence
    // events they might have read.
    let readers = client::login_many(server.addr, user_names(n), 16)
        .await
        .context("logging in the non-readers")?;
    let flooders = client::login_many(server.addr, (n..n + f).map(user), f)
        .await
        .context("logging in the flooders")?;
    let recipients: Arc<[String]> = user_names(n).collect();
    let text = Arc::<str>::from(serde_json::to_string(&"\u{1}".repeat(MAX_TEXT_CHARS))?);
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(secs);
    let tasks = flooders
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            let plan = Plan {
                recipients: recipients.clone(),
                text: text.clone(),
                first: i,
                started,
                end,
            };
            tokio::spawn(flood(conn, plan))
        })
        .collect();
    let floods = join_all(tasks).await?;
    let secs = started.elapsed().as_secs_f64();
    let peak_kib = server.peak_kib();
    let end_kib = server.rss_kib();
    if server.running() == Some(false) {
        bail!(
            "msg-server exited during the flood; its log ends:\n{}",
            server.log_tail(20).unwrap_or_default()
        );
    }
    let sockets = check_readers(readers).await;
    let mut total = Flood::default();
    for one in floods {
        total.add(one);
    }
    Ok(figures(
        (n, f),
        secs,
        [fresh_kib, peak_kib, end_kib],
        &total,
        &sockets,
    ))
}

fn figures(
    (n, f): (usize, usize),
    secs: f64,
    [fresh_kib, peak_kib, end_kib]: [Option<u64>; 3],
    total: &Flood,
    sockets: &Sockets,
) -> Vec<Figure> {
    let fig = |name: String, unit: &'static str, value: Option<f64>| {
        Figure::new("non-readers", name, unit)
            .values(value, None)
            .rss(peak_kib, None)
    };
    let mib = |kib: Option<u64>| kib.map(|k| k as f64 / 1024.0);
    let count = |v: u64| Some(v as f64);
    let last_kick = total.offline.values().copied().reduce(f64::max);
    let mut out = vec![
        fig(
            format!("peak RSS, {n} non-readers, {f} flooders"),
            "MiB",
            mib(peak_kib),
        )
        .lower_is_better(),
        fig("RSS of the fresh server".into(), "MiB", mib(fresh_kib)).lower_is_better(),
        fig("RSS at the end of the flood".into(), "MiB", mib(end_kib)).lower_is_better(),
        fig(
            format!("non-readers disconnected (of {n})"),
            "users",
            count(total.offline.len() as u64),
        )
        .neutral(),
        fig("last one disconnected after".into(), "s", last_kick).lower_is_better(),
        fig(
            "non-reader sockets closed by the server".into(),
            "connections",
            count(sockets.closed),
        )
        .neutral(),
        fig(
            "... whose last frame was slow_consumer".into(),
            "connections",
            count(sockets.told),
        )
        .neutral(),
        fig(
            "sends written (24 KB frames)".into(),
            "messages",
            count(total.sent),
        ),
        fig(
            "sends written".into(),
            "msg/s",
            Some(total.sent as f64 / secs),
        ),
        fig(
            "answered sent, queued offline".into(),
            "replies",
            count(total.queued),
        )
        .neutral(),
        fig(
            "answered sent, delivered".into(),
            "replies",
            count(total.delivered),
        )
        .neutral(),
    ];
    for (code, v) in &total.refused {
        out.push(fig(format!("answered {code}"), "replies", count(*v)).neutral());
    }
    if total.stray > 0 {
        out.push(
            fig(
                "errors about no request".into(),
                "lines",
                count(total.stray),
            )
            .neutral(),
        );
    }
    out.push(
        fig(
            "sends unanswered at the end".into(),
            "messages",
            count(total.sent - total.answered()),
        )
        .neutral(),
    );
    out
}

/// What one flooder sends, to whom, and until when.
struct Plan {
    recipients: Arc<[String]>,
    /// The text as a JSON string, quotes included.
    text: Arc<str>,
    /// The recipient of its first send (round-robin from there).
    first: usize,
    started: Instant,
    end: Instant,
}

/// What the flooders sent and were told.
#[derive(Debug, Default)]
struct Flood {
    sent: u64,
    queued: u64,
    delivered: u64,
    /// Refusals by code (`recipient_queue_full` once a queue is at quota).
    refused: BTreeMap<&'static str, u64>,
    /// Non-readers seen going offline, seconds into the flood.
    offline: HashMap<String, f64>,
    /// Errors about no request, and lines that did not decode.
    stray: u64,
}

impl Flood {
    fn answered(&self) -> u64 {
        self.queued + self.delivered + self.refused.values().sum::<u64>()
    }

    fn add(&mut self, other: Flood) {
        self.sent += other.sent;
        self.queued += other.queued;
        self.delivered += other.delivered;
        self.stray += other.stray;
        for (code, v) in other.refused {
            *self.refused.entry(code).or_default() += v;
        }
        for (user, at) in other.offline {
            let seen = self.offline.entry(user).or_insert(at);
            *seen = seen.min(at);
        }
    }
}

/// One flooder: writes sends while its window has room and reads the
/// replies (and presence events) meanwhile, until the end of the run.
async fn flood(conn: Conn, plan: Plan) -> anyhow::Result<Flood> {
    let (mut lines, mut write) = LineReader::new(conn);
    let window = Semaphore::new(WINDOW);
    let mut tally = Flood::default();
    let mut sent = 0u64;
    // Both run until the end of the run; whichever fails first fails it.
    let outcome = tokio::time::timeout_at(plan.end, async {
        tokio::try_join!(
            write_sends(&mut write, &window, &plan, &mut sent),
            read_replies(&mut lines, &window, &plan, &mut tally),
        )
    })
    .await;
    if let Ok(Err(e)) = outcome {
        return Err(e);
    }
    tally.sent = sent;
    Ok(tally)
}

/// Writes sends, round-robin over the recipients, one per free place in
/// the window; `sent` counts those written whole.
async fn write_sends(
    write: &mut OwnedWriteHalf,
    window: &Semaphore,
    plan: &Plan,
    sent: &mut u64,
) -> anyhow::Result<Infallible> {
    let mut buf = Vec::with_capacity(BATCH + 32 * 1024);
    let mut to = plan.first;
    loop {
        window.acquire().await?.forget();
        let mut batch = 1u64;
        while (batch as usize) * plan.text.len() < BATCH {
            match window.try_acquire() {
                Ok(permit) => permit.forget(),
                Err(_) => break,
            }
            batch += 1;
        }
        buf.clear();
        for i in 0..batch {
            // Request ids from 2 up (the login was 1).
            let id = *sent + i + 2;
            send_line(
                &mut buf,
                id,
                &plan.recipients[to % plan.recipients.len()],
                &plan.text,
            );
            to += 1;
        }
        write.write_all(&buf).await?;
        *sent += batch;
    }
}

/// Reads what the server sends the flooder, freeing a place in the window
/// for every reply.
async fn read_replies(
    lines: &mut LineReader,
    window: &Semaphore,
    plan: &Plan,
    tally: &mut Flood,
) -> anyhow::Result<Infallible> {
    loop {
        let open = lines
            .read_lines(|line| {
                if on_line(line, plan, tally) {
                    window.add_permits(1);
                }
            })
            .await?;
        if !open {
            bail!("the server closed a flooder's connection");
        }
    }
}

/// Takes in one line from the server; whether it answered a send.
fn on_line(line: &[u8], plan: &Plan, tally: &mut Flood) -> bool {
    let Ok(frame) = serde_json::from_slice::<ServerFrame>(line) else {
        tally.stray += 1;
        return false;
    };
    match frame {
        ServerFrame::Sent { queued: true, .. } => tally.queued += 1,
        ServerFrame::Sent { queued: false, .. } => tally.delivered += 1,
        ServerFrame::Error {
            id: Some(_), code, ..
        } => {
            *tally.refused.entry(code.as_str()).or_default() += 1;
        }
        ServerFrame::Error { id: None, .. } => {
            tally.stray += 1;
            return false;
        }
        ServerFrame::Presence {
            user,
            online: false,
            ..
        } if plan.recipients.contains(&user) => {
            let at = plan.started.elapsed().as_secs_f64();
            tally.offline.entry(user).or_insert(at);
            return false;
        }
        _ => return false,
    }
    true
}

/// One `send` line, as `encode_line` would write it.
fn send_line(buf: &mut Vec<u8>, id: u64, to: &str, text_json: &str) {
    // Usernames are [A-Za-z0-9_.-]: nothing to escape.
    let _ = writeln!(
        buf,
        r#"{{"type":"send","id":{id},"to":"{to}","text":{text_json}}}"#
    );
}

/// The non-readers' sockets, read at last.
#[derive(Debug, Default)]
struct Sockets {
    /// Reached the end of the stream: the server closed them.
    closed: u64,
    /// Of those, how many had `slow_consumer` as their last frame.
    told: u64,
}

/// Reads each non-reader's socket to its end, or until it stays quiet for
/// [`QUIET`] (still open).
async fn check_readers(readers: Vec<Conn>) -> Sockets {
    let checks = readers.into_iter().map(|conn| async move {
        let (mut lines, _write) = LineReader::new(conn);
        let deadline = Instant::now() + CHECK;
        let mut last_was_slow = false;
        loop {
            let read = tokio::time::timeout(
                QUIET,
                lines.read_lines(|line| {
                    last_was_slow = line.windows(13).any(|w| w == b"slow_consumer");
                }),
            )
            .await;
            match read {
                Ok(Ok(true)) if Instant::now() < deadline => {}
                Ok(Ok(false)) | Ok(Err(_)) => return (true, last_was_slow),
                _ => return (false, false),
            }
        }
    });
    let mut out = Sockets::default();
    for (closed, told) in futures::future::join_all(checks).await {
        out.closed += u64::from(closed);
        out.told += u64::from(told);
    }
    out
}

#[cfg(test)]
mod tests {
    use msg_proto::server::{ClientFrame, SendRequest};

    use super::*;

    #[test]
    fn send_lines_are_what_the_codec_writes() {
        let text = "\u{1}".repeat(MAX_TEXT_CHARS);
        let json = serde_json::to_string(&text).unwrap();
        let mut buf = Vec::new();
        send_line(&mut buf, 42, "b00003", &json);
        let expected = msg_proto::encode_line(&ClientFrame::Send(SendRequest {
            id: 42,
            to: "b00003".into(),
            text,
            client_id: None,
        }))
        .unwrap();
        assert_eq!(buf, expected.as_ref());
        // Six bytes per character: the frame the scenario is about.
        assert!(buf.len() > 6 * MAX_TEXT_CHARS && buf.len() < msg_proto::MAX_FRAME_LEN);
    }
}

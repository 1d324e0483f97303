//! `storm` (msg only): a login storm. `--attackers` connections each send
//! logins one after another — the next once the reply came, or at once on
//! a new connection if the server closed theirs — for `--secs`: in turn a
//! wrong password for one victim account, a wrong password for a random
//! account of a pool, and the right password of an account that is logged
//! in already. Meanwhile an innocent user logs in with the right password
//! once a second on a fresh connection (and logs out); the bench times
//! each of its logins from the connect to the welcome.
//!
//! Every account has a real argon2 hash, made by `msg-server passwd`
//! (the pool's 1,000 accounts share one hash, salt included, so the setup
//! does not take a minute; each check still costs a full verification).
//! The server runs with `--login-fail-rate off`: everything comes from
//! 127.0.0.1, and the per-address limit of wrong passwords would otherwise
//! answer the storm after 30 of them; what is measured is how the server
//! bounds its argon2 work (a few checks at once, in order, one per account
//! at a time, the lockout after three failures).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use msg_proto::server::{ClientFrame, LoginRequest, ServerFrame};
use msg_proto::{RequestId, Secret};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::{Tasks, join_all};
use crate::client::{self, Conn};
use crate::env::Env;
use crate::launch::{self, MsgServer, PASSWORD, user_names};
use crate::procfs;
use crate::report::Figure;

const DEFAULT_SECS: f64 = 10.0;
/// The account whose password the storm guesses.
const VICTIM: &str = "victim";
/// The user who only logs in, right password, once a second.
const INNOCENT: &str = "innocent";
/// Logged in by the bench before the storm; the attackers log in as it too.
const PRESENT: &str = "present";
/// Accounts the storm guesses at random (`b00000`…): enough that the
/// lockout (three failures block an account) does not end the argon2 work
/// within the run.
const POOL: usize = 1000;
const WRONG: &str = "not-the-password";
/// How often the innocent user logs in, and after how long it gives up.
const INNOCENT_EVERY: Duration = Duration::from_secs(1);
const INNOCENT_LIMIT: Duration = Duration::from_secs(30);
/// Codes always reported, even when none came (rate_limited: the limiter
/// is off, so it should stay 0).
const CODES: [&str; 5] = [
    "invalid_password",
    "account_blocked",
    "login_blocked",
    "already_logged_in",
    "rate_limited",
];

pub async fn run(env: &Env) -> anyhow::Result<Vec<Figure>> {
    let secs = env.cli.secs_or(DEFAULT_SECS);
    if !(secs.is_finite() && secs > 0.0) {
        bail!("--secs must be a positive number of seconds");
    }
    let attackers = env.cli.attackers.max(1);
    let fds = procfs::nofile_limit() as usize;
    if attackers + 64 > fds {
        bail!("{attackers} attackers need more open files than the limit ({fds})");
    }
    let credentials = accounts(env)?;
    let server = MsgServer::start_with(env, &credentials, &[])?;
    let fresh_kib = server.rss_kib();
    let present = client::login(server.addr, PRESENT)
        .await
        .context("logging in the account the attackers find logged in")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Tasks(
        (0..attackers)
            .map(|n| tokio::spawn(attacker(server.addr, n, stop_rx.clone())))
            .collect(),
    );
    let started = Instant::now();
    let innocent = innocent(server.addr, Duration::from_secs_f64(secs)).await;
    let storm_secs = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let tallies = join_all(std::mem::take(&mut tasks.0)).await?;
    if server.running() == Some(false) {
        bail!(
            "msg-server exited during the storm; its log ends:\n{}",
            server.log_tail(20).unwrap_or_default()
        );
    }
    let peak_kib = server.peak_kib();
    drop(present);
    let mut tally = Tally::default();
    for t in tallies {
        tally.add(t);
    }
    Ok(figures(
        attackers, storm_secs, fresh_kib, peak_kib, &tally, innocent,
    ))
}

/// The accounts file: victim, innocent and present with hashes of their
/// own, the pool sharing one; every password is [`PASSWORD`].
fn accounts(env: &Env) -> anyhow::Result<String> {
    let pool_template = launch::user(0);
    let names = [VICTIM, INNOCENT, PRESENT, pool_template.as_str()];
    let hashes = launch::argon2_hashes(env, &names).context("hashing the storm's passwords")?;
    let mut text = String::new();
    for (name, hash) in names.iter().zip(&hashes).take(3) {
        let _ = writeln!(text, "{name} {hash}");
    }
    for name in user_names(POOL) {
        let _ = writeln!(text, "{name} {}", hashes[3]);
    }
    Ok(text)
}

fn figures(
    attackers: usize,
    secs: f64,
    fresh_kib: Option<u64>,
    peak_kib: Option<u64>,
    tally: &Tally,
    mut innocent: Innocent,
) -> Vec<Figure> {
    let fig = |name: String, unit: &'static str, value: Option<f64>| {
        Figure::new("storm", name, unit)
            .values(value, None)
            .rss(peak_kib, None)
    };
    let mib = |kib: Option<u64>| kib.map(|k| k as f64 / 1024.0);
    let lat = &mut innocent.latencies_ns;
    lat.sort_unstable();
    let at = |q: f64| -> Option<f64> {
        let i = ((lat.len() as f64 * q) as usize).min(lat.len().checked_sub(1)?);
        Some(lat[i] as f64 / 1e6)
    };
    let (p50, p99, max) = (at(0.50), at(0.99), lat.last().map(|&n| n as f64 / 1e6));
    let tried = innocent.tried;
    let mut out = vec![
        fig(
            format!("peak RSS, {attackers} attackers"),
            "MiB",
            mib(peak_kib),
        )
        .lower_is_better(),
        fig("RSS of the fresh server".into(), "MiB", mib(fresh_kib)).lower_is_better(),
        fig(format!("innocent login p50 ({tried} tried)"), "ms", p50).lower_is_better(),
        fig(format!("innocent login p99 ({tried} tried)"), "ms", p99).lower_is_better(),
        fig(format!("innocent login max ({tried} tried)"), "ms", max).lower_is_better(),
        fig(
            "innocent logins refused or failed".into(),
            "logins",
            Some((tried - lat.len()) as f64),
        )
        .lower_is_better(),
        fig(
            "attacker logins answered".into(),
            "logins",
            Some(tally.answered() as f64),
        ),
        fig(
            "attacker logins answered".into(),
            "logins/s",
            Some(tally.answered() as f64 / secs),
        ),
    ];
    let mut codes: Vec<&str> = CODES.to_vec();
    codes.extend(tally.by_code.keys().filter(|c| !CODES.contains(c)));
    for code in codes {
        let n = tally.by_code.get(code).copied().unwrap_or(0);
        out.push(fig(format!("answered {code}"), "replies", Some(n as f64)).neutral());
    }
    out.push(
        fig(
            "answered welcome (a guess right)".into(),
            "replies",
            Some(tally.welcomed as f64),
        )
        .neutral(),
    );
    out.push(
        fig(
            "attacker connections closed by the server".into(),
            "connections",
            Some(tally.disconnected as f64),
        )
        .neutral(),
    );
    for (code, n) in &innocent.refused {
        out.push(
            fig(
                format!("innocent refused: {code}"),
                "logins",
                Some(*n as f64),
            )
            .neutral(),
        );
    }
    out
}

/// What the attackers were told.
#[derive(Debug, Default)]
struct Tally {
    by_code: BTreeMap<&'static str, u64>,
    welcomed: u64,
    disconnected: u64,
}

impl Tally {
    fn answered(&self) -> u64 {
        self.by_code.values().sum::<u64>() + self.welcomed
    }

    fn add(&mut self, other: Tally) {
        for (code, n) in other.by_code {
            *self.by_code.entry(code).or_default() += n;
        }
        self.welcomed += other.welcomed;
        self.disconnected += other.disconnected;
    }
}

/// How one login attempt ended.
enum Outcome {
    Refused(&'static str),
    Welcomed,
    /// The server closed the connection (before or instead of a reply).
    Closed,
    /// No connection could be made.
    NoConnection,
}

/// One attacker: logins one after another until told to stop.
async fn attacker(
    addr: SocketAddr,
    n: usize,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let mut rng = Rng::new(n as u64 + 1);
    let mut conn: Option<Conn> = None;
    let mut id: RequestId = 0;
    // Start the mix at different places so the first wave is mixed too.
    for attempt in n.. {
        let (user, password) = match attempt % 3 {
            0 => (VICTIM.to_owned(), WRONG),
            1 => (launch::user(rng.below(POOL)), WRONG),
            _ => (PRESENT.to_owned(), PASSWORD),
        };
        id += 1;
        let outcome = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            outcome = attempt_login(addr, &mut conn, id, user, password) => outcome,
        };
        match outcome {
            Outcome::Refused(code) => *tally.by_code.entry(code).or_default() += 1,
            Outcome::Welcomed => {
                tally.welcomed += 1;
                conn = None;
            }
            Outcome::Closed => {
                tally.disconnected += 1;
                conn = None;
            }
            Outcome::NoConnection => {
                conn = None;
                // Do not spin if the server is gone.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    Ok(tally)
}

/// One login on `conn` (connecting first if there is none), up to its reply.
async fn attempt_login(
    addr: SocketAddr,
    conn: &mut Option<Conn>,
    id: RequestId,
    user: String,
    password: &str,
) -> Outcome {
    let c = match conn {
        Some(c) => c,
        None => match client::greet(addr).await {
            Ok(c) => conn.insert(c),
            Err(_) => return Outcome::NoConnection,
        },
    };
    let request = ClientFrame::Login(LoginRequest {
        id,
        user,
        password: Secret::from(password),
        peer_port: None,
        peer_key: None,
        device: None,
    });
    if c.send(request).await.is_err() {
        return Outcome::Closed;
    }
    loop {
        match c.next().await {
            None | Some(Err(_)) => return Outcome::Closed,
            Some(Ok(Ok(ServerFrame::Error {
                id: Some(got),
                code,
                ..
            }))) if got == id => return Outcome::Refused(code.as_str()),
            Some(Ok(Ok(ServerFrame::Welcome { .. }))) => return Outcome::Welcomed,
            // Events, an error about something else, a bad frame.
            Some(Ok(_)) => {}
        }
    }
}

/// The innocent user's logins and how they went.
#[derive(Debug, Default)]
struct Innocent {
    tried: usize,
    /// Connect to welcome, of each login that succeeded.
    latencies_ns: Vec<u64>,
    /// Refusals by code; failures to connect or time-outs as `no_welcome`.
    refused: BTreeMap<String, u64>,
}

/// Logs the innocent user in and out once a second for `duration`, the
/// first half a second in (the attackers are under way by then).
async fn innocent(addr: SocketAddr, duration: Duration) -> Innocent {
    let start = Instant::now();
    let end = start + duration;
    let mut tick = tokio::time::interval_at(start + INNOCENT_EVERY / 2, INNOCENT_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut out = Innocent::default();
    loop {
        tick.tick().await;
        if Instant::now() >= end {
            return out;
        }
        out.tried += 1;
        let began = Instant::now();
        match tokio::time::timeout(INNOCENT_LIMIT, innocent_login(addr)).await {
            Ok(Ok(conn)) => {
                out.latencies_ns.push(began.elapsed().as_nanos() as u64);
                logout(conn).await;
            }
            Ok(Err(code)) => *out.refused.entry(code).or_default() += 1,
            Err(_) => *out.refused.entry("no_welcome".into()).or_default() += 1,
        }
    }
}

/// Connect, hello, login with the right password; the refusal's code if
/// it is refused.
async fn innocent_login(addr: SocketAddr) -> Result<Conn, String> {
    // From an address of its own, as a real user is: the attackers all
    // share 127.0.0.1.
    let own = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_loopback() => {
            std::net::Ipv4Addr::new(127, 0, 0, 2).into()
        }
        other => other,
    };
    let greeted = if own == addr.ip() {
        client::greet(addr).await
    } else {
        client::greet_from(addr, own).await
    };
    let mut conn = greeted.map_err(|_| "no_connection".to_owned())?;
    let request = ClientFrame::Login(LoginRequest {
        id: 1,
        user: INNOCENT.into(),
        password: Secret::from(PASSWORD),
        peer_port: None,
        peer_key: None,
        device: None,
    });
    conn.send(request).await.map_err(|_| "closed".to_owned())?;
    loop {
        match client::next(&mut conn).await {
            Ok(ServerFrame::Welcome { .. }) => return Ok(conn),
            Ok(ServerFrame::Error { code, .. }) => return Err(code.as_str().into()),
            Ok(_) => {}
            Err(_) => return Err("closed".into()),
        }
    }
}

/// Ends the session and waits for the server to confirm, so the next login
/// of the same user does not find it still logged in.
async fn logout(mut conn: Conn) {
    if conn
        .send(ClientFrame::Logout {
            id: 2,
            revoke_device: false,
        })
        .await
        .is_err()
    {
        return;
    }
    while let Ok(frame) = client::next(&mut conn).await {
        if matches!(frame, ServerFrame::Ok { id: 2, .. }) {
            break;
        }
    }
}

/// xorshift64: which pool account to guess; no need for a real RNG.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_is_covered() {
        let mut rng = Rng::new(7);
        let mut seen = vec![false; POOL];
        for _ in 0..50 * POOL {
            seen[rng.below(POOL)] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn tallies_add_up() {
        let mut a = Tally::default();
        a.by_code.insert("login_blocked", 2);
        a.welcomed = 1;
        let mut b = Tally::default();
        b.by_code.insert("login_blocked", 3);
        b.by_code.insert("invalid_password", 1);
        b.disconnected = 4;
        a.add(b);
        assert_eq!(a.answered(), 7);
        assert_eq!(a.disconnected, 4);
    }
}

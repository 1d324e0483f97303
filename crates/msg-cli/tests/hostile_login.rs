//! Nobody can log a user out for good: wrong passwords from someone else
//! block the account for a while, and msgd, which holds the right one,
//! logs in again after the block instead of giving up. And a server that
//! drops the connection right after every login sees msgd's waits grow,
//! not a login every half second.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// A relay in front of the server that the test can cut (every connection
/// through it closed, new ones closed at once) and restore, or make drop
/// each connection right after the server's welcome.
struct Switch {
    addr: String,
    up: Arc<AtomicBool>,
    drop_after_welcome: Arc<AtomicBool>,
    /// Connections that reached the server.
    relayed: Arc<AtomicUsize>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Switch {
    fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let switch = Self {
            addr: listener.local_addr().unwrap().to_string(),
            up: Arc::new(AtomicBool::new(true)),
            drop_after_welcome: Arc::new(AtomicBool::new(false)),
            relayed: Arc::new(AtomicUsize::new(0)),
            open: Arc::default(),
        };
        let (up, drop_after_welcome, relayed, open) = (
            Arc::clone(&switch.up),
            Arc::clone(&switch.drop_after_welcome),
            Arc::clone(&switch.relayed),
            Arc::clone(&switch.open),
        );
        let target = target.to_owned();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                if !up.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                relayed.fetch_add(1, Ordering::SeqCst);
                open.lock().unwrap().push(client.try_clone().unwrap());
                open.lock().unwrap().push(server.try_clone().unwrap());
                let cut_on_welcome = drop_after_welcome.load(Ordering::SeqCst);
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    false,
                );
                pipe(server, client, cut_on_welcome);
            }
        });
        switch
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` on a thread; with `cut_on_welcome`, ends both once
/// a welcome went through.
fn pipe(mut from: TcpStream, mut to: TcpStream, cut_on_welcome: bool) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        let mut seen = Vec::new();
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
            if cut_on_welcome {
                seen.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&seen).contains(r#""type":"welcome""#) {
                    break;
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// One login attempt as `user` with `password` on a fresh connection; the
/// error code, or `None` for a welcome.
fn try_login(server: &str, user: &str, password: &str) -> Option<String> {
    let mut raw = Raw::connect(server);
    raw.send(json!({"type": "hello", "version": 1}));
    raw.until("hello");
    raw.send(json!({"type": "login", "id": 1, "user": user, "password": password}));
    let answer = raw.recv().expect("an answer to the login");
    answer["code"].as_str().map(str::to_owned)
}

#[test]
fn wrong_passwords_from_someone_else_do_not_log_a_user_out_for_good() {
    let server = Server::with(ServerOptions {
        block_duration: 8,
        ..ServerOptions::default()
    });
    let switch = Switch::start(&server.addr);
    let hans = User::with_server_addr("hans", &switch.addr);
    hans.config("notify = false\n");
    hans.login().ok();

    // hans's connection drops; meanwhile someone guesses his password.
    switch.cut();
    let deadline = Instant::now() + DEADLINE;
    loop {
        match try_login(&server.addr, "hans", "guess").as_deref() {
            Some("account_blocked") => break,
            Some("invalid_password" | "already_logged_in") => {}
            other => panic!("unexpected answer: {other:?}"),
        }
        assert!(Instant::now() < deadline, "never blocked");
        std::thread::sleep(Duration::from_millis(50));
    }
    switch.restore();

    // msgd is refused while the block lasts, says so, and waits it out.
    let status = hans.wait_status(|s| s["waiting"] == "account blocked");
    assert_eq!(status["state"], "reconnecting", "{status}");
    let retry_in = status["retry_in"].as_u64().unwrap();
    assert!((1..=9).contains(&retry_in), "{status}");
    let human = hans.msg(&["status"]);
    assert!(
        human
            .ok()
            .out()
            .contains("connection: waiting to log in again: account blocked, next try in "),
        "{human:?}"
    );
    let who = hans.msg(&["who"]);
    assert_eq!(who.code, 4, "{who:?}");
    assert!(
        who.err()
            .starts_with("Not connected: waiting to log in again (account blocked, next try in "),
        "{who:?}"
    );
    hans.wait_status(|s| s["state"] == "online" && s["waiting"].is_null());
    hans.msg(&["who"]).ok();
}

#[test]
fn a_server_that_drops_every_login_is_not_hammered() {
    let server = Server::start();
    let switch = Switch::start(&server.addr);
    let leia = User::with_server_addr("leia", &switch.addr);
    leia.config("notify = false\n");
    leia.login().ok();
    // From now on every connection is dropped right after its welcome.
    switch.drop_after_welcome.store(true, Ordering::SeqCst);
    switch.cut();
    switch.restore();
    let before = switch.relayed.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(6));
    let logins = switch.relayed.load(Ordering::SeqCst) - before;
    // Waits of 0.5, 1, 2, 4 s (±50 %): 2 to 4 in 6 s, where a wait that
    // starts afresh after each login makes it 12 or more.
    assert!(logins <= 7, "{logins} logins in 6 s");
    assert!(logins >= 2, "msgd keeps trying: {logins}");
    let status = leia.status();
    assert_eq!(status["user"], "leia", "{status}");
}

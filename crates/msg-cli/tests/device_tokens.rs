//! Staying logged in: `msg login` leaves msgd a device token, with which it
//! logs in again by itself after a crash or a restart; `msg logout`,
//! `msg-server revoke` and `msg-server passwd` take it away.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// The token files in `user`'s msgd data directory.
fn token_files(user: &User) -> Vec<PathBuf> {
    match std::fs::read_dir(user.data_dir().join("tokens")) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The token msgd saved for `user` (exactly one file).
fn saved_token(user: &User) -> String {
    let files = token_files(user);
    assert_eq!(files.len(), 1, "one token file: {files:?}");
    let saved: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    let token = saved["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64, "256 bits as hex");
    token
}

fn online_as(user: &User) -> Value {
    user.wait_status(|s| s["state"] == "online" && s["user"] == user.name.as_str())
}

fn logged_out(user: &User) -> Value {
    user.wait_status(|s| s["state"] == "logged_out" && s["user"].is_null())
}

/// Polls until no token file is left, or panics at the deadline.
fn wait_token_deleted(user: &User) {
    let deadline = Instant::now() + DEADLINE;
    while !token_files(user).is_empty() {
        assert!(Instant::now() < deadline, "the token file was not deleted");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `msg-server ARGS` (a subcommand), stdin from `input`.
fn server_command(args: &[&str], input: &str) -> Outcome {
    let mut cmd = assert_cmd::Command::new(&bins().server);
    cmd.args(args).write_stdin(input).timeout(DEADLINE);
    let output = cmd.output().unwrap();
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn revoke(server: &Server, user: &str) -> Outcome {
    let state = server.state_dir();
    server_command(
        &["revoke", user, "--state-dir", state.to_str().unwrap()],
        "",
    )
}

/// A raw `resume` with `token`: what the server answers.
fn raw_resume(server: &Server, user: &str, token: &str) -> Value {
    let mut raw = Raw::connect(&server.addr);
    raw.send(json!({"type": "hello", "version": 1}));
    raw.until("hello");
    raw.send(json!({"type": "resume", "id": 1, "user": user, "token": token}));
    loop {
        let frame = raw.recv().expect("an answer to resume");
        if frame["type"] == "welcome" || frame["type"] == "error" {
            return frame;
        }
    }
}

#[test]
fn a_killed_msgd_logs_back_in_with_its_token_and_gets_what_was_queued() {
    let server = Server::with(ServerOptions {
        log: true,
        ..Default::default()
    });
    let hans = User::new("hans", &server);
    let luke = User::new("luke", &server);
    hans.login().ok();
    luke.login().ok();
    let token = saved_token(&hans);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let file = &token_files(&hans)[0];
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the token file is private");
    }

    hans.kill_daemon();
    // The server has seen the connection go: the message is queued.
    let deadline = Instant::now() + DEADLINE;
    while luke.msg(&["who"]).out().contains("hans") {
        assert!(Instant::now() < deadline, "hans never went offline");
        std::thread::sleep(Duration::from_millis(50));
    }
    luke.msg(&["send", "hans", "while you were away"]).ok();

    // No password anywhere: msgd starts and logs in with the token.
    hans.msg(&["daemon", "start"]).ok();
    online_as(&hans);
    hans.wait_messages(&["luke: while you were away"]);

    // The token was never logged, by msgd or the server.
    let msgd_log = std::fs::read_to_string(hans.data_dir().join("msgd.log")).unwrap();
    assert!(msgd_log.contains("device token"), "msgd logged its use");
    assert!(!msgd_log.contains(&token), "the token is in msgd's log");
    let server_log = server.log();
    assert!(server_log.contains("logged in"), "the server log is kept");
    assert!(
        !server_log.contains(&token),
        "the token is in the server's log"
    );
}

#[test]
fn a_stopped_msgd_logs_in_by_itself_when_started_again() {
    let server = Server::start();
    let hans = User::new("hans", &server);
    hans.login().ok();
    let token = saved_token(&hans);
    hans.msg(&["daemon", "stop"]).ok();
    assert_eq!(saved_token(&hans), token, "stopping keeps the token");
    hans.msg(&["daemon", "start"]).ok();
    online_as(&hans);
}

#[test]
fn after_logout_a_restart_does_not_log_in_and_the_token_is_revoked() {
    let server = Server::start();
    let hans = User::new("hans", &server);
    hans.login().ok();
    let token = saved_token(&hans);
    hans.msg(&["logout"]).ok();
    assert!(token_files(&hans).is_empty(), "logout deletes the token");
    let refused = raw_resume(&server, "hans", &token);
    assert_eq!(refused["code"], "bad_token", "{refused}");

    hans.msg(&["daemon", "stop"]).ok();
    hans.msg(&["daemon", "start"]).ok();
    let status = logged_out(&hans);
    assert_eq!(status["state"], "logged_out");
    let send = hans.msg(&["send", "luke", "hello?"]);
    assert_ne!(send.code, 0);
    assert!(send.err().contains("msg login"), "{send:?}");
}

#[test]
fn revoke_ends_a_live_session_and_a_revoked_token_is_refused_and_deleted() {
    let server = Server::start();
    let hans = User::new("hans", &server);
    hans.login().ok();
    let token = saved_token(&hans);

    // On a running server: the live session ends at once.
    let revoked = revoke(&server, "hans");
    revoked.ok();
    assert!(
        revoked
            .out()
            .contains("Revoked 1 device token(s) of hans; the session is ended"),
        "{revoked:?}"
    );
    let status = logged_out(&hans);
    assert!(
        status["ended"].as_str().unwrap().contains("msg login"),
        "status says to log in: {status}"
    );
    wait_token_deleted(&hans);
    let text = hans.msg(&["status"]);
    assert!(text.out().contains("msg login"), "{text:?}");
    assert_eq!(raw_resume(&server, "hans", &token)["code"], "bad_token");

    // Revoked while msgd is stopped: its next token login is refused.
    hans.login().ok();
    saved_token(&hans);
    hans.msg(&["daemon", "stop"]).ok();
    revoke(&server, "hans").ok();
    hans.msg(&["daemon", "start"]).ok();
    let status = logged_out(&hans);
    assert!(
        status["ended"].as_str().unwrap().contains("msg login"),
        "{status}"
    );
    wait_token_deleted(&hans);
    hans.login().ok();
    online_as(&hans);
}

#[test]
fn revoke_without_a_running_server_edits_its_database() {
    let mut server = Server::start();
    let hans = User::new("hans", &server);
    hans.login().ok();
    let token = saved_token(&hans);
    hans.msg(&["daemon", "stop"]).ok();
    server.stop();
    let list = server_command(
        &[
            "revoke",
            "hans",
            "--list",
            "--state-dir",
            server.state_dir().to_str().unwrap(),
        ],
        "",
    );
    list.ok();
    assert!(list.out().starts_with("msgd@"), "{list:?}");
    let revoked = revoke(&server, "hans");
    revoked.ok();
    assert!(
        revoked
            .out()
            .contains("Revoked 1 device token(s) of hans (no server was running)"),
        "{revoked:?}"
    );
    server.start_again();
    assert_eq!(raw_resume(&server, "hans", &token)["code"], "bad_token");
}

#[test]
fn passwd_changes_the_password_and_revokes_the_tokens() {
    let server = Server::with(ServerOptions {
        log: true,
        ..Default::default()
    });
    let hans = User::new("hans", &server);
    hans.login().ok();
    let token = saved_token(&hans);

    let changed = server_command(
        &[
            "passwd",
            "hans",
            "--password-stdin",
            "--credentials",
            server.credentials().to_str().unwrap(),
            "--state-dir",
            server.state_dir().to_str().unwrap(),
        ],
        "new*falcon\n",
    );
    changed.ok();
    assert!(
        changed.out().contains("Changed the password of hans"),
        "{changed:?}"
    );
    assert!(
        changed.out().contains("Revoked 1 device token(s)"),
        "{changed:?}"
    );
    logged_out(&hans);
    wait_token_deleted(&hans);
    assert_eq!(raw_resume(&server, "hans", &token)["code"], "bad_token");

    let old = hans.login();
    assert_ne!(old.code, 0, "the old password is refused: {old:?}");
    assert!(old.err().contains("Invalid Password"), "{old:?}");
    let new = hans.login_with("new*falcon");
    assert_eq!(new.code, 0, "{new:?}\n{}", server.log());
    online_as(&hans);
    saved_token(&hans);
}

#[test]
fn wrong_tokens_count_against_the_address_like_wrong_passwords() {
    let server = Server::start();
    let mut refused = Vec::new();
    // The default allowance is 30 failures an hour per address.
    for _ in 0..31 {
        let answer = raw_resume(&server, "hans", &"ab".repeat(32));
        refused.push(answer["code"].as_str().unwrap().to_owned());
    }
    assert!(
        refused[..30].iter().all(|c| c == "bad_token"),
        "{refused:?}"
    );
    assert_eq!(refused[30], "rate_limited");
}

#[test]
fn reconnecting_with_the_password_in_memory_asks_for_no_new_token() {
    let mut server = Server::start();
    let hans = User::new("hans", &server);
    let luke = User::new("luke", &server);
    hans.login().ok();
    let token = saved_token(&hans);
    server.restart();
    luke.login().ok();
    let deadline = Instant::now() + DEADLINE;
    while !luke.msg(&["who"]).out().contains("hans") {
        assert!(Instant::now() < deadline, "hans never logged in again");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(saved_token(&hans), token);
    let state = server.state_dir();
    let list = server_command(
        &[
            "revoke",
            "hans",
            "--list",
            "--state-dir",
            state.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(list.ok().lines().len(), 1, "one device: {list:?}");
}

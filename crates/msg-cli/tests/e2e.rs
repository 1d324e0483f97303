//! The classic scenarios end to end: real server, one msgd per user, `msg`.

mod common;

use common::*;

/// Inbox lines of direct messages and broadcasts only (presence notices
/// arrive too, depending on who logs in when).
fn messages(outcome: &Outcome) -> Vec<String> {
    outcome
        .lines()
        .into_iter()
        .map(|l| l.split_once("] ").map_or(l, |(_, rest)| rest).to_owned())
        .filter(|l| l.contains(": "))
        .collect()
}

#[test]
fn two_users_message_each_other() {
    let server = Server::start();
    let hans = User::new("hans", &server);
    let login = hans.login();
    assert_eq!(
        login.ok().out(),
        "Welcome to the greatest messaging application ever!"
    );
    let luke = User::new("luke", &server);
    luke.login().ok();

    assert_eq!(
        hans.msg(&["send", "luke", "Hello", "there"]).ok().out(),
        "Delivered to luke"
    );
    assert_eq!(
        luke.msg(&["send", "hans", "General Kenobi", "--json"])
            .ok()
            .json()["queued"],
        false,
        "--json after the text is a flag"
    );

    assert_eq!(messages(luke.msg(&["inbox"]).ok()), ["hans: Hello there"]);
    assert_eq!(
        messages(hans.msg(&["inbox"]).ok()),
        ["luke: General Kenobi"]
    );
    // Read now: a second look shows nothing new, --all shows it again.
    assert_eq!(messages(luke.msg(&["inbox"]).ok()), Vec::<String>::new());
    assert_eq!(
        messages(luke.msg(&["inbox", "--all"]).ok()),
        ["hans: Hello there"]
    );

    let me = hans.msg(&["send", "hans", "hi"]);
    assert_eq!((me.code, me.err()), (1, "Error. Cannot message yourself"));
    let nobody = hans.msg(&["send", "nobody", "hi"]);
    assert_eq!(
        (nobody.code, nobody.err()),
        (1, "Error. Invalid user: nobody has no account")
    );
    let long = "x".repeat(4001);
    let too_long = hans.msg(&["send", "luke", &long]);
    assert_eq!(
        (too_long.code, too_long.err()),
        (1, "Error. Message too long: 4001 characters, at most 4000")
    );
    // Far over the limit: the same clear refusal, not a frame error.
    let huge = hans.msg(&["send", "luke", &"y".repeat(70_000)]);
    assert_eq!(
        (huge.code, huge.err()),
        (1, "Error. Message too long: 70000 characters, at most 4000")
    );
}

#[test]
fn inbox_peek_marks_nothing_and_json_items_parse() {
    let server = Server::start();
    let [hans, luke] = <[User; 2]>::try_from(online(&server, &["hans", "luke"]))
        .ok()
        .unwrap();
    hans.msg(&["send", "luke", "one"]).ok();
    hans.msg(&["send", "luke", "two"]).ok();
    assert_eq!(luke.status()["unread"], 2);
    let peek = luke.msg(&["inbox", "--peek", "--json"]);
    let items: Vec<_> = peek
        .ok()
        .json_lines()
        .into_iter()
        .filter(|i| i["kind"] == "message")
        .collect();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["from"], "hans");
    assert_eq!(items[0]["text"], "one");
    assert_eq!(items[1]["text"], "two");
    assert!(items[0]["id"].is_u64());
    let at = items[0]["at"].as_str().unwrap();
    assert!(
        at.len() == 20 && at.ends_with('Z') && at.as_bytes()[10] == b'T',
        "{at}"
    );
    assert_eq!(luke.status()["unread"], 2, "--peek marks nothing");
    let lines = luke.msg(&["inbox"]);
    assert!(
        lines.ok().out().lines().all(|l| l.starts_with('[')),
        "timestamped: {lines:?}"
    );
    assert_eq!(luke.status()["unread"], 0);
}

#[test]
fn offline_message_is_delivered_at_next_login() {
    let server = Server::start();
    let hans = User::new("hans", &server);
    hans.login().ok();
    let queued = hans.msg(&["send", "luke", "are", "you", "there?"]);
    assert_eq!(
        queued.ok().out(),
        "luke is offline; the message is queued for their next login"
    );
    let json = hans.msg(&["--json", "send", "luke", "second"]).ok().json();
    assert_eq!(json["queued"], true);
    assert_eq!(json["ok"], true);

    let luke = User::new("luke", &server);
    luke.login().ok();
    // Delivery follows the welcome; wait for it to land in the inbox.
    luke.wait_status(|s| s["unread"] == 2);
    assert_eq!(
        messages(luke.msg(&["inbox"]).ok()),
        ["hans: are you there?", "hans: second"]
    );
}

#[test]
fn broadcast_skips_blockers_and_says_so() {
    let server = Server::start();
    let [hans, luke, yoda] = <[User; 3]>::try_from(online(&server, &["hans", "luke", "yoda"]))
        .ok()
        .unwrap();
    assert_eq!(
        hans.msg(&["broadcast", "hello", "all"]).ok().out(),
        "Broadcast sent to everyone online"
    );
    assert_eq!(yoda.msg(&["block", "hans"]).ok().out(), "hans is blocked");
    let partly = hans.msg(&["broadcast", "anyone?"]);
    assert_eq!(
        partly.ok().out(),
        "Your message could not be delivered to some recipients"
    );
    luke.wait_messages(&["hans (broadcast): hello all", "hans (broadcast): anyone?"]);
    // The server decided before answering: yoda was never sent the second.
    yoda.wait_messages(&["hans (broadcast): hello all"]);
    assert_eq!(
        messages(hans.msg(&["inbox"]).ok()),
        Vec::<String>::new(),
        "no echo to the sender"
    );
}

#[test]
fn block_and_unblock_effects_and_texts() {
    let server = Server::start();
    let [hans, luke] = <[User; 2]>::try_from(online(&server, &["hans", "luke"]))
        .ok()
        .unwrap();
    let check = |user: &User, args: &[&str], code: i32, text: &str| {
        let o = user.msg(args);
        let shown = if code == 0 { o.out() } else { o.err() };
        assert_eq!((o.code, shown), (code, text), "{args:?}: {o:?}");
    };
    check(&luke, &["block", "hans"], 0, "hans is blocked");
    check(&luke, &["-q", "unblock", "hans"], 0, "");
    check(&luke, &["block", "hans"], 0, "hans is blocked");
    check(
        &luke,
        &["block", "hans"],
        1,
        "Error. hans is already blocked",
    );
    check(&luke, &["block", "luke"], 1, "Error. Cannot block self");
    check(
        &luke,
        &["block", "nobody"],
        1,
        "Error. Invalid user: nobody has no account",
    );
    check(
        &hans,
        &["send", "luke", "hi"],
        1,
        "Your message could not be delivered as the recipient has blocked you",
    );
    assert_eq!(
        hans.msg(&["who"]).ok().out(),
        "No one else is online",
        "the blocker is hidden from the blocked"
    );
    check(&luke, &["unblock", "hans"], 0, "hans is unblocked");
    check(
        &luke,
        &["unblock", "hans"],
        1,
        "Error. hans was not blocked",
    );
    check(&luke, &["unblock", "luke"], 1, "Error. Cannot block self");
    check(&hans, &["send", "luke", "hi again"], 0, "Delivered to luke");
    assert_eq!(messages(luke.msg(&["inbox"]).ok()), ["hans: hi again"]);
    assert_eq!(hans.msg(&["who"]).ok().out(), "luke");
}

#[test]
fn who_and_who_since() {
    let server = Server::start();
    let [hans, luke, yoda] = <[User; 3]>::try_from(online(&server, &["hans", "luke", "yoda"]))
        .ok()
        .unwrap();
    assert_eq!(hans.msg(&["who"]).ok().lines(), ["luke", "yoda"]);
    assert_eq!(
        hans.msg(&["--json", "who"]).ok().json(),
        serde_json::json!({"users": ["luke", "yoda"]})
    );
    yoda.msg(&["logout"]).ok();
    assert_eq!(hans.msg(&["who"]).ok().lines(), ["luke"]);
    assert_eq!(
        hans.msg(&["who", "--since", "60"]).ok().lines(),
        ["luke", "yoda"]
    );
    let negative = hans.msg(&["who", "--since", "-1"]);
    assert_eq!(negative.code, 2, "usage error: {negative:?}");
    drop(luke);
}

#[test]
fn lockout_after_three_wrong_passwords() {
    let server = Server::start();
    let hans = User::new("hans", &server);
    let wrong = hans.login_with("nope");
    assert_eq!(
        (wrong.code, wrong.err()),
        (1, "Invalid Password. Please try again")
    );
    assert_eq!(
        hans.login_with("nope").err(),
        "Invalid Password. Please try again"
    );
    let third = hans.login_with("nope");
    assert_eq!(
        (third.code, third.err()),
        (
            1,
            "Invalid Password. Your account has been blocked. Please try again later"
        )
    );
    // The block's end is told, in whole seconds (the server's default is 60).
    let right = hans.login();
    assert_eq!(right.code, 1);
    let told = right
        .err()
        .strip_prefix(
            "Your account is blocked due to multiple login failures. Please try again later (in ",
        )
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{right:?}"))
        .to_owned();
    assert!(told == "1m" || told.ends_with('s'), "{told}");
    let json = hans.run_with(
        &["--json", "login", "hans", "--password-stdin"],
        Some("falcon*solo\n"),
    );
    let error = &json.json()["error"];
    assert_eq!(error["code"], "login_blocked");
    let secs = error["retry_after"].as_u64().expect("retry_after");
    assert!((1..=60).contains(&secs), "{secs}");
    assert_eq!(hans.msg(&["send", "luke", "hi"]).code, 3, "not logged in");
}

#[test]
fn inactivity_timeout_ends_the_session() {
    let server = Server::with(ServerOptions {
        timeout: 2,
        ..Default::default()
    });
    let hans = User::new("hans", &server);
    hans.login().ok();
    // Waits on the state, not on a watcher: one started after the login
    // could subscribe only after the (short) timeout under load.
    let status = hans.wait_status(|s| s["state"] == "logged_out");
    assert_eq!(status["user"], serde_json::Value::Null);
    // The notice was stored before the state changed.
    let inbox = hans.msg(&["inbox", "--peek"]).ok().out().to_owned();
    assert!(
        inbox.ends_with("You have been logged out due to inactivity"),
        "{inbox}"
    );
    let send = hans.msg(&["send", "luke", "still there?"]);
    assert_eq!(
        (send.code, send.err()),
        (3, "You have been logged out due to inactivity")
    );
    let json = hans.msg(&["--json", "who"]).json();
    assert_eq!(json["error"]["code"], "timeout");
    // Logging in again works and clears it.
    hans.login().ok();
    assert_eq!(hans.msg(&["who"]).code, 0);
}

#[test]
fn watch_streams_events_as_they_arrive() {
    let server = Server::start();
    let luke = User::new("luke", &server);
    luke.login().ok();
    let (_watch, lines) = luke.watch(false);
    let (_watch_json, json_lines) = luke.watch(true);
    let hans = User::new("hans", &server);
    hans.login().ok();
    lines.until(|l| l == "hans logged in");
    hans.msg(&["send", "luke", "first"]).ok();
    hans.msg(&["broadcast", "second"]).ok();
    assert_eq!(lines.next(), "hans: first");
    assert_eq!(lines.next(), "hans (broadcast): second");
    hans.msg(&["logout"]).ok();
    assert_eq!(lines.next(), "hans logged out");
    json_lines.until(|l| l.contains("\"kind\":\"message\""));
    let broadcast: serde_json::Value = serde_json::from_str(&json_lines.next()).unwrap();
    assert_eq!(broadcast["kind"], "broadcast");
    assert_eq!(broadcast["from"], "hans");
    assert_eq!(broadcast["text"], "second");
}

#[test]
fn status_login_logout_and_daemon_lifecycle() {
    let server = Server::start();
    let hans = User::new("hans", &server);
    let none = hans.msg(&["send", "luke", "hi"]);
    assert_eq!(
        (none.code, none.err()),
        (4, "msgd is not running — run `msg login USER`")
    );
    assert_eq!(hans.msg(&["status", "--json"]).json()["running"], false);
    hans.login().ok();
    let status = hans.status();
    assert_eq!(status["running"], true);
    assert_eq!(status["user"], "hans");
    assert_eq!(status["state"], "online");
    assert_eq!(status["server"], server.addr.as_str());
    assert_eq!(hans.login().ok().out(), "Already logged in as hans");
    let other = hans.run_with(
        &["login", "luke", "--password-stdin"],
        Some("jedi*knight\n"),
    );
    assert_eq!(
        (other.code, other.err()),
        (1, "Already logged in as hans. Run `msg logout` first")
    );

    let luke = User::new("luke", &server);
    luke.login().ok();
    let (_watch, lines) = luke.watch(false);
    assert_eq!(hans.msg(&["logout"]).ok().out(), "Logged out");
    lines.until(|l| l == "hans logged out");
    assert_eq!(hans.status()["state"], "logged_out");
    let send = hans.msg(&["send", "luke", "hi"]);
    assert_eq!(send.code, 3, "{send:?}");
    assert!(send.err().starts_with("Not logged in"), "{send:?}");

    hans.login().ok();
    lines.until(|l| l == "hans logged in");
    assert_eq!(hans.msg(&["daemon", "stop"]).ok().out(), "msgd stopped");
    lines.until(|l| l == "hans logged out");
    assert_eq!(hans.msg(&["status"]).code, 4);
    assert_eq!(hans.msg(&["daemon", "start"]).ok().out(), "msgd started");
    assert_eq!(
        hans.msg(&["daemon", "start"]).ok().out(),
        "msgd is already running"
    );
    // Stopping kept the device token: the new msgd logs in by itself.
    hans.wait_status(|s| s["state"] == "online" && s["user"] == "hans");
    lines.until(|l| l == "hans logged in");
}

#[test]
fn unreachable_server_is_exit_4() {
    let server = Server::start();
    let hans = User::new("hans", &server);
    let out = hans.run_with(
        &[
            "login",
            "hans",
            "--server",
            "127.0.0.1:1",
            "--password-stdin",
        ],
        Some("x\n"),
    );
    assert_eq!(
        (out.code, out.err()),
        (4, "Cannot reach the server at 127.0.0.1:1")
    );
}

#[test]
fn register_creates_an_account_when_the_server_allows_it() {
    let server = Server::with(ServerOptions {
        allow_register: true,
        ..Default::default()
    });
    let rey = User::new("rey", &server);
    let unknown = rey.login_with("jakku");
    assert_eq!(unknown.code, 1, "{unknown:?}");
    assert!(
        unknown.err().starts_with("Error. Invalid user"),
        "{unknown:?}"
    );
    let out = rey.run_with(&["register", "rey", "--password-stdin"], Some("jakku\n"));
    assert_eq!(
        out.ok().out(),
        "Welcome to the greatest messaging application ever!"
    );
    let hans = User::new("hans", &server);
    hans.login().ok();
    assert_eq!(hans.msg(&["who"]).ok().out(), "rey");
    let taken = hans.run_with(&["register", "luke", "--password-stdin"], Some("x\n"));
    assert_eq!(taken.code, 1, "{taken:?}");
}

#[cfg(unix)]
#[test]
fn sigterm_logs_out_and_stops_cleanly() {
    let server = Server::start();
    let [hans, luke] = <[User; 2]>::try_from(online(&server, &["hans", "luke"]))
        .ok()
        .unwrap();
    let (_watch, luke_sees) = luke.watch(false);
    let pid = hans.daemon_pid().unwrap();
    // SAFETY: a signal to the daemon this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    luke_sees.until(|l| l == "hans logged out");
    let deadline = std::time::Instant::now() + DEADLINE;
    while hans.runtime_dir().join("msgd.sock").exists() {
        assert!(std::time::Instant::now() < deadline, "socket not removed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(hans.msg(&["status"]).code, 4);
    let log = std::fs::read_to_string(hans.data_dir().join("msgd.log")).unwrap();
    assert!(log.contains("msgd stopped"), "{log}");
    assert!(!log.contains("falcon"), "no password in the log");
}

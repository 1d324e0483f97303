//! Private sessions: brokered by the server, then a direct connection
//! between the two daemons that carries the private messages.

mod common;

use common::*;
use serde_json::json;

/// Private items in `user`'s inbox, as lines, without marking them read.
fn private_items(user: &User) -> Vec<String> {
    user.msg(&["inbox", "--peek", "--all", "--json"])
        .json_lines()
        .iter()
        .filter(|i| i["kind"] == "private")
        .map(|i| {
            format!(
                "{}(private): {}",
                i["from"].as_str().unwrap(),
                i["text"].as_str().unwrap()
            )
        })
        .collect()
}

fn not_enabled(user: &User, peer: &str) {
    let send = user.msg(&["private", "send", peer, "anyone there?"]);
    assert_eq!(
        (send.code, send.err()),
        (
            1,
            format!("Error. Private messaging to {peer} not enabled").as_str()
        )
    );
}

/// `asker` asks `callee` (who auto-accepts or accepts by hand) and both
/// see the session start.
fn start(asker: &User, callee: &User, asker_sees: &Lines, callee_sees: &Lines, accept: bool) {
    let (a, c) = (asker.name.as_str(), callee.name.as_str());
    let started = asker.background(&["private", "start", c]);
    if accept {
        callee_sees.until(|l| l == format!("{a} would like to private message"));
        callee.msg(&["private", "accept", a]).ok();
    }
    assert_eq!(
        started.join().ok().out(),
        format!("Start private messaging with {c}")
    );
    asker_sees.until(|l| l == format!("Start private messaging with {c}"));
    callee_sees.until(|l| l == format!("Start private messaging with {a}"));
}

#[test]
fn seed_sample_both_ways_then_a_logout_ends_it() {
    let server = Server::start();
    let [hans, luke, yoda] = <[User; 3]>::try_from(online(&server, &["hans", "luke", "yoda"]))
        .ok()
        .unwrap();
    let (_w1, hans_sees) = hans.watch(false);
    let (_w2, luke_sees) = luke.watch(false);
    let started = hans.background(&["private", "start", "luke"]);
    luke_sees.until(|l| l == "hans would like to private message");
    assert_eq!(
        luke.msg(&["--json", "private", "list"]).json()["incoming"],
        json!(["hans"])
    );
    assert_eq!(
        luke.msg(&["private", "accept", "hans"]).ok().out(),
        "Start private messaging with hans"
    );
    assert_eq!(
        started.join().ok().out(),
        "Start private messaging with luke"
    );
    hans_sees.until(|l| l == "Start private messaging with luke");
    luke_sees.until(|l| l == "Start private messaging with hans");
    assert_eq!(
        luke.msg(&["private", "list"]).ok().out(),
        "hans: private session open"
    );
    assert_eq!(hans.status()["private"], json!(["luke"]));

    // Both ways, straight away (the session is usable once start returns).
    assert_eq!(
        hans.msg(&["private", "send", "luke", "psst", "luke"])
            .ok()
            .out(),
        "Delivered privately to luke"
    );
    luke_sees.until(|l| l == "hans(private): psst luke");
    luke.msg(&["private", "send", "hans", "hi hans"]).ok();
    hans_sees.until(|l| l == "luke(private): hi hans");
    assert_eq!(private_items(&luke), ["hans(private): psst luke"]);
    assert_eq!(private_items(&hans), ["luke(private): hi hans"]);

    // A normal message still goes through the server.
    hans.msg(&["send", "yoda", "still", "here"]).ok();
    yoda.wait_messages(&["hans: still here"]);

    hans.msg(&["logout"]).ok();
    luke_sees.until(|l| l == "Private messaging with hans stopped");
    assert_eq!(luke.status()["private"], json!([]));
    not_enabled(&luke, "hans");
}

#[test]
fn stop_from_either_side_a_block_and_a_vanished_peer() {
    let server = Server::start();
    let luke = User::new("luke", &server);
    luke.config("auto_accept_private = true\nnotify = false\n");
    luke.login().ok();
    let hans = User::new("hans", &server);
    hans.login().ok();
    let (_w1, hans_sees) = hans.watch(false);
    let (_w2, luke_sees) = luke.watch(false);

    // The callee stops.
    start(&hans, &luke, &hans_sees, &luke_sees, false);
    assert_eq!(
        luke.msg(&["private", "stop", "hans"]).ok().out(),
        "Private messaging with hans stopped"
    );
    hans_sees.until(|l| l == "Private messaging with luke stopped");
    not_enabled(&hans, "luke");
    not_enabled(&luke, "hans");
    let again = luke.msg(&["private", "stop", "hans"]);
    assert_eq!(
        (again.code, again.err()),
        (1, "Error. No private session with hans")
    );

    // The asker stops.
    start(&hans, &luke, &hans_sees, &luke_sees, false);
    assert_eq!(
        hans.msg(&["private", "stop", "luke"]).ok().out(),
        "Private messaging with luke stopped"
    );
    luke_sees.until(|l| l == "Private messaging with hans stopped");
    not_enabled(&luke, "hans");

    // A block ends it for both.
    start(&hans, &luke, &hans_sees, &luke_sees, false);
    hans.msg(&["block", "luke"]).ok();
    hans_sees.until(|l| l == "Private messaging with luke stopped");
    luke_sees.until(|l| l == "Private messaging with hans stopped");
    not_enabled(&hans, "luke");
    hans.msg(&["unblock", "luke"]).ok();

    // The peer's daemon dies (no bye): detected and reported; whichever of
    // the dropped connection or the server's notice comes first tells it.
    start(&hans, &luke, &hans_sees, &luke_sees, false);
    luke.kill_daemon();
    hans_sees.until(|l| l.starts_with("Private messaging with luke stopped"));
    not_enabled(&hans, "luke");
    assert_eq!(hans.status()["private"], json!([]));

    // A daemon that stops cleanly ends its sessions too.
    luke.login().ok();
    let (_w3, luke_sees) = luke.watch(false);
    start(&hans, &luke, &hans_sees, &luke_sees, false);
    hans.msg(&["daemon", "stop"]).ok();
    luke_sees.until(|l| l == "Private messaging with hans stopped");
    not_enabled(&luke, "hans");
}

#[test]
fn an_unreachable_peer_is_reported_and_the_session_closed() {
    let server = Server::start();
    let hans = User::new("hans", &server);
    hans.login().ok();
    // luke, by hand, advertises a port nobody listens on (and a key).
    let mut luke = Raw::connect(&server.addr);
    luke.send(json!({"type": "hello", "version": 1}));
    luke.until("hello");
    let login = json!({"type": "login", "id": 1, "user": "luke", "password": password("luke"), "peer_port": free_port(), "peer_key": "5a".repeat(32)});
    luke.send(login);
    luke.until("welcome");
    let started = hans.background(&["private", "start", "luke"]);
    luke.until("private_request");
    luke.send(json!({"type": "private_accept", "id": 2, "user": "hans"}));
    let failed = started.join();
    assert_eq!(
        (failed.code, failed.err()),
        (1, "Error. Cannot connect to luke for private messaging")
    );
    // hans's daemon told the server, which tells luke.
    assert_eq!(
        luke.until("private_ended"),
        json!({"type": "private_ended", "peer": "hans", "reason": "stopped"})
    );
    not_enabled(&hans, "luke");
    assert_eq!(hans.status()["private"], json!([]));
}

#[test]
fn refusals_decline_and_no_answer() {
    let server = Server::with(ServerOptions {
        private_timeout_ms: Some(1_000),
        ..ServerOptions::default()
    });
    let [hans, luke] = <[User; 2]>::try_from(online(&server, &["hans", "luke"]))
        .ok()
        .unwrap();
    let check = |args: &[&str], text: &str| {
        let o = hans.msg(args);
        assert_eq!((o.code, o.err()), (1, text), "{args:?}");
    };
    check(
        &["private", "start", "hans"],
        "Error. Cannot start private messaging with self",
    );
    check(
        &["private", "start", "nobody"],
        "Error. Invalid user: nobody has no account",
    );
    check(&["private", "start", "yoda"], "Error. yoda is offline");
    not_enabled(&hans, "luke");

    let (_watch, luke_sees) = luke.watch(false);
    let declined = hans.background(&["private", "start", "luke"]);
    luke_sees.until(|l| l == "hans would like to private message");
    luke.msg(&["private", "decline", "hans"]).ok();
    let declined = declined.join();
    assert_eq!(
        (declined.code, declined.err()),
        (1, "luke declined private messaging")
    );

    // Nobody answers within the server's (shortened) request timeout.
    let unanswered = hans.msg(&["private", "start", "luke"]);
    assert_eq!(
        (unanswered.code, unanswered.err()),
        (1, "Error. luke did not answer")
    );
    luke_sees.until(|l| l == "The private messaging request from hans expired");
    not_enabled(&hans, "luke");

    luke.msg(&["block", "hans"]).ok();
    check(&["private", "start", "luke"], "Error. luke has blocked you");
}

#[test]
fn private_messages_count_as_activity() {
    let server = Server::with(ServerOptions {
        timeout: 2,
        ..ServerOptions::default()
    });
    let luke = User::new("luke", &server);
    luke.config("auto_accept_private = true\nnotify = false\n");
    luke.login().ok();
    let hans = User::new("hans", &server);
    hans.login().ok();
    let (_w1, hans_sees) = hans.watch(false);
    let (_w2, luke_sees) = luke.watch(false);
    start(&hans, &luke, &hans_sees, &luke_sees, false);
    // Well past the timeout, only private messages keep both sessions up.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(4);
    while std::time::Instant::now() < until {
        hans.msg(&["private", "send", "luke", "ping"]).ok();
        luke.msg(&["private", "send", "hans", "pong"]).ok();
    }
    assert_eq!(hans.status()["private"], json!(["luke"]));
    assert_eq!(luke.status()["state"], "online");
    // Then silence: the timeout applies, and ends the session for both.
    hans_sees.until(|l| l == "You have been logged out due to inactivity");
    luke_sees.until(|l| l == "Private messaging with hans stopped");
}

#[test]
fn private_text_never_crosses_the_server() {
    let server = Server::start();
    let relay = Relay::start(&server.addr);
    let luke = User::with_server_addr("luke", &relay.addr);
    luke.config("auto_accept_private = true\nnotify = false\n");
    luke.login().ok();
    let hans = User::with_server_addr("hans", &relay.addr);
    hans.login().ok();
    let (_w1, hans_sees) = hans.watch(false);
    let (_w2, luke_sees) = luke.watch(false);
    start(&hans, &luke, &hans_sees, &luke_sees, false);

    hans.msg(&["private", "send", "luke", "secret-from-hans-4711"])
        .ok();
    luke.msg(&["private", "send", "hans", "secret-from-luke-0815"])
        .ok();
    hans_sees.until(|l| l == "luke(private): secret-from-luke-0815");
    hans.msg(&["send", "luke", "public-via-server-2323"]).ok();
    luke_sees.until(|l| l == "hans: public-via-server-2323");
    assert_eq!(
        private_items(&luke),
        ["hans(private): secret-from-hans-4711"]
    );

    let seen = relay.seen();
    assert!(
        seen.contains("public-via-server-2323"),
        "the relay sees the server traffic"
    );
    assert!(!seen.contains("secret-from-hans-4711"));
    assert!(!seen.contains("secret-from-luke-0815"));
    // The server was told of the activity, without content.
    assert!(seen.contains(r#"{"type":"activity"}"#));
}

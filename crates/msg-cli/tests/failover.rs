//! Several nodes behind one name: msgd given `--server a,b` uses one node
//! and, when it is gone, moves to another by itself, logging in again.
// The nodes are stopped with signals; the Windows port is built, not run.
#![cfg(unix)]

mod common;

use common::*;

#[test]
fn msgd_moves_to_another_node_when_its_node_is_gone() {
    let first = Server::start();
    let second = Server::start();
    let both = format!("{},{}", first.addr, second.addr);
    let hans = User::with_server_addr("hans", &both);
    hans.login().ok();
    let status = hans.status();
    assert_eq!(status["server"], both.as_str(), "{status}");
    // luke is on the second node only; these nodes share nothing, so hans
    // reaches him only once msgd has moved there.
    let luke = User::new("luke", &second);
    luke.login().ok();
    let early = hans.msg(&["send", "luke", "hello?"]);
    assert_ne!(early.out(), "Delivered to luke", "not yet: {early:?}");

    drop(first);
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let sent = hans.msg(&["send", "luke", "over here"]);
        if sent.code == 0 {
            assert_eq!(sent.out(), "Delivered to luke");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "msgd never reached luke through the second node: {sent:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let status = hans.wait_status(|s| s["state"] == "online");
    assert_eq!(status["user"], "hans", "{status}");
}

#[path = "../../msg-server/tests/common/services.rs"]
mod services;

/// The same with the nodes of one cluster: hans's msgd is killed away from
/// its node, comes back on another, and the message luke sent meanwhile is
/// delivered there; luke, on a third node, is reached from the new one.
#[test]
fn msgd_moves_to_another_node_of_a_cluster_and_gets_what_waited() {
    let Some(services) = services::Services::get("msgd failover in a cluster") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = runtime.block_on(services.new_database());
    let node = |name: &str| {
        Server::with(ServerOptions {
            extra_args: [
                "--store",
                &store,
                "--cluster",
                &services.nats,
                "--node-name",
                name,
                "--lease-ttl-ms",
                "1500",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            ..ServerOptions::default()
        })
    };
    let (mut first, second, third) = (node("a"), node("b"), node("c"));
    let hans = User::with_server_addr("hans", &format!("{},{}", first.addr, second.addr));
    hans.login().ok();
    let luke = User::new("luke", &third);
    luke.login().ok();
    // Across nodes, acknowledged end to end.
    assert_eq!(
        hans.msg(&["send", "luke", "hello"]).ok().out(),
        "Delivered to luke"
    );

    // SIGKILL: no goodbye to anyone.
    first.stop();
    // Sent while hans is between nodes: queued, then delivered where he
    // logs in again.
    let sent = luke.msg(&["send", "hans", "where are you"]);
    assert_eq!(sent.code, 0, "{sent:?}");
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let inbox = hans.msg(&["inbox", "--json"]);
        if inbox
            .json_lines()
            .iter()
            .any(|item| item["text"] == "where are you")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the message never reached hans on the second node: {inbox:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        hans.msg(&["send", "luke", "back"]).ok().out(),
        "Delivered to luke"
    );
}

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

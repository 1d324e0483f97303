//! Memory a client can pin in the server is bounded in bytes: what waits to
//! be written to a connection, and the live messages held for a user while
//! the offline queue is delivered.

mod common;

use common::*;
use msg_proto::server::ServerFrame;

/// The budget the tests set (the default is 1 MiB).
const BUDGET: &str = "65536";

#[tokio::test]
async fn a_recipient_that_never_reads_is_dropped_once_over_its_byte_budget() {
    // 9.6 MB: more than the kernel's largest send buffer (4 MiB by
    // default) can take off the server's hands.
    const SENT: usize = 400;
    let env = Env::new();
    let server = env.start(&["--connection-budget", BUDGET, "--max-rate", "0"]);
    let mut hans = Client::login(server.addr, "hans").await;
    let luke = Client::login_with_small_buffer(server.addr, "luke").await;
    // 4,000 control characters: 24 KB of JSON each, far fewer frames than
    // the 1,024 events a queue may hold.
    let text = "\u{1}".repeat(4000);
    let mut ids = Vec::new();
    for _ in 0..SENT {
        ids.push(hans.submit(send_to("luke", &text)).await);
    }
    hans.event_matching(is_presence("luke", false)).await;
    // Nothing is lost: every message is stored, and hans told so.
    for id in ids {
        let reply = hans.reply(id).await;
        assert!(
            matches!(reply, ServerFrame::Sent { queued: true, .. }),
            "{reply:?}"
        );
    }
    drop(luke);
    let mut luke = Client::login(server.addr, "luke").await;
    for _ in 0..SENT {
        let message = luke.next_message().await;
        assert!(
            matches!(&message, ServerFrame::Message { text: t, .. } if *t == text),
            "{message:?}"
        );
    }
}

#[tokio::test]
async fn live_messages_held_during_a_drain_are_stored_past_the_budget_and_come_in_order() {
    // 6 MB: more than the socket buffers hold, so the drain is still
    // under way while luke does not read.
    const QUEUED: usize = 6000;
    const LIVE: usize = 100;
    let env = Env::new();
    let server = env.start(&[
        "--connection-budget",
        BUDGET,
        "--max-rate",
        "0",
        "--timeout",
        "0",
    ]);
    let mut hans = Client::login(server.addr, "hans").await;
    let filler = "q".repeat(1000);
    let mut ids = Vec::new();
    for n in 0..QUEUED {
        ids.push(
            hans.submit(send_to("luke", &format!("offline {n} {filler}")))
                .await,
        );
    }
    for id in ids {
        assert!(matches!(
            hans.reply(id).await,
            ServerFrame::Sent { queued: true, .. }
        ));
    }
    // luke logs in and does not read yet: his drain waits, and live
    // messages to him wait behind it, 400 KB of them.
    let mut luke = Client::login_with_small_buffer(server.addr, "luke").await;
    let mut yoda = Client::login(server.addr, "yoda").await;
    let big = "y".repeat(3900);
    let mut ids = Vec::new();
    for n in 0..LIVE {
        ids.push(
            yoda.submit(send_to("luke", &format!("live {n} {big}")))
                .await,
        );
    }
    // Past the budget they are stored (so yoda hears at once), not held.
    for id in ids {
        let reply = yoda.reply(id).await;
        assert!(
            matches!(reply, ServerFrame::Sent { queued: true, .. }),
            "{reply:?}"
        );
    }
    // luke reads on: the offline queue, then every live message, in order,
    // once each, all before his drain ends.
    luke.ping_every = Some(std::time::Duration::from_secs(2));
    for n in 0..QUEUED {
        let message = luke.next_message().await;
        assert!(
            matches!(&message, ServerFrame::Message { text, .. } if text.starts_with(&format!("offline {n} "))),
            "{message:?}"
        );
    }
    for n in 0..LIVE {
        let message = luke.next_message().await;
        assert!(
            matches!(&message, ServerFrame::Message { text, .. } if text.starts_with(&format!("live {n} "))),
            "{message:?}"
        );
    }
    luke.who().await;
    assert!(
        luke.pending_event(|f| matches!(f, ServerFrame::Message { .. }))
            .is_none()
    );
    hans.event_matching(is_presence("luke", true)).await;
}

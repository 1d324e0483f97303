//! Everything a hostile user could grow has a bound: a recipient's offline
//! queue (messages and bytes), registrations and failed logins per address.

mod common;

use common::*;
use msg_proto::ErrorCode;
use msg_proto::server::ServerFrame;

const QUEUE_FULL: &str = "Error. luke's offline queue is full; try again later";

fn is_queued(reply: &ServerFrame) -> bool {
    matches!(reply, ServerFrame::Sent { queued: true, .. })
}

#[tokio::test]
async fn an_offline_queue_over_its_message_quota_refuses_and_stores_nothing() {
    let env = Env::new();
    let server = env.start(&["--max-queued-messages", "3"]);
    let mut hans = Client::login(server.addr, "hans").await;
    for n in 0..3 {
        let reply = hans.message("luke", &format!("m{n}")).await;
        assert!(is_queued(&reply), "{reply:?}");
    }
    let reply = hans.message("luke", "one too many").await;
    assert_eq!(
        error_of(&reply),
        (ErrorCode::RecipientQueueFull, QUEUE_FULL)
    );
    // Another recipient has a quota of its own.
    assert!(is_queued(&hans.message("yoda", "hi").await));

    // luke gets the three; once he has them the queue has room again.
    let mut luke = Client::login(server.addr, "luke").await;
    for n in 0..3 {
        let message = luke.next_message().await;
        assert!(
            matches!(&message, ServerFrame::Message { text, .. } if *text == format!("m{n}")),
            "{message:?}"
        );
    }
    luke.who().await;
    assert!(
        luke.pending_event(|f| matches!(f, ServerFrame::Message { .. }))
            .is_none(),
        "the refused message was not stored"
    );
    luke.logout().await;
    assert!(is_queued(&hans.message("luke", "room again").await));
}

#[tokio::test]
async fn an_offline_queue_over_its_byte_quota_refuses() {
    let env = Env::new();
    let server = env.start(&["--max-queued-bytes", "3000"]);
    let mut hans = Client::login(server.addr, "hans").await;
    let text = "x".repeat(2000);
    assert!(is_queued(&hans.message("luke", &text).await));
    let reply = hans.message("luke", &text).await;
    assert_eq!(
        error_of(&reply),
        (ErrorCode::RecipientQueueFull, QUEUE_FULL)
    );
    assert!(is_queued(&hans.message("luke", "short").await));
}

#[tokio::test]
async fn the_quota_holds_for_messages_stored_after_the_ack_timeout() {
    let env = Env::new();
    let server = env.start(&["--max-queued-messages", "1", "--ack-timeout-ms", "300"]);
    let mut hans = Client::login(server.addr, "hans").await;
    let mut luke = Client::login(server.addr, "luke").await;
    luke.auto_ack = false;
    let first = hans.submit(send_to("luke", "first")).await;
    luke.next_message().await;
    assert!(is_queued(&hans.reply(first).await));
    // luke has it but never acks: it cannot be stored again.
    let second = hans.submit(send_to("luke", "second")).await;
    luke.next_message().await;
    let reply = hans.reply(second).await;
    assert_eq!(
        error_of(&reply),
        (ErrorCode::RecipientQueueFull, QUEUE_FULL)
    );
}

//! A damaged database page: the user whose offline queue it holds is told
//! that the server cannot read it, and stays logged in; nobody else is
//! affected. The page is really damaged: overwritten with garbage while the
//! server is stopped, as a failing disk would leave it.
#![cfg(unix)]

mod common;

use std::path::Path;

use common::*;
use msg_proto::ErrorCode;
use msg_proto::server::ServerFrame;

const LEIA_QUEUED: usize = 3000;
/// The message whose page is damaged: on the drain's second page.
const DAMAGED: usize = 1500;

fn leia_text(n: usize) -> String {
    format!("leia-{n:04}-{}", "x".repeat(1000))
}

/// Overwrites the page of `msg.db` holding `marker` with garbage.
fn damage_page_holding(state: &Path, marker: &str) {
    let wal = state.join("msg.db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "a clean stop leaves everything in msg.db"
    );
    let path = state.join("msg.db");
    let mut bytes = std::fs::read(&path).expect("read msg.db");
    let page_size = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .expect("the marked message is in the file");
    let page = at / page_size;
    bytes[page * page_size..(page + 1) * page_size].fill(0xa5);
    std::fs::write(&path, bytes).expect("write msg.db");
}

#[tokio::test]
async fn a_damaged_queue_page_is_reported_and_the_session_goes_on() {
    let env = Env::new();
    let args = ["--max-rate", "0", "--timeout", "0"];
    let mut server = env.start(&args);
    let mut hans = Client::login(server.addr, "hans").await;
    let mut ids = Vec::new();
    for n in 0..LEIA_QUEUED {
        ids.push(hans.submit(send_to("leia", &leia_text(n))).await);
    }
    for n in 0..5 {
        ids.push(hans.submit(send_to("luke", &format!("for luke {n}"))).await);
    }
    for id in ids {
        let reply = hans.reply(id).await;
        assert!(
            matches!(reply, ServerFrame::Sent { queued: true, .. }),
            "{reply:?}"
        );
    }
    drop(hans);
    server.signal("TERM");
    assert_eq!(server.wait_exit(), Some(0));
    damage_page_holding(&env.state_dir(), &format!("leia-{DAMAGED:04}-"));

    let server = env.start(&args);
    let mut hans = Client::login(server.addr, "hans").await;
    let mut leia = Client::login(server.addr, "leia").await;
    leia.ping_every = Some(std::time::Duration::from_secs(2));
    // What can be read arrives, in order, then the error; she stays.
    let mut delivered = 0;
    let error = loop {
        match leia.event().await {
            ServerFrame::Message { text, .. } => {
                assert!(text.starts_with(&format!("leia-{delivered:04}-")));
                delivered += 1;
            }
            error @ ServerFrame::Error { .. } => break error,
            _ => {}
        }
    };
    assert!(
        (1000..DAMAGED).contains(&delivered),
        "{delivered} delivered"
    );
    assert_eq!(
        error_of(&error),
        (
            ErrorCode::QueueUnreadable,
            "Error. The server cannot read your offline messages right now; they stay queued"
        )
    );
    assert_eq!(leia.who().await, ["hans"]);
    hans.event_matching(is_presence("leia", true)).await;
    // Live messages reach her.
    let sent = hans.submit(send_to("leia", "still there?")).await;
    let message = leia.next_message().await;
    assert!(
        matches!(&message, ServerFrame::Message { text, .. } if text == "still there?"),
        "{message:?}"
    );
    assert!(matches!(
        hans.reply(sent).await,
        ServerFrame::Sent { queued: false, .. }
    ));

    // Everyone else's queue is whole.
    let mut luke = Client::login(server.addr, "luke").await;
    for n in 0..5 {
        let message = luke.next_message().await;
        assert!(
            matches!(&message, ServerFrame::Message { text, .. } if *text == format!("for luke {n}")),
            "{message:?}"
        );
    }
}

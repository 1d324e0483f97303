//! How fast msgd stores a flood: a fake server pushes broadcasts of 16 KB
//! (4,000 four-byte characters, the longest text) as fast as the link takes
//! them; the link stores them in an inbox on disk, a burst per transaction.
//! For comparison, the same inbox written one transaction (one fsync) per
//! item. Prints both rates; asserts nothing.
//!
//! `cargo run --release -p msg-daemon --example inbox_rate [ITEMS]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use msg_daemon::inbox::{Inbox, NewItem};
use msg_daemon::link;
use msg_daemon::notifier::Notifier;
use msg_daemon::private::{PeerListener, Private};
use msg_daemon::state::Shared;
use msg_local::config::Config;
use msg_proto::control::ItemKind;
use msg_proto::server::{ClientFrame, ServerFrame};
use msg_proto::{JsonLines, PROTOCOL_VERSION};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let items: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let text = "\u{1d11e}".repeat(4000);
    let dir = tempfile::tempdir_in(".").expect("a temporary directory here");

    // The link, as msgd runs it.
    let inbox = Inbox::open(&dir.path().join("inbox.sqlite3")).unwrap();
    let shared = Arc::new(Shared::new(inbox, Notifier::new(false), Config::default()));
    let private = Private::new(Arc::clone(&shared)).unwrap();
    let peers = PeerListener::new(Arc::clone(&private), None);
    let handle = link::spawn(Arc::clone(&shared), private, Some(peers), None);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let login = tokio::spawn({
        let handle = handle.clone();
        async move { handle.login(addr, "hans".into(), "pw".into(), false).await }
    });
    let (stream, _) = listener.accept().await.unwrap();
    let mut server: Framed<_, JsonLines<ClientFrame, ServerFrame>> =
        Framed::new(stream, JsonLines::new());
    let _hello = server.next().await;
    server
        .send(ServerFrame::Hello {
            version: PROTOCOL_VERSION,
            server: "fake".into(),
        })
        .await
        .unwrap();
    let Some(Ok(Ok(ClientFrame::Login(login_frame)))) = server.next().await else {
        panic!("expected a login")
    };
    server
        .send(ServerFrame::Welcome {
            id: login_frame.id,
            user: "hans".into(),
            message: "Welcome".into(),
            token: None,
        })
        .await
        .unwrap();
    login.await.unwrap().unwrap();

    let commits_before = shared.inbox().commits();
    let started = Instant::now();
    let pusher = tokio::spawn(async move {
        for i in 0..items {
            let frame = ServerFrame::Broadcast {
                from: "luke".into(),
                text: text.clone(),
                at: i as u64,
            };
            server.feed(frame).await.unwrap();
        }
        server.flush().await.unwrap();
        server
    });
    loop {
        let stored = shared.inbox().unread("hans").unwrap() as usize;
        if stored >= items {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    let _server = pusher.await.unwrap();
    let commits = shared.inbox().commits() - commits_before;
    let rate = items as f64 / took.as_secs_f64();
    println!(
        "batched: {items} broadcasts of 16 KB stored in {:.2} s: {rate:.0}/s ({:.0} MB/s), {commits} commits",
        took.as_secs_f64(),
        rate * 16_000.0 / 1e6,
    );

    // The same inbox, one transaction per item.
    let n = (items / 10).max(100);
    let mut inbox = Inbox::open(&dir.path().join("single.sqlite3")).unwrap();
    let text = "\u{1d11e}".repeat(4000);
    let started = Instant::now();
    for i in 0..n {
        let item = NewItem {
            msg_id: None,
            client_id: None,
            kind: ItemKind::Broadcast,
            from: Some("luke"),
            text: &text,
            at: i as u64,
        };
        inbox.add("hans", &item).unwrap();
    }
    let took = started.elapsed();
    println!(
        "one commit per item: {n} stored in {:.2} s: {:.0}/s",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
}

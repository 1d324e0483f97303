//! The link against a hostile or broken world: a flood stored in bursts, a
//! full inbox, an account someone else got blocked, and a server that drops
//! every login at once.

use std::time::Duration;

use futures::SinkExt;
use msg_proto::control::LinkState;
use msg_proto::server::{ClientFrame, LoginRequest, ServerFrame};
use msg_proto::{ErrorCode, Refusal};
use tokio::net::TcpListener;
use tokio::time::{Instant, timeout};

use super::{greet, logged_in, recv, wait_for, welcome};
use crate::state::WaitReason;
use crate::upstream::ServerRequest;

fn message(msg_id: u64, text: &str) -> ServerFrame {
    ServerFrame::Message {
        msg_id: msg_id.into(),
        from: "luke".into(),
        text: text.into(),
        at: 1,
        client_id: None,
    }
}

fn login_id(frame: &ClientFrame) -> u64 {
    match frame {
        ClientFrame::Login(LoginRequest { id, .. }) => *id,
        other => panic!("expected a login, got {other:?}"),
    }
}

#[tokio::test]
async fn a_burst_is_stored_in_a_few_commits_and_each_message_acked_after_its_commit() {
    let (_listener, shared, _link, mut conn) = logged_in().await;
    let before = shared.inbox().commits();
    // 200 messages in one write: all already here when the first is read.
    for id in 1..=200 {
        conn.feed(message(id, &format!("flood {id}")))
            .await
            .unwrap();
    }
    conn.flush().await.unwrap();
    for _ in 1..=200 {
        let ClientFrame::Ack { msg_id } = recv(&mut conn).await else {
            panic!("expected acks only")
        };
        // Acked only once stored.
        let stored = shared.inbox().list("hans", true).unwrap();
        assert!(stored.iter().any(|i| i.text == format!("flood {msg_id}")));
    }
    let commits = shared.inbox().commits() - before;
    assert!(commits <= 10, "{commits} commits for one burst of 200");
    assert_eq!(shared.inbox().list("hans", true).unwrap().len(), 200);
}

#[tokio::test]
async fn a_full_inbox_acks_nothing_and_the_link_logs_in_again_once_it_can_write() {
    let (listener, shared, link, mut conn) = logged_in().await;
    shared.inbox().set_writable(false);
    conn.send(message(1, "keep me")).await.unwrap();
    // No ack: the link hangs up, so that the server keeps the message.
    let next = timeout(Duration::from_secs(10), futures::StreamExt::next(&mut conn))
        .await
        .expect("the link hangs up");
    assert!(
        !matches!(next, Some(Ok(Ok(ClientFrame::Ack { .. })))),
        "{next:?}"
    );
    wait_for(&shared, |s| {
        s.status()
            .waiting
            .as_ref()
            .is_some_and(|w| w.reason == WaitReason::InboxUnwritable)
    })
    .await;
    assert_eq!(shared.status().state, LinkState::Reconnecting);
    // Requests are told why.
    let err = link
        .upstream()
        .request(ServerRequest::Who)
        .await
        .unwrap_err();
    assert!(
        err.message
            .starts_with("Not connected: waiting to log in again (the inbox cannot be written"),
        "{err:?}"
    );
    // It does not log in while nothing can be stored.
    assert!(
        timeout(Duration::from_millis(1500), listener.accept())
            .await
            .is_err(),
        "logged in again with a full inbox"
    );
    // Space again: it logs in, the server delivers again, it is stored.
    shared.inbox().set_writable(true);
    let (mut conn, frame) = greet(&listener).await;
    welcome(&mut conn, &frame).await;
    conn.send(message(1, "keep me")).await.unwrap();
    assert_eq!(recv(&mut conn).await, ClientFrame::Ack { msg_id: 1.into() });
    wait_for(&shared, |s| s.status().state == LinkState::Online).await;
    assert!(shared.status().waiting.is_none());
    let texts: Vec<String> = shared
        .inbox()
        .list("hans", true)
        .unwrap()
        .into_iter()
        .map(|i| i.text)
        .collect();
    assert!(texts.contains(&"keep me".to_owned()), "{texts:?}");
}

#[tokio::test]
async fn a_blocked_account_is_tried_again_after_the_block() {
    let (listener, shared, link, conn) = logged_in().await;
    drop(conn);
    // Someone else's wrong passwords blocked hans meanwhile.
    let (mut conn, frame) = greet(&listener).await;
    let refused_at = Instant::now();
    let refusal = Refusal::new(
        ErrorCode::LoginBlocked,
        "Your account is blocked due to multiple login failures. Please try again later",
    )
    .retry_after(2);
    conn.send(ServerFrame::refusal(Some(login_id(&frame)), refusal))
        .await
        .unwrap();
    wait_for(&shared, |s| {
        s.status()
            .waiting
            .as_ref()
            .is_some_and(|w| w.reason == WaitReason::AccountBlocked)
    })
    .await;
    let waiting = shared.status().waiting.clone().unwrap();
    assert!(
        (1..=3).contains(&waiting.secs_left()),
        "{}",
        waiting.secs_left()
    );
    assert_eq!(shared.status().state, LinkState::Reconnecting);
    let err = link
        .login("x".into(), "hans".into(), "y".into(), false)
        .await;
    assert!(
        err.unwrap_err()
            .message
            .starts_with("Not connected: waiting to log in again (account blocked, next try in"),
    );
    // Not before the block is over, then with the password it holds.
    let (mut conn, frame) = greet(&listener).await;
    assert!(refused_at.elapsed() >= Duration::from_secs(2));
    // No retry_after this time: it still does not give up.
    conn.send(ServerFrame::error(
        Some(login_id(&frame)),
        ErrorCode::LoginBlocked,
        "Your account is blocked",
    ))
    .await
    .unwrap();
    let (mut conn, frame) = greet(&listener).await;
    welcome(&mut conn, &frame).await;
    wait_for(&shared, |s| s.status().state == LinkState::Online).await;
    assert!(shared.status().waiting.is_none());
}

#[tokio::test]
async fn a_server_that_drops_every_login_sees_the_waits_grow() {
    let (listener, shared, _link, conn) = logged_in().await;
    drop(conn);
    let start = Instant::now();
    let mut logins = Vec::new();
    while start.elapsed() < Duration::from_secs(4) {
        let Ok((mut conn, frame)) = timeout(Duration::from_secs(5), greet(&listener)).await else {
            break;
        };
        welcome(&mut conn, &frame).await;
        logins.push(start.elapsed());
        // Dropped right after the login, like a damaged session would be.
        drop(conn);
    }
    // 0.5, 1, 2 s (±50 %) apart: at most 4 in 4 s, where a reset after
    // each login would make it about 8.
    assert!(
        logins.len() <= 5,
        "{} logins in 4 s: {logins:?}",
        logins.len()
    );
    // The wait before login i + 1 is FIRST × 2^(i + 1) ± 50 %: at least
    // FIRST × 2^i, which a wait that starts afresh would soon fall under.
    let gaps: Vec<Duration> = logins.windows(2).map(|w| w[1] - w[0]).collect();
    for (i, gap) in gaps.iter().enumerate() {
        let least = msg_local::backoff::FIRST * (1u32 << i);
        assert!(*gap >= least, "the waits grow: {gaps:?}");
    }
    assert!(logins.len() >= 2, "msgd keeps trying: {logins:?}");
    assert_eq!(shared.status().user.as_deref(), Some("hans"));
}

#[tokio::test]
async fn an_unreachable_server_is_tried_again_and_status_says_why() {
    // The server is gone for a while: the link keeps trying and says why
    // it waits.
    let (listener, shared, _link, conn) = logged_in().await;
    let addr = listener.local_addr().unwrap();
    drop(listener);
    drop(conn);
    wait_for(&shared, |s| {
        s.status()
            .waiting
            .as_ref()
            .is_some_and(|w| w.reason == WaitReason::Unreachable)
    })
    .await;
    let listener = TcpListener::bind(addr).await.unwrap();
    let (mut conn, frame) = greet(&listener).await;
    welcome(&mut conn, &frame).await;
    wait_for(&shared, |s| s.status().state == LinkState::Online).await;
}

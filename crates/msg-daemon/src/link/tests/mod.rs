//! The link against a fake server: store-then-ack and dedup, reconnecting,
//! resending a cut-off send with its client id, and sessions the server
//! ends for good. `hostile`: bursts, a full inbox, blocks and a server that
//! drops every login.

mod hostile;

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use msg_local::config::Config;
use msg_proto::control::{LinkState, codes};
use msg_proto::server::{ClientFrame, LoginRequest, LogoutReason, SendRequest, ServerFrame};
use msg_proto::{ErrorCode, JsonLines, PROTOCOL_VERSION, Refusal};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, sleep, timeout};
use tokio_util::codec::Framed;

use super::{LinkHandle, spawn};
use crate::inbox::Inbox;
use crate::notifier::Notifier;
use crate::private::{PeerListener, Private};
use crate::state::Shared;
use crate::upstream::ServerRequest;

type ServerSide = Framed<TcpStream, JsonLines<ClientFrame, ServerFrame>>;

async fn recv(conn: &mut ServerSide) -> ClientFrame {
    loop {
        match timeout(Duration::from_secs(10), conn.next()).await {
            Ok(Some(Ok(Ok(ClientFrame::Ping)))) => {}
            Ok(Some(Ok(Ok(frame)))) => return frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }
}

/// Accepts a connection and answers hello; returns the login frame.
async fn greet(listener: &TcpListener) -> (ServerSide, ClientFrame) {
    let (stream, _) = timeout(Duration::from_secs(10), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut conn = Framed::new(stream, JsonLines::new());
    assert!(matches!(
        recv(&mut conn).await,
        ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            ..
        }
    ));
    conn.send(ServerFrame::Hello {
        version: PROTOCOL_VERSION,
        server: "fake".into(),
    })
    .await
    .unwrap();
    let login = recv(&mut conn).await;
    (conn, login)
}

async fn welcome(conn: &mut ServerSide, login: &ClientFrame) {
    let ClientFrame::Login(LoginRequest {
        id,
        user,
        password,
        peer_port,
        peer_key,
        device: None,
    }) = login
    else {
        panic!("{login:?}")
    };
    assert_eq!(
        password.expose(),
        "falcon*solo",
        "the password held in memory"
    );
    assert!(peer_port.is_some(), "the peer listener is advertised");
    assert!(peer_key.is_some(), "with our public key");
    let welcome = ServerFrame::Welcome {
        id: *id,
        user: user.clone(),
        message: "Welcome".into(),
        token: None,
    };
    conn.send(welcome).await.unwrap();
}

/// A link to a fake server, logged in as hans.
async fn logged_in() -> (TcpListener, Arc<Shared>, LinkHandle, ServerSide) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let inbox = Inbox::open_in_memory().unwrap();
    let shared = Arc::new(Shared::new(inbox, Notifier::new(false), Config::default()));
    let private = Private::new(Arc::clone(&shared)).unwrap();
    let peers = PeerListener::new(Arc::clone(&private), None);
    let link = spawn(Arc::clone(&shared), private, Some(peers), None);
    let login = tokio::spawn({
        let (link, addr) = (link.clone(), addr.clone());
        async move {
            link.login(addr, "hans".into(), "falcon*solo".into(), false)
                .await
        }
    });
    let (mut conn, frame) = greet(&listener).await;
    welcome(&mut conn, &frame).await;
    assert_eq!(login.await.unwrap().unwrap(), "Welcome");
    (listener, shared, link, conn)
}

async fn wait_for(shared: &Shared, what: impl Fn(&Shared) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !what(shared) {
        assert!(Instant::now() < deadline, "condition never held");
        sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn stores_before_acking_dedupes_reconnects_and_stops_at_a_refusal() {
    let (listener, shared, link, mut conn) = logged_in().await;

    // A message is acked only once it is in the inbox; a redelivery is
    // acked again but stored once.
    for _ in 0..2 {
        let message = ServerFrame::Message {
            msg_id: 7.into(),
            from: "luke".into(),
            text: "hi".into(),
            at: 1,
            client_id: None,
        };
        conn.send(message).await.unwrap();
        assert_eq!(recv(&mut conn).await, ClientFrame::Ack { msg_id: 7.into() });
        let stored = shared.inbox().list("hans", true).unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].line(), "luke: hi");
    }

    // The connection drops: the link logs in again by itself.
    drop(conn);
    let (mut conn, frame) = greet(&listener).await;
    welcome(&mut conn, &frame).await;
    wait_for(&shared, |s| s.status().state == LinkState::Online).await;
    assert_eq!(shared.status().user.as_deref(), Some("hans"));

    // Dropped again, and this time the server refuses the password (it was
    // changed): over.
    drop(conn);
    let (mut conn, frame) = greet(&listener).await;
    let ClientFrame::Login(LoginRequest { id, .. }) = frame else {
        panic!("{frame:?}")
    };
    let refusal = ServerFrame::error(
        Some(id),
        ErrorCode::InvalidPassword,
        "Invalid Password. Please try again",
    );
    conn.send(refusal).await.unwrap();
    wait_for(&shared, |s| s.status().state == LinkState::LoggedOut).await;
    let err = link
        .upstream()
        .request(ServerRequest::Who)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        Refusal::new("invalid_password", "Invalid Password. Please try again")
    );
}

#[tokio::test]
async fn a_send_cut_off_by_a_dropped_connection_is_retried_with_its_client_id() {
    let (listener, _shared, link, mut conn) = logged_in().await;

    let send = tokio::spawn({
        let link = link.clone();
        async move {
            let request = ServerRequest::Send {
                to: "luke".into(),
                text: "are you there".into(),
            };
            link.upstream().request(request).await
        }
    });
    let ClientFrame::Send(SendRequest {
        id: first_id,
        client_id: first_key,
        ..
    }) = recv(&mut conn).await
    else {
        panic!("expected the send")
    };
    assert!(first_key.as_ref().is_some_and(|k| k.len() == 32));
    // The server read it, then the connection died before the reply.
    drop(conn);

    let (mut conn, frame) = greet(&listener).await;
    welcome(&mut conn, &frame).await;
    let ClientFrame::Send(SendRequest {
        id,
        to,
        text,
        client_id,
    }) = recv(&mut conn).await
    else {
        panic!("expected the send again")
    };
    assert_ne!(id, first_id, "a new request id on the new connection");
    assert_eq!((to.as_str(), text.as_str()), ("luke", "are you there"));
    assert_eq!(
        client_id, first_key,
        "the same client id, so luke stores it once"
    );
    let sent = ServerFrame::Sent {
        id,
        msg_id: 9.into(),
        queued: false,
    };
    conn.send(sent.clone()).await.unwrap();
    assert_eq!(
        send.await.unwrap().unwrap(),
        sent,
        "the user sees one success"
    );
}

#[tokio::test]
async fn a_timeout_logout_ends_the_session_for_good() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let shared = Arc::new(Shared::new(
        Inbox::open_in_memory().unwrap(),
        Notifier::new(false),
        Config::default(),
    ));
    let private = Private::new(Arc::clone(&shared)).unwrap();
    let peers = PeerListener::new(Arc::clone(&private), None);
    let link = spawn(Arc::clone(&shared), private, Some(peers), None);
    let login = tokio::spawn({
        let link = link.clone();
        async move {
            link.login(addr, "hans".into(), "falcon*solo".into(), false)
                .await
        }
    });
    let (mut conn, frame) = greet(&listener).await;
    welcome(&mut conn, &frame).await;
    login.await.unwrap().unwrap();
    let message = "You have been logged out due to inactivity".to_owned();
    conn.send(ServerFrame::LoggedOut {
        reason: LogoutReason::Timeout,
        message: message.clone(),
    })
    .await
    .unwrap();
    drop(conn);
    wait_for(&shared, |s| s.status().state == LinkState::LoggedOut).await;
    let err = link
        .upstream()
        .request(ServerRequest::Who)
        .await
        .unwrap_err();
    assert_eq!(err, Refusal::new(codes::TIMEOUT, message.clone()));
    // No reconnection attempt follows.
    assert!(
        timeout(Duration::from_millis(600), listener.accept())
            .await
            .is_err()
    );
    let items = shared.inbox().list("hans", true).unwrap();
    assert_eq!(items.last().unwrap().text, message);
}

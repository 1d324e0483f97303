//! The server's side of private sessions: consent, tokens, addresses, teardown.

mod common;

use common::*;
use msg_proto::ErrorCode;
use msg_proto::server::{ClientFrame, PrivateEndReason, ServerFrame, UserRequest};

async fn ask(client: &mut Client, user: &str) -> ServerFrame {
    client
        .request(|id| {
            ClientFrame::PrivateRequest(UserRequest {
                id,
                user: user.into(),
            })
        })
        .await
}

async fn accept(client: &mut Client, user: &str) -> ServerFrame {
    client
        .request(|id| {
            ClientFrame::PrivateAccept(UserRequest {
                id,
                user: user.into(),
            })
        })
        .await
}

fn is_request_from(user: &str) -> impl Fn(&ServerFrame) -> bool + '_ {
    move |f| matches!(f, ServerFrame::PrivateRequest { from, .. } if from == user)
}

fn is_ready(f: &ServerFrame) -> bool {
    matches!(f, ServerFrame::PrivateReady { .. })
}

#[tokio::test]
async fn accepted_requests_hand_both_sides_the_same_one_time_token() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut hans = Client::login(server.addr, "hans").await;
    let mut luke = Client::login(server.addr, "luke").await;

    assert!(matches!(
        ask(&mut hans, "luke").await,
        ServerFrame::Ok { .. }
    ));
    luke.event_matching(is_request_from("hans")).await;
    assert!(matches!(
        accept(&mut luke, "hans").await,
        ServerFrame::Ok { .. }
    ));

    let ServerFrame::PrivateReady {
        peer,
        token,
        addr,
        caller_ip,
        expires_in,
        ..
    } = hans.event_matching(is_ready).await
    else {
        unreachable!()
    };
    assert_eq!(peer, "luke");
    // The address the server saw for luke, with the port luke's client advertised.
    assert_eq!(addr.as_deref(), Some("127.0.0.1:40000"));
    assert_eq!(expires_in, 60);
    // 256 bits, the pre-shared key of the daemons' Noise handshake.
    assert_eq!(token.expose().len(), 64);
    assert_eq!(
        caller_ip, None,
        "the asker dials; it needs no caller address"
    );
    let ServerFrame::PrivateReady {
        peer,
        token: luke_token,
        addr,
        caller_ip,
        ..
    } = luke.event_matching(is_ready).await
    else {
        unreachable!()
    };
    assert_eq!((peer.as_str(), addr), ("hans", None));
    // The callee learns where its caller will come from.
    assert_eq!(caller_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(luke_token, token);

    // A second session gets a fresh token; an accept without a request fails.
    ask(&mut hans, "luke").await;
    luke.event_matching(is_request_from("hans")).await;
    accept(&mut luke, "hans").await;
    let ServerFrame::PrivateReady { token: second, .. } = hans.event_matching(is_ready).await
    else {
        unreachable!()
    };
    assert_ne!(second, token);
    let reply = accept(&mut luke, "hans").await;
    assert_eq!(
        error_of(&reply),
        (
            ErrorCode::NoPrivateRequest,
            "Error. No private messaging request from hans"
        )
    );

    // hans logs out: luke is told the session is over.
    hans.logout().await;
    let ended = luke
        .event_matching(|f| matches!(f, ServerFrame::PrivateEnded { .. }))
        .await;
    assert_eq!(
        ended,
        ServerFrame::PrivateEnded {
            peer: "hans".into(),
            reason: PrivateEndReason::LoggedOut
        }
    );
}

#[tokio::test]
async fn requests_are_checked_and_declined() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut hans = Client::login(server.addr, "hans").await;
    let mut luke = Client::login(server.addr, "luke").await;
    let mut vader = Client::login(server.addr, "vader").await;
    luke.block("vader").await;

    let cases = [
        (
            "hans",
            ErrorCode::CannotPrivateSelf,
            "Error. Cannot start private messaging with self",
        ),
        ("palpatine", ErrorCode::InvalidUser, "Error. Invalid user"),
        ("yoda", ErrorCode::UserOffline, "Error. yoda is offline"),
    ];
    for (user, code, text) in cases {
        assert_eq!(error_of(&ask(&mut hans, user).await), (code, text));
    }
    assert_eq!(
        error_of(&ask(&mut vader, "luke").await),
        (ErrorCode::BlockedYou, "Error. luke has blocked you")
    );

    ask(&mut hans, "luke").await;
    luke.event_matching(is_request_from("hans")).await;
    let reply = luke
        .request(|id| {
            ClientFrame::PrivateDecline(UserRequest {
                id,
                user: "hans".into(),
            })
        })
        .await;
    assert!(matches!(reply, ServerFrame::Ok { .. }));
    let declined = hans
        .event_matching(|f| matches!(f, ServerFrame::PrivateDeclined { .. }))
        .await;
    assert_eq!(
        declined,
        ServerFrame::PrivateDeclined {
            peer: "luke".into()
        }
    );
}

#[tokio::test]
async fn unanswered_requests_expire() {
    let env = Env::new();
    // Nothing here must happen within the timeout, so it can be short.
    let server = env.start(&["--private-timeout-ms", "300"]);
    let mut hans = Client::login(server.addr, "hans").await;
    let mut luke = Client::login(server.addr, "luke").await;
    ask(&mut hans, "luke").await;
    // No answer: both sides learn that the request expired.
    let expired = hans
        .event_matching(|f| matches!(f, ServerFrame::PrivateExpired { .. }))
        .await;
    assert_eq!(
        expired,
        ServerFrame::PrivateExpired {
            peer: "luke".into()
        }
    );
    luke.event_matching(|f| matches!(f, ServerFrame::PrivateExpired { peer } if peer == "hans"))
        .await;
    assert_eq!(
        error_of(&accept(&mut luke, "hans").await).0,
        ErrorCode::NoPrivateRequest
    );
}

#[tokio::test]
async fn a_block_ends_a_private_session_on_both_sides() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut hans = Client::login(server.addr, "hans").await;
    let mut luke = Client::login(server.addr, "luke").await;
    ask(&mut hans, "luke").await;
    luke.event_matching(is_request_from("hans")).await;
    accept(&mut luke, "hans").await;
    hans.event_matching(is_ready).await;
    luke.block("hans").await;
    for (client, peer) in [(&mut hans, "luke"), (&mut luke, "hans")] {
        let ended = client
            .event_matching(|f| matches!(f, ServerFrame::PrivateEnded { .. }))
            .await;
        assert_eq!(
            ended,
            ServerFrame::PrivateEnded {
                peer: peer.into(),
                reason: PrivateEndReason::Blocked
            }
        );
    }
}

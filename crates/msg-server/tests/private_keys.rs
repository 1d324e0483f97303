//! The server brokers each side's public key with the token: the asker gets
//! the callee's, the callee the asker's, and without keys on both sides
//! there is no private session (no cleartext fallback).

mod common;

use common::*;
use msg_proto::ErrorCode;
use msg_proto::peer::PeerKey;
use msg_proto::server::{ClientFrame, LoginRequest, ServerFrame, UserRequest};

async fn login_with_key(addr: std::net::SocketAddr, user: &str, key: Option<[u8; 32]>) -> Client {
    let mut client = Client::connect(addr).await;
    client.user = user.to_owned();
    let reply = client
        .request(|id| {
            ClientFrame::Login(LoginRequest {
                id,
                user: user.into(),
                password: password_of(user).into(),
                peer_port: Some(40000),
                peer_key: key.map(PeerKey::new),
                device: None,
            })
        })
        .await;
    assert!(matches!(reply, ServerFrame::Welcome { .. }), "{reply:?}");
    client
}

async fn user_request(
    client: &mut Client,
    make: fn(UserRequest) -> ClientFrame,
    user: &str,
) -> ServerFrame {
    client
        .request(|id| {
            make(UserRequest {
                id,
                user: user.into(),
            })
        })
        .await
}

fn is_ready(f: &ServerFrame) -> bool {
    matches!(f, ServerFrame::PrivateReady { .. })
}

/// `(token, peer_key)` of the next `private_ready`.
async fn ready(client: &mut Client) -> (String, Option<String>) {
    match client.event_matching(is_ready).await {
        ServerFrame::PrivateReady {
            token, peer_key, ..
        } => (token.expose().to_owned(), peer_key),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn each_side_gets_the_others_key_and_a_256_bit_token() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut hans = login_with_key(server.addr, "hans", Some([0xa1; 32])).await;
    // Upper case is a key too; it is handed on in lower case.
    let mut luke = Client::connect(server.addr).await;
    luke.user = "luke".into();
    let login = format!(
        r#"{{"type":"login","id":1,"user":"luke","password":"{}","peer_port":40000,"peer_key":"{}"}}"#,
        password_of("luke"),
        "B2".repeat(32)
    );
    luke.send_raw(format!("{login}\n").as_bytes()).await;
    assert!(matches!(luke.reply(1).await, ServerFrame::Welcome { .. }));
    let asked = user_request(&mut hans, ClientFrame::PrivateRequest, "luke").await;
    assert!(matches!(asked, ServerFrame::Ok { .. }), "{asked:?}");
    luke.event_matching(is_request).await;
    user_request(&mut luke, ClientFrame::PrivateAccept, "hans").await;

    let (token, to_hans) = ready(&mut hans).await;
    let (luke_token, to_luke) = ready(&mut luke).await;
    assert_eq!(to_hans.as_deref(), Some("b2".repeat(32).as_str()));
    assert_eq!(to_luke.as_deref(), Some("a1".repeat(32).as_str()));
    assert_eq!(token, luke_token);
    assert_eq!(token.len(), 64);
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
}

#[tokio::test]
async fn no_private_session_with_or_from_a_client_without_a_key() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut hans = login_with_key(server.addr, "hans", Some([0xa1; 32])).await;
    // An older msgd: a port, no key.
    let mut luke = login_with_key(server.addr, "luke", None).await;

    let reply = user_request(&mut hans, ClientFrame::PrivateRequest, "luke").await;
    assert_eq!(
        error_of(&reply),
        (
            ErrorCode::PrivateUnavailable,
            "Error. luke's msgd is too old to talk privately"
        )
    );
    let reply = user_request(&mut luke, ClientFrame::PrivateRequest, "hans").await;
    assert_eq!(
        error_of(&reply),
        (
            ErrorCode::PrivateUnavailable,
            "Error. Your msgd is too old to talk privately"
        )
    );
    // Any request pushed to hans would come before the reply to this.
    hans.who().await;
    assert!(hans.pending_event(is_request).is_none());
}

fn is_request(f: &ServerFrame) -> bool {
    matches!(f, ServerFrame::PrivateRequest { .. })
}

#[tokio::test]
async fn an_asker_that_logs_in_again_without_a_key_is_not_paired() {
    let env = Env::new();
    let server = env.start(&[]);
    let hans = login_with_key(server.addr, "hans", Some([0xa1; 32])).await;
    let mut luke = login_with_key(server.addr, "luke", Some([0xb2; 32])).await;
    let mut hans = hans;
    user_request(&mut hans, ClientFrame::PrivateRequest, "luke").await;
    luke.event_matching(is_request).await;
    // hans comes back with an older msgd before luke answers.
    hans.logout().await;
    let mut hans = login_with_key(server.addr, "hans", None).await;
    let reply = user_request(&mut luke, ClientFrame::PrivateAccept, "hans").await;
    // The logout dropped the request; had it not, the missing key would
    // refuse it. Either way no session without keys.
    assert!(
        matches!(
            error_of(&reply).0,
            ErrorCode::NoPrivateRequest | ErrorCode::PrivateUnavailable
        ),
        "{reply:?}"
    );
    hans.who().await;
    assert!(hans.pending_event(is_ready).is_none());
    luke.who().await;
    assert!(luke.pending_event(is_ready).is_none());
}

#[tokio::test]
async fn a_malformed_key_is_a_malformed_login() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut yoda = Client::connect(server.addr).await;
    for key in [r#""not-a-key""#, r#""ab""#, "42"] {
        let login = format!(
            r#"{{"type":"login","id":1,"user":"yoda","password":"{}","peer_key":{key}}}"#,
            password_of("yoda")
        );
        yoda.send_raw(format!("{login}\n").as_bytes()).await;
        assert_eq!(
            error_of(&yoda.reply(1).await),
            (ErrorCode::InvalidCommand, "Error. Invalid command"),
            "{key}"
        );
    }
}

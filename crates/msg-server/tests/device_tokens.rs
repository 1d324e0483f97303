//! Device tokens on the wire: issued once at a login that asks, accepted by
//! `resume` until revoked, refused with `bad_token` after.
#![cfg(unix)]

mod common;

use msg_proto::server::{ClientFrame, LoginRequest, ResumeRequest, ServerFrame};
use msg_proto::{ErrorCode, Secret};

use common::*;

/// Logs `user` in asking for a token; the client and the token.
async fn login_with_device(addr: std::net::SocketAddr, user: &str) -> (Client, Secret) {
    let mut client = Client::connect(addr).await;
    client.user = user.to_owned();
    let reply = client
        .request(|id| {
            ClientFrame::Login(LoginRequest {
                id,
                user: user.into(),
                password: password_of(user).into(),
                peer_port: None,
                peer_key: None,
                device: Some("tests@host".into()),
            })
        })
        .await;
    match reply {
        ServerFrame::Welcome {
            token: Some(token), ..
        } => {
            assert_eq!(token.expose().len(), 64);
            (client, token)
        }
        other => panic!("expected a welcome with a token, got {other:?}"),
    }
}

async fn resume(client: &mut Client, user: &str, token: &Secret) -> ServerFrame {
    client
        .request(|id| {
            ClientFrame::Resume(ResumeRequest {
                id,
                user: user.into(),
                token: token.clone(),
                peer_port: None,
                peer_key: None,
            })
        })
        .await
}

async fn logout(client: &mut Client, revoke_device: bool) {
    let reply = client
        .request(|id| ClientFrame::Logout { id, revoke_device })
        .await;
    assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");
}

#[tokio::test]
async fn a_token_logs_in_until_a_logout_revokes_it() {
    let env = Env::new();
    let server = env.start(&[]);
    let (mut first, token) = login_with_device(server.addr, "hans").await;

    // Not while the user is logged in elsewhere.
    let mut other = Client::connect(server.addr).await;
    let reply = resume(&mut other, "hans", &token).await;
    assert_eq!(error_of(&reply).0, ErrorCode::AlreadyLoggedIn);
    // Not for another user.
    let reply = resume(&mut other, "luke", &token).await;
    assert_eq!(error_of(&reply).0, ErrorCode::BadToken);

    // A plain logout keeps the token.
    logout(&mut first, false).await;
    let mut second = Client::connect(server.addr).await;
    let reply = resume(&mut second, "hans", &token).await;
    assert!(
        matches!(&reply, ServerFrame::Welcome { token: None, .. }),
        "{reply:?}"
    );
    // A logout that revokes it ends it.
    logout(&mut second, true).await;
    let mut third = Client::connect(server.addr).await;
    let reply = resume(&mut third, "hans", &token).await;
    assert_eq!(
        error_of(&reply),
        (
            ErrorCode::BadToken,
            "Error. This device is no longer logged in (token unknown or revoked); log in with the password"
        )
    );
}

#[tokio::test]
async fn tokens_survive_a_restart_and_a_login_without_device_gets_none() {
    let env = Env::new();
    let mut server = env.start(&[]);
    let (mut client, token) = login_with_device(server.addr, "hans").await;
    logout(&mut client, false).await;
    drop(client);
    server.signal("TERM");
    assert_eq!(server.wait_exit(), Some(0));
    let server = env.start(&[]);
    let mut client = Client::connect(server.addr).await;
    let reply = resume(&mut client, "hans", &token).await;
    assert!(matches!(reply, ServerFrame::Welcome { .. }), "{reply:?}");

    let mut luke = Client::connect(server.addr).await;
    let reply = luke.try_login("luke", password_of("luke")).await;
    assert!(
        matches!(reply, ServerFrame::Welcome { token: None, .. }),
        "{reply:?}"
    );
}

#[tokio::test]
async fn a_blocked_account_still_resumes_with_its_token() {
    let env = Env::new();
    let server = env.start(&["--block-duration", "600"]);
    let (mut client, token) = login_with_device(server.addr, "hans").await;
    logout(&mut client, false).await;
    let mut attacker = Client::connect(server.addr).await;
    for _ in 0..3 {
        attacker.try_login("hans", "wrong").await;
    }
    let reply = attacker.try_login("hans", password_of("hans")).await;
    assert_eq!(error_of(&reply).0, ErrorCode::LoginBlocked);
    let mut device = Client::connect(server.addr).await;
    let reply = resume(&mut device, "hans", &token).await;
    assert!(matches!(reply, ServerFrame::Welcome { .. }), "{reply:?}");
}

#[tokio::test]
async fn malformed_tokens_are_refused_without_a_panic() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut client = Client::connect(server.addr).await;
    for token in [
        "",
        "xyz",
        &"AB".repeat(32),
        &"a".repeat(10_000),
        "ä".repeat(32).as_str(),
    ] {
        let reply = resume(&mut client, "hans", &Secret::from(token)).await;
        assert_eq!(error_of(&reply).0, ErrorCode::BadToken, "{token:?}");
    }
    let reply = resume(&mut client, "no such user", &Secret::from("ab")).await;
    assert_eq!(error_of(&reply).0, ErrorCode::InvalidUsername);
}

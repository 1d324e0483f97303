//! Login storms: password checks (argon2, 19 MiB each) are bounded, come
//! after every cheap check, and a burst of wrong passwords for one account
//! runs no more of them than it takes to block the account.

mod common;

use common::*;
use msg_proto::ErrorCode;
use msg_proto::server::{ClientFrame, LoginRequest};

/// Password checks the server ran, from its debug log.
fn verifications(server: &Server) -> usize {
    server.log().matches("password checked").count()
}

#[tokio::test]
async fn a_burst_of_wrong_passwords_runs_only_the_checks_that_block_the_account() {
    const BURST: usize = 80;
    let env = Env::new();
    // A real argon2 hash, so that checks take time and overlap.
    assert!(passwd(&env, "vader", "sithlord**\n").status.success());
    let server = env.start(&["--block-duration", "600"]);
    let mut clients = Vec::with_capacity(BURST);
    for _ in 0..BURST {
        clients.push(Client::connect(server.addr).await);
    }
    // All 80 are sent before the first check can end.
    let mut pending = Vec::with_capacity(BURST);
    for client in &mut clients {
        client.user = "vader".into();
        let id = client
            .submit(|id| {
                ClientFrame::Login(LoginRequest {
                    id,
                    user: "vader".into(),
                    password: "wrong".into(),
                    peer_port: None,
                    peer_key: None,
                    device: None,
                })
            })
            .await;
        pending.push(id);
    }
    let mut checked = 0;
    for (client, id) in clients.iter_mut().zip(pending) {
        let reply = client.reply(id).await;
        match error_of(&reply).0 {
            // Answers only a password check gives.
            ErrorCode::InvalidPassword | ErrorCode::AccountBlocked => checked += 1,
            ErrorCode::LoginBlocked => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(checked, 3, "replies that needed a password check");
    assert_eq!(verifications(&server), 3, "checks in the server's log");
    // The right password is refused too now, without a check.
    let reply = clients[0].try_login("vader", "sithlord**").await;
    assert_eq!(error_of(&reply).0, ErrorCode::LoginBlocked);
    assert_eq!(verifications(&server), 3);
}

//! Everything a hostile user could grow has a bound: a recipient's offline
//! queue (messages and bytes), registrations and failed logins per address.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::*;
use msg_proto::server::{ClientFrame, LoginRequest, ServerFrame};
use msg_proto::{ErrorCode, RequestId};

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

fn register(user: &str) -> impl FnOnce(RequestId) -> ClientFrame {
    let user = user.to_owned();
    move |id| {
        ClientFrame::Register(LoginRequest {
            id,
            user,
            password: "pw".into(),
            peer_port: None,
            peer_key: None,
            device: None,
        })
    }
}

const ELSEWHERE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

#[tokio::test]
async fn one_address_registers_ten_accounts_an_hour_by_default() {
    let env = Env::new();
    let server = env.start(&["--allow-register"]);
    let mut client = Client::connect(server.addr).await;
    for n in 0..10 {
        let reply = client.request(register(&format!("bot{n}"))).await;
        assert!(matches!(reply, ServerFrame::Welcome { .. }), "{reply:?}");
        client = Client::connect(server.addr).await;
    }
    let reply = client.request(register("bot10")).await;
    let ServerFrame::Error {
        code, retry_after, ..
    } = &reply
    else {
        panic!("{reply:?}")
    };
    assert_eq!(*code, ErrorCode::RateLimited);
    // One more comes back after a tenth of the hour.
    assert!(
        retry_after.is_some_and(|secs| (300..=360).contains(&secs)),
        "{reply:?}"
    );
    let secs = retry_after.unwrap();
    assert_eq!(
        error_of(&reply).1,
        format!("Error. Too many registrations from your address; try again in {secs} seconds")
    );
    assert!(
        !std::fs::read_to_string(env.credentials())
            .unwrap()
            .contains("bot10")
    );
    // Another address is not affected.
    let mut other = Client::connect_from(server.addr, ELSEWHERE).await;
    let reply = other.request(register("bot10")).await;
    assert!(matches!(reply, ServerFrame::Welcome { .. }), "{reply:?}");
}

#[tokio::test]
async fn one_address_has_an_allowance_of_wrong_passwords_across_accounts() {
    let env = Env::new();
    let server = env.start(&["--login-fail-rate", "3/h"]);
    let mut client = Client::connect(server.addr).await;
    // Right passwords do not count.
    for user in ["yoda", "leia"] {
        let mut good = Client::connect(server.addr).await;
        assert!(matches!(
            good.try_login(user, password_of(user)).await,
            ServerFrame::Welcome { .. }
        ));
        good.logout().await;
    }
    for user in ["hans", "luke", "vader"] {
        let reply = client.try_login(user, "guess").await;
        assert_eq!(error_of(&reply).0, ErrorCode::InvalidPassword);
    }
    // The fourth is refused before the password is checked, even a right
    // one, and whatever the account.
    for (user, password) in [("r2d2", "guess"), ("r2d2", password_of("r2d2"))] {
        let reply = client.try_login(user, password).await;
        let ServerFrame::Error {
            code, retry_after, ..
        } = &reply
        else {
            panic!("{reply:?}")
        };
        assert_eq!(*code, ErrorCode::RateLimited);
        let secs = retry_after.expect("retry_after");
        assert!((1100..=1200).contains(&secs), "{secs}");
        assert_eq!(
            error_of(&reply).1,
            format!("Error. Too many failed logins from your address; try again in {secs} seconds")
        );
    }
    // Another address logs in.
    let mut other = Client::connect_from(server.addr, ELSEWHERE).await;
    assert!(matches!(
        other.try_login("r2d2", password_of("r2d2")).await,
        ServerFrame::Welcome { .. }
    ));
}

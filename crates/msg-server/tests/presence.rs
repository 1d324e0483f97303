//! who, who-since, presence notices and block lists.

mod common;

use std::time::Duration;

use common::*;
use msg_proto::ErrorCode;
use msg_proto::server::{ClientFrame, SendRequest, ServerFrame};

#[tokio::test]
async fn presence_notices_follow_logins_and_logouts() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut hans = Client::login(server.addr, "hans").await;
    let luke = Client::login(server.addr, "luke").await;
    hans.event_matching(is_presence("luke", true)).await;
    assert_eq!(hans.who().await, ["luke"]);
    luke.logout().await;
    hans.event_matching(is_presence("luke", false)).await;
    assert_eq!(hans.who().await, Vec::<String>::new());
}

#[tokio::test]
async fn who_is_sorted_and_who_since_covers_the_window() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut hans = Client::login(server.addr, "hans").await;
    let _yoda = Client::login(server.addr, "yoda").await;
    let _luke = Client::login(server.addr, "luke").await;
    let leia = Client::login(server.addr, "leia").await;
    assert_eq!(hans.who().await, ["leia", "luke", "yoda"]);

    leia.logout().await;
    hans.event_matching(is_presence("leia", false)).await;
    // The rule is about elapsed time, so wait it out for real.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hans.who().await, ["luke", "yoda"]);
    assert_eq!(hans.who_since(5).await, ["leia", "luke", "yoda"]);
    assert_eq!(hans.who_since(1).await, ["luke", "yoda"]);
    assert_eq!(hans.who_since(0).await, ["luke", "yoda"]);
    // Never-seen users are never listed; the asker is never listed.
    assert!(
        !hans
            .who_since(1_000_000)
            .await
            .contains(&"vader".to_string())
    );
    assert!(
        !hans
            .who_since(1_000_000)
            .await
            .contains(&"hans".to_string())
    );
}

#[cfg(unix)] // signals
#[tokio::test]
async fn who_since_remembers_across_a_restart() {
    let env = Env::new();
    let server = env.start(&[]);
    let leia = Client::login(server.addr, "leia").await;
    leia.logout().await;
    server.signal("TERM");
    let mut server = server;
    assert_eq!(server.wait_exit(), Some(0));
    let server = env.start(&[]);
    let mut hans = Client::login(server.addr, "hans").await;
    assert_eq!(hans.who_since(60).await, ["leia"]);
}

#[tokio::test]
async fn a_blocked_user_does_not_see_the_blocker_in_who_or_presence() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut luke = Client::login(server.addr, "luke").await;
    let mut vader = Client::login(server.addr, "vader").await;
    let mut hans = Client::login(server.addr, "hans").await;
    assert_eq!(
        ok_text(&luke.block("vader").await),
        Some("vader is blocked")
    );

    assert_eq!(vader.who().await, ["hans"], "luke is hidden from vader");
    assert_eq!(vader.who_since(60).await, ["hans"]);
    assert_eq!(
        luke.who().await,
        ["hans", "vader"],
        "blocking hides nothing from luke"
    );

    // luke leaves and returns: hans is told, vader is not.
    vader.who().await;
    while vader.pending_event(|_| true).is_some() {}
    luke.logout().await;
    hans.event_matching(is_presence("luke", false)).await;
    let mut luke = Client::login(server.addr, "luke").await;
    hans.event_matching(is_presence("luke", true)).await;
    vader.who().await;
    assert!(
        vader
            .pending_event(|f| matches!(f, ServerFrame::Presence { user, .. } if user == "luke"))
            .is_none()
    );

    // vader's own presence still reaches luke.
    vader.logout().await;
    luke.event_matching(is_presence("vader", false)).await;
}

#[tokio::test]
async fn block_rules_and_texts_and_persistence_across_restart() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut luke = Client::login(server.addr, "luke").await;
    let cases = [
        (
            "luke",
            ErrorCode::CannotBlockSelf,
            "Error. Cannot block self".to_owned(),
        ),
        (
            "palpatine",
            ErrorCode::InvalidUser,
            "Error. Invalid user".to_owned(),
        ),
    ];
    for (target, code, text) in &cases {
        assert_eq!(error_of(&luke.block(target).await), (*code, text.as_str()));
        assert_eq!(
            error_of(&luke.unblock(target).await),
            (*code, text.as_str())
        );
    }
    assert_eq!(
        error_of(&luke.unblock("vader").await),
        (ErrorCode::NotBlocked, "Error. vader was not blocked")
    );
    assert_eq!(
        ok_text(&luke.block("vader").await),
        Some("vader is blocked")
    );
    assert_eq!(
        error_of(&luke.block("vader").await),
        (ErrorCode::AlreadyBlocked, "Error. vader is already blocked")
    );
    drop(luke);
    server.kill9();

    let server = env.start(&[]);
    let mut vader = Client::login(server.addr, "vader").await;
    assert_eq!(
        error_of(&vader.message("luke", "join me").await).0,
        ErrorCode::BlockedByRecipient
    );
    let mut luke = Client::login(server.addr, "luke").await;
    assert_eq!(
        error_of(&luke.block("vader").await).0,
        ErrorCode::AlreadyBlocked
    );
    assert_eq!(
        ok_text(&luke.unblock("vader").await),
        Some("vader is unblocked")
    );
    let id = vader
        .submit(|id| {
            ClientFrame::Send(SendRequest {
                id,
                to: "luke".into(),
                text: "join me".into(),
                client_id: None,
            })
        })
        .await;
    luke.next_message().await;
    let reply = vader.reply(id).await;
    assert!(
        matches!(reply, ServerFrame::Sent { queued: false, .. }),
        "{reply:?}"
    );
}

/// Every login and logout of many users reaches a watcher in order, each
/// user's own in the order they happened, in `presence_batch` frames.
#[tokio::test]
async fn many_logins_and_logouts_reach_everyone_in_order_in_batches() {
    const USERS: usize = 40;
    let names: Vec<String> = (0..USERS).map(|i| format!("user{i:02}")).collect();
    let accounts: String = names.iter().map(|name| format!("{name} pw\n")).collect();
    let env = Env::with_accounts(&format!("{SAMPLE_ACCOUNTS}{accounts}"));
    let server = env.start(&[]);
    let mut watcher = Client::login(server.addr, "hans").await;
    watcher.whole_batches = true;
    let sessions = futures::future::join_all(
        names
            .iter()
            .map(|name| Client::login(server.addr, name.as_str())),
    )
    .await;
    for session in sessions {
        session.logout().await;
    }
    let mut seen: Vec<(String, bool)> = Vec::new();
    while seen.len() < 2 * USERS {
        match watcher.event().await {
            ServerFrame::PresenceBatch { events } => {
                assert!(!events.is_empty(), "an empty batch");
                seen.extend(
                    events
                        .iter()
                        .map(|event| (event.user().to_owned(), event.online())),
                );
            }
            ServerFrame::Presence { .. } => panic!("a version 2 client got a single notice"),
            _ => {}
        }
    }
    for name in &names {
        let own: Vec<bool> = seen
            .iter()
            .filter(|(user, _)| user == name)
            .map(|(_, online)| *online)
            .collect();
        assert_eq!(own, [true, false], "{name}'s notices");
    }
    assert!(
        seen.iter().all(|(user, _)| user != "hans"),
        "not told of itself"
    );
}

/// A client that greets with protocol version 1 is still served, with one
/// `presence` frame per login or logout.
#[tokio::test]
async fn a_version_1_client_gets_one_presence_frame_per_notice() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut old = Client::connect_raw(server.addr).await;
    old.whole_batches = true;
    old.send(ClientFrame::Hello {
        version: 1,
        agent: None,
    })
    .await;
    match old.next_frame().await {
        ServerFrame::Hello { version, .. } => assert_eq!(version, 1),
        other => panic!("{other:?}"),
    }
    let welcome = old.try_login("hans", password_of("hans")).await;
    assert!(
        matches!(welcome, ServerFrame::Welcome { .. }),
        "{welcome:?}"
    );
    let luke = Client::login(server.addr, "luke").await;
    let _leia = Client::login(server.addr, "leia").await;
    luke.logout().await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match old.event().await {
            ServerFrame::Presence { user, online, .. } => seen.push((user, online)),
            ServerFrame::PresenceBatch { .. } => panic!("a batch for a version 1 client"),
            _ => {}
        }
    }
    // In order per user (luke's and leia's logins are announced once each
    // one's offline queue is out, so they may come either way round).
    let of = |name: &str| -> Vec<bool> {
        seen.iter()
            .filter(|(user, _)| user == name)
            .map(|(_, online)| *online)
            .collect()
    };
    assert_eq!(of("luke"), [true, false], "{seen:?}");
    assert_eq!(of("leia"), [true], "{seen:?}");
}

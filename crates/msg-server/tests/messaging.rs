//! Direct messages, the offline queue and broadcasts.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use msg_proto::ErrorCode;
use msg_proto::RequestId;
use msg_proto::server::{BroadcastRequest, ClientFrame, LoginRequest, SendRequest, ServerFrame};

fn text_of(frame: &ServerFrame) -> (&str, &str) {
    match frame {
        ServerFrame::Message { from, text, .. } => (from.as_str(), text.as_str()),
        other => panic!("expected a message, got {other:?}"),
    }
}

#[tokio::test]
async fn online_delivery_is_acknowledged_to_the_sender_after_the_recipient_acks() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut hans = Client::login(server.addr, "hans").await;
    let mut luke = Client::login(server.addr, "luke").await;
    luke.auto_ack = false;

    let id = hans
        .submit(|id| {
            ClientFrame::Send(SendRequest {
                id,
                to: "luke".into(),
                text: "  I am your friend  ".into(),
                client_id: Some("hans-1".into()),
            })
        })
        .await;
    let message = luke.next_message().await;
    assert!(
        matches!(&message, ServerFrame::Message { client_id: Some(c), .. } if c == "hans-1"),
        "the sender's client id is passed through: {message:?}"
    );
    assert_eq!(
        text_of(&message),
        ("hans", "I am your friend"),
        "text is trimmed"
    );
    let ServerFrame::Message { msg_id, .. } = message else {
        unreachable!()
    };
    // No reply before the recipient's ack: prove it with a round trip first.
    hans.who().await;
    assert!(!hans.has_reply(id));
    luke.ack(msg_id).await;
    assert_eq!(
        hans.reply(id).await,
        ServerFrame::Sent {
            id,
            msg_id,
            queued: false
        }
    );
}

#[tokio::test]
async fn offline_messages_arrive_in_order_exactly_once_at_the_next_login() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut hans = Client::login(server.addr, "hans").await;
    for i in 1..=5 {
        let reply = hans.message("luke", &format!("offline {i}")).await;
        assert!(
            matches!(reply, ServerFrame::Sent { queued: true, .. }),
            "{reply:?}"
        );
    }
    let mut yoda = Client::login(server.addr, "yoda").await;
    let reply = yoda
        .request(|id| {
            ClientFrame::Send(SendRequest {
                id,
                to: "luke".into(),
                text: "from yoda".into(),
                client_id: Some("yoda-7".into()),
            })
        })
        .await;
    assert!(matches!(reply, ServerFrame::Sent { queued: true, .. }));

    let mut luke = Client::login(server.addr, "luke").await;
    let mut texts = Vec::new();
    let mut luke_last = ServerFrame::Pong;
    for _ in 0..6 {
        luke_last = luke.next_message().await;
        texts.push(text_of(&luke_last).1.to_owned());
    }
    assert!(
        matches!(&luke_last, ServerFrame::Message { client_id: Some(c), .. } if c == "yoda-7"),
        "client ids survive the queue: {luke_last:?}"
    );
    assert_eq!(
        texts,
        [
            "offline 1",
            "offline 2",
            "offline 3",
            "offline 4",
            "offline 5",
            "from yoda"
        ]
    );
    // The queue comes before luke's own presence notice reaches the others.
    hans.event_matching(is_presence("luke", true)).await;
    luke.logout().await;

    let mut luke = Client::login(server.addr, "luke").await;
    luke.who().await;
    luke.assert_no_event(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn queued_messages_stay_until_acknowledged() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut hans = Client::login(server.addr, "hans").await;
    hans.message("luke", "keep me").await;

    let mut luke = Client::connect(server.addr).await;
    luke.auto_ack = false;
    assert!(matches!(
        luke.try_login("luke", "jedi*knight").await,
        ServerFrame::Welcome { .. }
    ));
    let ServerFrame::Message {
        msg_id: first_id, ..
    } = luke.next_message().await
    else {
        panic!("expected the queued message")
    };
    drop(luke); // gone without acking

    let mut luke = Client::connect(server.addr).await;
    luke.auto_ack = false;
    // The server may still be ending the previous session.
    eventually("the old session to end", async || {
        matches!(
            luke.try_login("luke", "jedi*knight").await,
            ServerFrame::Welcome { .. }
        )
    })
    .await;
    let again = luke.next_message().await;
    assert_eq!(text_of(&again), ("hans", "keep me"));
    let ServerFrame::Message { msg_id, .. } = again else {
        unreachable!()
    };
    assert_eq!(
        msg_id, first_id,
        "a redelivery keeps its id, so clients can de-duplicate"
    );
}

#[tokio::test]
async fn acknowledged_queue_survives_sigkill_and_is_delivered_once() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut hans = Client::login(server.addr, "hans").await;
    for i in 1..=3 {
        let reply = hans.message("luke", &format!("durable {i}")).await;
        assert!(matches!(reply, ServerFrame::Sent { queued: true, .. }));
    }
    // The sender was told: from here on, nothing may be lost.
    server.kill9();

    let server = env.start(&[]);
    let mut luke = Client::login(server.addr, "luke").await;
    let mut texts = Vec::new();
    let mut ids = HashSet::new();
    for _ in 0..3 {
        let frame = luke.next_message().await;
        if let ServerFrame::Message { msg_id, .. } = frame {
            ids.insert(msg_id);
        }
        texts.push(text_of(&frame).1.to_owned());
    }
    assert_eq!(texts, ["durable 1", "durable 2", "durable 3"]);
    // Acks were sent; a round trip makes sure the server read them.
    luke.who().await;
    luke.logout().await;
    server.kill9();

    let server = env.start(&[]);
    let mut luke = Client::login(server.addr, "luke").await;
    luke.who().await;
    luke.assert_no_event(Duration::from_millis(300)).await;
    // New ids never collide with ids from before the restart.
    let mut hans = Client::login(server.addr, "hans").await;
    luke.auto_ack = true;
    let id = hans
        .submit(|id| {
            ClientFrame::Send(SendRequest {
                id,
                to: "luke".into(),
                text: "new".into(),
                client_id: None,
            })
        })
        .await;
    let frame = luke
        .event_matching(|f| matches!(f, ServerFrame::Message { .. }))
        .await;
    let ServerFrame::Message { msg_id, .. } = frame else {
        unreachable!()
    };
    assert!(!ids.contains(&msg_id));
    assert!(matches!(
        hans.reply(id).await,
        ServerFrame::Sent { queued: false, .. }
    ));
}

#[tokio::test]
async fn message_errors_use_the_spec_texts() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut hans = Client::login(server.addr, "hans").await;
    let mut luke = Client::login(server.addr, "luke").await;
    let cases = [
        (
            "hans",
            "hi".to_owned(),
            ErrorCode::CannotMessageSelf,
            "Error. Cannot message yourself",
        ),
        (
            "palpatine",
            "hi".to_owned(),
            ErrorCode::InvalidUser,
            "Error. Invalid user",
        ),
        (
            "luke",
            "   ".to_owned(),
            ErrorCode::EmptyMessage,
            "Error. Message is empty",
        ),
        (
            "luke",
            "x".repeat(4001),
            ErrorCode::MessageTooLong,
            "Error. Message too long",
        ),
    ];
    for (to, text, code, message) in cases {
        let reply = hans.message(to, &text).await;
        assert_eq!(error_of(&reply), (code, message), "to {to}");
    }
    // Online delivery is acknowledged only once luke reads: submit, read, reply.
    let id = hans
        .submit(|id| {
            ClientFrame::Send(SendRequest {
                id,
                to: "luke".into(),
                text: "x".repeat(4000),
                client_id: None,
            })
        })
        .await;
    assert_eq!(
        text_of(&luke.next_message().await).1.len(),
        4000,
        "4000 characters are fine"
    );
    assert!(matches!(hans.reply(id).await, ServerFrame::Sent { .. }));

    assert_eq!(ok_text(&luke.block("hans").await), Some("hans is blocked"));
    let reply = hans.message("luke", "let me in").await;
    assert_eq!(
        error_of(&reply),
        (
            ErrorCode::BlockedByRecipient,
            "Your message could not be delivered as the recipient has blocked you"
        )
    );
    luke.unblock("hans").await;
    let id = hans
        .submit(|id| {
            ClientFrame::Send(SendRequest {
                id,
                to: "luke".into(),
                text: "thanks".into(),
                client_id: None,
            })
        })
        .await;
    // Nothing from the blocked period was stored: the next message is this one.
    assert_eq!(text_of(&luke.next_message().await).1, "thanks");
    assert!(matches!(
        hans.reply(id).await,
        ServerFrame::Sent { queued: false, .. }
    ));
}

#[tokio::test]
async fn broadcast_skips_blockers_and_offline_users_and_tells_the_sender() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut hans = Client::login(server.addr, "hans").await;
    let mut luke = Client::login(server.addr, "luke").await;
    let mut yoda = Client::login(server.addr, "yoda").await;
    let mut vader = Client::login(server.addr, "vader").await;

    let reply = hans.broadcast("hello everyone").await;
    assert_eq!(ok_text(&reply), None, "nobody skipped");
    for client in [&mut luke, &mut yoda, &mut vader] {
        let frame = client
            .event_matching(|f| matches!(f, ServerFrame::Broadcast { .. }))
            .await;
        assert!(
            matches!(frame, ServerFrame::Broadcast { ref from, ref text, .. } if from == "hans" && text == "hello everyone")
        );
    }

    vader.block("hans").await;
    let reply = hans.broadcast("second").await;
    assert_eq!(
        ok_text(&reply),
        Some("Your message could not be delivered to some recipients")
    );
    for client in [&mut luke, &mut yoda] {
        client
            .event_matching(
                |f| matches!(f, ServerFrame::Broadcast { text, .. } if text == "second"),
            )
            .await;
    }
    // hans's reply came after every recipient's copy was queued: one round
    // trip of vader's shows whether one was queued for vader. (Other events,
    // such as a late login notice, may be there and do not matter.)
    vader.who().await;
    assert!(
        vader
            .pending_event(|f| matches!(f, ServerFrame::Broadcast { .. }))
            .is_none()
    );

    // Offline users never get broadcasts, now or later.
    let mut r2d2 = Client::login(server.addr, "r2d2").await;
    r2d2.who().await;
    assert!(
        r2d2.pending_event(|f| matches!(f, ServerFrame::Broadcast { .. }))
            .is_none()
    );
    assert!(
        hans.pending_event(|f| matches!(f, ServerFrame::Broadcast { .. }))
            .is_none(),
        "not to self"
    );
}

#[tokio::test]
async fn a_reader_that_stalls_is_disconnected_and_its_messages_stay_queued() {
    let env = Env::new();
    let server = env.start(&["--ack-timeout-ms", "300", "--max-rate", "0"]);
    let mut hans = Client::login(server.addr, "hans").await;
    let mut yoda = Client::login(server.addr, "yoda").await;
    // luke logs in and then never reads again.
    let luke = Client::login_with_small_buffer(server.addr, "luke").await;

    // Unacknowledged messages are stored after the ack timeout and the
    // sender is told they are queued.
    let mut ids = Vec::new();
    for n in 0..50 {
        ids.push(
            hans.submit(|id| {
                ClientFrame::Send(SendRequest {
                    id,
                    to: "luke".into(),
                    text: format!("m{n}"),
                    client_id: None,
                })
            })
            .await,
        );
    }
    let mut msg_ids = HashSet::new();
    for id in ids {
        match hans.reply(id).await {
            ServerFrame::Sent {
                msg_id,
                queued: true,
                ..
            } => msg_ids.insert(msg_id),
            other => panic!("expected queued, got {other:?}"),
        };
    }

    // Broadcasts need no ack: flooding them fills luke's queue until the
    // server disconnects him instead of buffering without bound.
    let big = "b".repeat(4000);
    let started = std::time::Instant::now();
    while hans.pending_event(is_presence("luke", false)).is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "luke was never disconnected"
        );
        for _ in 0..50 {
            let reply = yoda.broadcast(&big).await;
            assert_eq!(ok_text(&reply), None);
        }
        hans.who().await;
    }
    drop(luke);

    // Everything direct is still there at the next login, once each.
    let mut luke = Client::login(server.addr, "luke").await;
    let mut seen = HashSet::new();
    while seen.len() < msg_ids.len() {
        if let ServerFrame::Message { msg_id, .. } = luke.next_message().await {
            assert!(seen.insert(msg_id), "delivered twice");
        }
    }
    assert_eq!(seen, msg_ids);
    luke.who().await;
    assert!(
        luke.pending_event(|f| matches!(f, ServerFrame::Message { .. }))
            .is_none()
    );
}

#[tokio::test]
async fn two_hundred_concurrent_sessions_lose_nothing() {
    const USERS: usize = 200;
    const PER_USER: usize = 10;
    let accounts: String = (0..USERS).map(|i| format!("user{i} pw{i}\n")).collect();
    let env = Env::with_accounts(&accounts);
    let server = env.start(&[]);
    let addr = server.addr;

    let mut tasks = Vec::new();
    for i in 0..USERS {
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            let reply = client
                .try_login(&format!("user{i}"), &format!("pw{i}"))
                .await;
            assert!(matches!(reply, ServerFrame::Welcome { .. }), "{reply:?}");
            client
        }));
    }
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(task.await.expect("login task"));
    }
    let mut tasks = Vec::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let to = format!("user{}", (i + 1) % USERS);
            let mut pending = Vec::new();
            for n in 0..PER_USER {
                let text = format!("{i}:{n}");
                let to = to.clone();
                pending.push(
                    client
                        .submit(|id| {
                            ClientFrame::Send(SendRequest {
                                id,
                                to,
                                text,
                                client_id: None,
                            })
                        })
                        .await,
                );
            }
            let mut received = Vec::new();
            while received.len() < PER_USER {
                if let ServerFrame::Message { from, text, .. } = client.next_message().await {
                    assert_eq!(from, format!("user{}", (i + USERS - 1) % USERS));
                    received.push(text);
                }
            }
            for id in pending {
                let reply = client.reply(id).await;
                assert!(matches!(reply, ServerFrame::Sent { .. }), "{reply:?}");
            }
            received
        }));
    }
    let mut total = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        let received = task.await.expect("session task");
        let from = (i + USERS - 1) % USERS;
        let expected: Vec<String> = (0..PER_USER).map(|n| format!("{from}:{n}")).collect();
        assert_eq!(
            received, expected,
            "user{i} got its partner's messages in order"
        );
        total += received.len();
    }
    assert_eq!(total, USERS * PER_USER);
}

#[tokio::test]
async fn two_users_pipelining_past_the_outstanding_limit_do_not_wait_for_each_other() {
    // Only two sends each may await their reply; a stalled send must not
    // stop the server reading the acks that complete the other user's
    // sends, or both would wait for the (here very long) ack timeout.
    let env = Env::new();
    let server = env.start(&[
        "--max-outstanding-sends",
        "2",
        "--ack-timeout-ms",
        "600000",
        "--max-rate",
        "0",
    ]);
    let mut hans = Client::login(server.addr, "hans").await;
    let mut luke = Client::login(server.addr, "luke").await;
    const EACH: usize = 40;
    let mut hans_ids = Vec::new();
    let mut luke_ids = Vec::new();
    for n in 0..EACH {
        hans_ids.push(hans.submit(send_to("luke", &format!("h{n}"))).await);
        luke_ids.push(luke.submit(send_to("hans", &format!("l{n}"))).await);
    }
    // Both read (and so ack) concurrently, as real clients do.
    let collect = |mut client: Client, ids: Vec<RequestId>| async move {
        let mut delivered = 0;
        for id in ids {
            match client.reply(id).await {
                ServerFrame::Sent { queued: false, .. } => delivered += 1,
                other => panic!("expected delivered, got {other:?}"),
            }
        }
        let mut texts = Vec::new();
        while texts.len() < EACH {
            match client.next_message().await {
                ServerFrame::Message { text, .. } => texts.push(text),
                other => panic!("expected a message, got {other:?}"),
            }
        }
        (delivered, texts)
    };
    let (hans_side, luke_side) = tokio::join!(collect(hans, hans_ids), collect(luke, luke_ids));
    assert_eq!(hans_side.0, EACH);
    assert_eq!(luke_side.0, EACH);
    let expected = |prefix: &str| {
        (0..EACH)
            .map(|n| format!("{prefix}{n}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(hans_side.1, expected("l"), "in order, once each");
    assert_eq!(luke_side.1, expected("h"));
}

#[tokio::test]
async fn requests_waiting_for_a_reply_slot_are_answered_after_the_client_half_closes() {
    let env = Env::new();
    let server = env.start(&[
        "--max-outstanding-sends",
        "1",
        "--ack-timeout-ms",
        "500",
        "--max-rate",
        "0",
    ]);
    let mut hans = Client::login(server.addr, "hans").await;
    let mut luke = Client::login(server.addr, "luke").await;
    luke.auto_ack = false;
    // The second send waits for the first's slot (luke never acks: the
    // ack timeout stores it); `who` waits behind it. Then hans stops
    // writing, as `printf ... | nc` would.
    let first = hans.submit(send_to("luke", "one")).await;
    let second = hans.submit(send_to("luke", "two")).await;
    let who = hans.submit(|id| ClientFrame::Who { id }).await;
    hans.shutdown_write().await;
    let frames = hans.closed().await;
    let reply = |id| frames.iter().find(|f| f.request_id() == Some(id));
    for id in [first, second] {
        assert!(
            matches!(reply(id), Some(ServerFrame::Sent { queued: true, .. })),
            "{frames:?}"
        );
    }
    assert!(
        matches!(reply(who), Some(ServerFrame::Users { .. })),
        "{frames:?}"
    );
    // Both are luke's, in order.
    let mut texts = Vec::new();
    while texts.len() < 2 {
        if let ServerFrame::Message { text, .. } = luke.next_message().await {
            texts.push(text);
        }
    }
    assert_eq!(texts, ["one", "two"]);
}

#[tokio::test]
async fn a_client_the_server_stopped_reading_is_not_taken_for_silent() {
    const DEAD: Duration = Duration::from_millis(1000);
    let env = Env::new();
    let server = env.start(&[
        "--max-outstanding-sends",
        "1",
        "--ack-timeout-ms",
        "600000",
        "--dead-timeout-ms",
        &DEAD.as_millis().to_string(),
        "--timeout",
        "0",
        "--max-rate",
        "0",
    ]);
    let mut hans = Client::login(server.addr, "hans").await;
    let mut luke = Client::login(server.addr, "luke").await;
    luke.auto_ack = false;
    let first = hans.submit(send_to("luke", "one")).await;
    let second = hans.submit(send_to("luke", "two")).await;
    // More than 64 KiB of frames behind the waiting send: the server stops
    // reading hans altogether.
    let padding = "p".repeat(1000);
    let mut broadcasts = Vec::new();
    for _ in 0..80 {
        let id = hans
            .submit(|id| {
                ClientFrame::Broadcast(BroadcastRequest {
                    id,
                    text: padding.clone(),
                })
            })
            .await;
        broadcasts.push(id);
    }
    // Well past the dead-connection timeout, with hans unheard only because
    // the server is not reading him. luke pings far more often than the
    // timeout needs, so that only hans's silence is on trial.
    let quiet_until = tokio::time::Instant::now() + DEAD * 5 / 2;
    while tokio::time::Instant::now() < quiet_until {
        tokio::time::sleep(DEAD / 5).await;
        luke.send(ClientFrame::Ping).await;
    }
    // luke takes both messages (the second is sent once the first's reply
    // slot is free), so neither reply depends on a timeout.
    for expected in ["one", "two"] {
        match luke.next_message().await {
            ServerFrame::Message { msg_id, text, .. } => {
                assert_eq!(text, expected);
                luke.ack(msg_id).await;
            }
            other => panic!("{other:?}"),
        }
    }
    // From here on the server reads hans again, and hans pings like any
    // client while it waits.
    let every = DEAD / 5;
    let reply = hans.reply_pinging(first, every).await;
    assert!(
        matches!(reply, ServerFrame::Sent { queued: false, .. }),
        "{reply:?}"
    );
    let reply = hans.reply_pinging(second, every).await;
    assert!(
        matches!(reply, ServerFrame::Sent { queued: false, .. }),
        "{reply:?}"
    );
    // Still connected, and every held broadcast was handled.
    for id in broadcasts {
        let reply = hans.reply_pinging(id, every).await;
        assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");
    }
    hans.who().await;
}

#[tokio::test]
async fn a_slow_reader_gets_its_whole_offline_queue() {
    const QUEUED: usize = 6000;
    const DEAD: Duration = Duration::from_millis(2000);
    let env = Env::new();
    let server = env.start(&[
        "--dead-timeout-ms",
        &DEAD.as_millis().to_string(),
        "--timeout",
        "0",
        "--max-rate",
        "0",
    ]);
    let mut hans = Client::login(server.addr, "hans").await;
    let text = "q".repeat(1000);
    let mut ids = Vec::new();
    for n in 0..QUEUED {
        ids.push(hans.submit(send_to("luke", &format!("{n} {text}"))).await);
    }
    for id in ids {
        assert!(matches!(
            hans.reply(id).await,
            ServerFrame::Sent { queued: true, .. }
        ));
    }
    // luke's 6 MB queue does not fit in the socket buffers, and luke reads
    // it slowly: in all for longer than the dead-connection timeout, while
    // each pause stays well within it (a quarter), so that a busy machine
    // stretching a pause does not make luke look dead.
    let mut luke = Client::login_with_small_buffer(server.addr, "luke").await;
    // Waits for the store (slow on a busy disk) are the server's, not
    // luke's: luke pings through them as msgd would.
    luke.ping_every = Some(DEAD / 4);
    let started = std::time::Instant::now();
    for n in 0..QUEUED {
        if n % 1000 == 0 {
            tokio::time::sleep(DEAD / 4).await;
        }
        match luke.next_message().await {
            ServerFrame::Message { text, .. } => {
                assert!(text.starts_with(&format!("{n} ")), "in order");
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(started.elapsed() > DEAD, "the drain outlasted the timeout");
    luke.who().await;
}

/// Queues `count` messages of about 1 KB from hans to an offline `to`.
async fn queue_for(hans: &mut Client, to: &str, count: usize) {
    let text = "q".repeat(1000);
    let mut ids = Vec::new();
    for n in 0..count {
        ids.push(hans.submit(send_to(to, &format!("{n} {text}"))).await);
    }
    for id in ids {
        assert!(matches!(
            hans.reply(id).await,
            ServerFrame::Sent { queued: true, .. }
        ));
    }
}

#[tokio::test]
async fn commands_sent_during_the_drain_are_answered_after_the_offline_queue() {
    let env = Env::new();
    let server = env.start(&["--max-rate", "0"]);
    let mut hans = Client::login(server.addr, "hans").await;
    queue_for(&mut hans, "luke", 3000).await;
    let mut luke = Client::login(server.addr, "luke").await;
    let who = luke.submit(|id| ClientFrame::Who { id }).await;
    assert!(matches!(luke.reply(who).await, ServerFrame::Users { .. }));
    let mut before = 0;
    while luke
        .pending_event(|f| matches!(f, ServerFrame::Message { .. }))
        .is_some()
    {
        before += 1;
    }
    assert_eq!(before, 3000, "every offline message comes first");
}

#[tokio::test]
async fn a_client_that_half_closes_after_login_still_gets_its_offline_queue() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut hans = Client::login(server.addr, "hans").await;
    queue_for(&mut hans, "luke", 10).await;
    let mut luke = Client::connect(server.addr).await;
    luke.auto_ack = false;
    let login = luke
        .submit(|id| {
            ClientFrame::Login(LoginRequest {
                id,
                user: "luke".into(),
                password: password_of("luke").into(),
                peer_port: None,
                peer_key: None,
                device: None,
            })
        })
        .await;
    luke.shutdown_write().await;
    let frames = luke.closed().await;
    assert!(matches!(
        frames.first(),
        Some(ServerFrame::Welcome { id, .. }) if *id == login
    ));
    let messages = frames
        .iter()
        .filter(|f| matches!(f, ServerFrame::Message { .. }))
        .count();
    assert_eq!(messages, 10, "{frames:?}");
}

#[tokio::test]
async fn a_drain_nobody_reads_does_not_hold_up_live_messages() {
    let env = Env::new();
    let server = env.start(&[
        "--dead-timeout-ms",
        "1500",
        "--ack-timeout-ms",
        "300",
        "--timeout",
        "0",
        "--max-rate",
        "0",
    ]);
    let mut hans = Client::login(server.addr, "hans").await;
    // More than the socket buffers hold; luke never reads past the welcome.
    queue_for(&mut hans, "luke", 6000).await;
    let mut luke = Client::login_with_small_buffer(server.addr, "luke").await;
    let mut yoda = Client::login(server.addr, "yoda").await;
    let sent = yoda.submit(send_to("luke", "live")).await;
    // luke keeps pinging (alive) but reads nothing: the drain stalls, and
    // after the dead-connection timeout luke's connection is closed, so
    // yoda's message is stored and yoda told so.
    let started = std::time::Instant::now();
    while !yoda.has_reply(sent) {
        assert!(started.elapsed() < DEADLINE, "yoda's message is still held");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = luke.try_send_raw(b"{\"type\":\"ping\"}\n").await;
        yoda.who().await;
    }
    assert!(matches!(
        yoda.reply(sent).await,
        ServerFrame::Sent { queued: true, .. }
    ));
}

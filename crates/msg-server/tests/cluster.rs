//! Several nodes as one service, on a real PostgreSQL and NATS: schema
//! migrations when nodes start at once, shared accounts, the lockout
//! counted across nodes, one login per user across nodes, and the leases
//! of a node killed with SIGKILL running out.

mod common;

use common::cluster::{Cluster, Services};
use common::*;
use msg_proto::server::{ClientFrame, ServerFrame, UserRequest};
use msg_proto::{ErrorCode, MsgId};

#[tokio::test]
async fn nodes_started_at_once_share_one_schema_and_the_accounts() {
    let Some(services) = Services::get("shared accounts") else {
        return;
    };
    let cluster = Cluster::new(&services, 3).await;
    // Three nodes migrate one fresh database at the same moment.
    let nodes = cluster.start_all(&["--allow-register"]);

    // The credentials file seeded the database: a sample account logs in
    // on any node.
    Client::login(nodes[2].addr, "hans").await;

    // An account registered on one node logs in on another at once.
    let mut client = Client::connect(nodes[0].addr).await;
    let reply = client.request(register("rey", "jakku sands")).await;
    assert!(matches!(reply, ServerFrame::Welcome { .. }), "{reply:?}");
    client.logout().await;
    // (Once node 0 has given the lease back, a moment after the logout.)
    eventually("rey to log in on node 1", async || {
        let mut other = Client::connect(nodes[1].addr).await;
        match other.try_login("rey", "jakku sands").await {
            ServerFrame::Welcome { .. } => true,
            refused => {
                assert_eq!(error_of(&refused).0, ErrorCode::AlreadyLoggedIn);
                false
            }
        }
    })
    .await;
    // Names stay unique ignoring case across nodes.
    let mut third = Client::connect(nodes[2].addr).await;
    let reply = third.request(register("REY", "other")).await;
    assert_eq!(error_of(&reply).0, ErrorCode::UserExists);

    // Every node knows the new account as a recipient, soon.
    let mut luke = Client::login(nodes[2].addr, "luke").await;
    eventually("node 2 to know rey as a recipient", async || {
        let reply = luke.message("rey", "hello").await;
        !matches!(
            reply,
            ServerFrame::Error {
                code: ErrorCode::InvalidUser,
                ..
            }
        )
    })
    .await;
}

#[tokio::test]
async fn wrong_passwords_on_two_nodes_block_the_account_on_all() {
    let Some(services) = Services::get("lockout across nodes") else {
        return;
    };
    let cluster = Cluster::new(&services, 3).await;
    let nodes = cluster.start_all(&["--block-duration", "60"]);
    let mut on_a = Client::connect(nodes[0].addr).await;
    let mut on_b = Client::connect(nodes[1].addr).await;
    let reply = on_a.try_login("hans", "wrong").await;
    assert_eq!(error_of(&reply).0, ErrorCode::InvalidPassword);
    let reply = on_a.try_login("hans", "wrong again").await;
    assert_eq!(error_of(&reply).0, ErrorCode::InvalidPassword);
    let reply = on_b.try_login("hans", "still wrong").await;
    assert_eq!(error_of(&reply).0, ErrorCode::AccountBlocked);

    // The right password on the third node meets the block, with its wait
    // counted by the database's clock.
    let mut on_c = Client::connect(nodes[2].addr).await;
    let reply = on_c.try_login("hans", password_of("hans")).await;
    match reply {
        ServerFrame::Error {
            code, retry_after, ..
        } => {
            assert_eq!(code, ErrorCode::LoginBlocked);
            let left = retry_after.expect("a wait");
            assert!((50..=60).contains(&left), "{left} s left");
        }
        other => panic!("expected login_blocked, got {other:?}"),
    }
    // A right password between wrong ones resets the count everywhere.
    let mut on_a = Client::connect(nodes[0].addr).await;
    assert_eq!(
        error_of(&on_a.try_login("luke", "wrong").await).0,
        ErrorCode::InvalidPassword
    );
    assert_eq!(
        error_of(&on_a.try_login("luke", "wrong").await).0,
        ErrorCode::InvalidPassword
    );
    Client::login(nodes[1].addr, "luke").await.logout().await;
    // One more wrong password is the first of a new run, not the third
    // (asked once node 1 has given luke's lease back).
    eventually("a wrong password to count again", async || {
        let mut on_c = Client::connect(nodes[2].addr).await;
        match error_of(&on_c.try_login("luke", "wrong").await).0 {
            ErrorCode::InvalidPassword => true,
            ErrorCode::AlreadyLoggedIn => false,
            other => panic!("{other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn a_user_logged_in_on_one_node_cannot_log_in_on_another() {
    let Some(services) = Services::get("one login per user") else {
        return;
    };
    let cluster = Cluster::new(&services, 2).await;
    let nodes = cluster.start_all(&[]);
    let hans = Client::login(nodes[0].addr, "hans").await;
    let mut second = Client::connect(nodes[1].addr).await;
    let reply = second.try_login("hans", password_of("hans")).await;
    assert_eq!(error_of(&reply).0, ErrorCode::AlreadyLoggedIn);

    // Logged out on the first node, the user may log in on the second.
    hans.logout().await;
    eventually("the lease to be given back", async || {
        let mut client = Client::connect(nodes[1].addr).await;
        matches!(
            client.try_login("hans", password_of("hans")).await,
            ServerFrame::Welcome { .. }
        )
    })
    .await;
}

#[tokio::test]
async fn the_users_of_a_killed_node_log_in_on_another_within_the_lease() {
    let Some(services) = Services::get("killed node") else {
        return;
    };
    let cluster = Cluster::new(&services, 2).await;
    let lease = ["--lease-ttl-ms", "1500"];
    let first = cluster.start(0, &lease);
    let second = cluster.start(1, &lease);
    let _hans = Client::login(first.addr, "hans").await;
    let mut early = Client::connect(second.addr).await;
    assert_eq!(
        error_of(&early.try_login("hans", password_of("hans")).await).0,
        ErrorCode::AlreadyLoggedIn
    );
    let killed_at = std::time::Instant::now();
    first.kill9();
    eventually("the dead node's lease to run out", async || {
        let mut client = Client::connect(second.addr).await;
        matches!(
            client.try_login("hans", password_of("hans")).await,
            ServerFrame::Welcome { .. }
        )
    })
    .await;
    // Not before the lease could have run out (renewed up to its whole
    // life before the kill, a third of it at most ago).
    assert!(
        killed_at.elapsed() >= std::time::Duration::from_millis(900),
        "the lease ended too early"
    );
}

#[tokio::test]
async fn passwd_with_a_store_changes_the_password_for_every_node() {
    let Some(services) = Services::get("passwd --store") else {
        return;
    };
    let cluster = Cluster::new(&services, 2).await;
    let nodes = cluster.start_all(&[]);
    let output = passwd_store(&cluster.store, "luke", "new force\n");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "Changed the password of luke"
    );
    for node in &nodes {
        // (Once the node before has given luke's lease back.)
        eventually("the old password to be refused", async || {
            let mut client = Client::connect(node.addr).await;
            match error_of(&client.try_login("luke", password_of("luke")).await).0 {
                ErrorCode::InvalidPassword => true,
                ErrorCode::AlreadyLoggedIn => false,
                other => panic!("{other:?}"),
            }
        })
        .await;
        eventually_login_with(node.addr, "luke", "new force")
            .await
            .logout()
            .await;
    }
    // The new password signed luke's devices out everywhere, and the node
    // holding his session ends it when told through NATS.
    let mut luke = eventually_login_with(nodes[1].addr, "luke", "new force").await;
    let output = passwd_store_told(&cluster, "luke", "newer force\n");
    assert!(output.status.success(), "{output:?}");
    let closing = luke.closed().await;
    assert!(
        closing.iter().any(|f| matches!(
            f,
            ServerFrame::LoggedOut {
                reason: msg_proto::server::LogoutReason::Revoked,
                ..
            }
        )),
        "{closing:?}"
    );
    // A name another spelling holds is refused.
    let output = passwd_store(&cluster.store, "LUKE", "x\n");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("luke already exists"),
        "{output:?}"
    );
}

fn passwd_store(store: &str, user: &str, stdin: &str) -> std::process::Output {
    passwd_with(&["--store", store], user, stdin)
}

/// `passwd --store … --cluster …`: the nodes are told too.
fn passwd_store_told(cluster: &Cluster, user: &str, stdin: &str) -> std::process::Output {
    passwd_with(
        &["--store", &cluster.store, "--cluster", &cluster.nats],
        user,
        stdin,
    )
}

fn passwd_with(args: &[&str], user: &str, stdin: &str) -> std::process::Output {
    let mut command = std::process::Command::new(server_bin());
    command
        .args(["passwd", user, "--password-stdin"])
        .args(args);
    run_with_input(&mut command, stdin)
}

/// The next presence notice about `user`: whether it says online.
async fn presence_of(client: &mut Client, user: &str) -> bool {
    let user = user.to_owned();
    match client
        .event_matching(
            |frame| matches!(frame, ServerFrame::Presence { user: u, .. } if *u == user),
        )
        .await
    {
        ServerFrame::Presence { online, .. } => online,
        other => unreachable!("{other:?}"),
    }
}

#[tokio::test]
async fn presence_who_and_blocks_span_the_nodes() {
    let Some(services) = Services::get("presence across nodes") else {
        return;
    };
    let cluster = Cluster::new(&services, 3).await;
    let nodes = cluster.start_all(&[]);
    let mut luke = Client::login(nodes[0].addr, "luke").await;

    // A login and a logout on another node reach luke, in order.
    let hans = Client::login(nodes[1].addr, "hans").await;
    assert!(presence_of(&mut luke, "hans").await);
    assert_eq!(luke.who().await, vec!["hans"]);
    let mut yoda = Client::login(nodes[2].addr, "yoda").await;
    assert!(presence_of(&mut luke, "yoda").await);
    assert_eq!(yoda.who().await, vec!["hans", "luke"]);
    hans.logout().await;
    assert!(!presence_of(&mut luke, "hans").await);
    assert_eq!(luke.who().await, vec!["yoda"]);
    // Seen a moment ago on another node: `who --since` knows.
    assert_eq!(yoda.who_since(60).await, vec!["hans", "luke"]);

    // A block made on one node counts on the others: hans blocks luke, so
    // luke sees neither hans's presence nor hans in `who`.
    let mut hans = Client::login(nodes[1].addr, "hans").await;
    assert!(presence_of(&mut luke, "hans").await);
    let reply = hans.block("luke").await;
    assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");
    eventually("node 0 to learn of the block", async || {
        !luke.who().await.contains(&"hans".to_owned())
    })
    .await;
    hans.logout().await;
    // yoda, not blocked, hears the logout; luke does not.
    assert!(!presence_of(&mut yoda, "hans").await);
    let _r2 = Client::login(nodes[2].addr, "r2d2").await;
    assert!(presence_of(&mut luke, "r2d2").await);
    assert!(
        luke.pending_event(|f| matches!(f, ServerFrame::Presence { user, .. } if user == "hans"))
            .is_none(),
        "luke heard of hans, who blocks him"
    );
}

#[tokio::test]
async fn the_users_of_a_killed_node_are_gone_from_the_others_within_the_lease() {
    let Some(services) = Services::get("killed node's presence") else {
        return;
    };
    let cluster = Cluster::new(&services, 2).await;
    let lease = ["--lease-ttl-ms", "1500"];
    let first = cluster.start(0, &lease);
    let second = cluster.start(1, &lease);
    let mut luke = Client::login(second.addr, "luke").await;
    let _hans = Client::login(first.addr, "hans").await;
    assert!(presence_of(&mut luke, "hans").await);
    first.kill9();
    assert!(!presence_of(&mut luke, "hans").await);
    assert!(luke.who().await.is_empty());
    assert_eq!(luke.who_since(60).await, vec!["hans"]);
}

#[tokio::test]
async fn a_message_queued_on_one_node_is_delivered_once_at_a_login_on_another() {
    let Some(services) = Services::get("offline queue across nodes") else {
        return;
    };
    let cluster = Cluster::new(&services, 3).await;
    let nodes = cluster.start_all(&[]);
    let mut hans = Client::login(nodes[0].addr, "hans").await;
    // A NUL inside a text is kept (the queue holds the text's bytes).
    for text in ["first", "second", "nul\u{0}inside"] {
        match hans.message("leia", text).await {
            ServerFrame::Sent { queued, .. } => assert!(queued, "leia is offline"),
            other => panic!("{other:?}"),
        }
    }
    // leia logs in on another node: both, in order; she acks them.
    let mut leia = Client::login(nodes[1].addr, "leia").await;
    let mut texts = Vec::new();
    for _ in 0..3 {
        match leia.next_message().await {
            ServerFrame::Message {
                msg_id, text, from, ..
            } => {
                assert_eq!(from, "hans");
                texts.push(text);
                leia.ack(msg_id).await;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(texts, ["first", "second", "nul\u{0}inside"]);
    // Acked: at her next login, on a third node, nothing is delivered again.
    leia.logout().await;
    let mut leia = eventually_login(nodes[2].addr, "leia").await;
    // Requests are answered only after the offline queue has gone out.
    leia.who().await;
    assert!(
        leia.pending_event(|f| matches!(f, ServerFrame::Message { .. }))
            .is_none(),
        "an acknowledged message came again"
    );
}

#[tokio::test]
async fn a_message_stored_while_its_recipient_is_online_elsewhere_is_delivered_at_once() {
    let Some(services) = Services::get("mail stored for a user online elsewhere") else {
        return;
    };
    let cluster = Cluster::new(&services, 2).await;
    let nodes = cluster.start_all(&[]);
    let mut luke = Client::login(nodes[1].addr, "luke").await;
    let mut hans = Client::login(nodes[0].addr, "hans").await;
    eventually("node 0 to know luke is online", async || {
        hans.who().await.contains(&"luke".to_owned())
    })
    .await;
    // Node 0 wrongly comes to believe luke gone, as after a lost event: a
    // logout under luke's own lease, forged on the bus.
    let (service, node, epoch) = {
        let (db, connection) = tokio_postgres::connect(&cluster.store, tokio_postgres::NoTls)
            .await
            .expect("connect to the cluster's database");
        let driver = tokio::spawn(connection);
        let service: String = db
            .query_one("SELECT id FROM service", &[])
            .await
            .expect("the service id")
            .get(0);
        let lease = db
            .query_one("SELECT node, epoch FROM leases WHERE name = 'luke'", &[])
            .await
            .expect("luke's lease");
        drop(db);
        let _ = driver.await;
        (service, lease.get::<_, String>(0), lease.get::<_, i64>(1))
    };
    let bus = async_nats::connect(&cluster.nats)
        .await
        .expect("connect to NATS");
    let forged = serde_json::json!({
        "kind": "presence", "user": "luke", "online": false, "at": 1,
        "node": node, "epoch": epoch,
    });
    bus.publish(format!("msg.{service}.events"), forged.to_string().into())
        .await
        .expect("publish");
    bus.flush().await.expect("flush");
    eventually("node 0 to believe luke gone", async || {
        !hans.who().await.contains(&"luke".to_owned())
    })
    .await;

    // So node 0 stores hans's message instead of handing it to node 1; node
    // 1 hears that it was stored and delivers it to luke's live session.
    match hans.message("luke", "stored meanwhile").await {
        ServerFrame::Sent { queued, .. } => assert!(queued, "stored, not handed on"),
        other => panic!("{other:?}"),
    }
    match luke.next_message().await {
        ServerFrame::Message {
            msg_id, text, from, ..
        } => {
            assert_eq!((from.as_str(), text.as_str()), ("hans", "stored meanwhile"));
            luke.ack(msg_id).await;
        }
        other => panic!("{other:?}"),
    }
    // Once, and not again at the next login.
    luke.who().await;
    assert!(
        luke.pending_event(|f| matches!(f, ServerFrame::Message { .. }))
            .is_none(),
        "the message came twice"
    );
    luke.logout().await;
    let mut luke = eventually_login(nodes[1].addr, "luke").await;
    luke.who().await;
    assert!(
        luke.pending_event(|f| matches!(f, ServerFrame::Message { .. }))
            .is_none(),
        "an acknowledged message came again"
    );
}

/// Logs in as soon as the user's previous node has given the lease back.
async fn eventually_login(addr: std::net::SocketAddr, user: &str) -> Client {
    eventually_login_with(addr, user, password_of(user)).await
}

async fn eventually_login_with(addr: std::net::SocketAddr, user: &str, password: &str) -> Client {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut client = Client::connect(addr).await;
        match client.try_login(user, password).await {
            ServerFrame::Welcome { .. } => return client,
            refused => {
                assert_eq!(error_of(&refused).0, ErrorCode::AlreadyLoggedIn);
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{user} never logged in"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test]
async fn direct_messages_and_broadcasts_cross_the_nodes() {
    let Some(services) = Services::get("messages across nodes") else {
        return;
    };
    let cluster = Cluster::new(&services, 3).await;
    let nodes = cluster.start_all(&[]);
    let mut hans = Client::login(nodes[0].addr, "hans").await;
    let mut luke = Client::login(nodes[1].addr, "luke").await;
    let mut yoda = Client::login(nodes[2].addr, "yoda").await;
    eventually("node 0 to know luke is online", async || {
        hans.who().await.contains(&"luke".to_owned())
    })
    .await;

    // Acknowledged end to end: hans's reply comes once luke's client acked.
    let id = hans
        .submit(|id| {
            ClientFrame::Send(msg_proto::server::SendRequest {
                id,
                to: "luke".into(),
                text: "across".into(),
                client_id: Some("c-1".into()),
            })
        })
        .await;
    let msg_id = match luke.next_message().await {
        ServerFrame::Message {
            msg_id,
            from,
            text,
            client_id,
            ..
        } => {
            assert_eq!((from.as_str(), text.as_str()), ("hans", "across"));
            assert_eq!(client_id.as_deref(), Some("c-1"));
            msg_id
        }
        other => panic!("{other:?}"),
    };
    assert!(!hans.has_reply(id), "answered before luke's ack");
    luke.ack(msg_id).await;
    match hans.reply(id).await {
        ServerFrame::Sent {
            queued, msg_id: m, ..
        } => {
            assert!(!queued);
            assert_eq!(m, msg_id);
        }
        other => panic!("{other:?}"),
    }

    // A block made on luke's node refuses hans's message on hans's node.
    assert!(matches!(luke.block("hans").await, ServerFrame::Ok { .. }));
    eventually("node 0 to learn of the block", async || {
        !hans.who().await.contains(&"luke".to_owned())
    })
    .await;
    let refused = hans.message("luke", "blocked?").await;
    assert_eq!(error_of(&refused).0, ErrorCode::BlockedByRecipient);

    // A broadcast reaches every node, and the sender hears that luke (who
    // blocks hans) was skipped.
    match hans
        .request(|id| {
            ClientFrame::Broadcast(msg_proto::server::BroadcastRequest {
                id,
                text: "to all".into(),
            })
        })
        .await
    {
        ServerFrame::Ok { message, .. } => assert_eq!(
            message.as_deref(),
            Some("Your message could not be delivered to some recipients")
        ),
        other => panic!("expected ok, got {other:?}"),
    }
    match yoda
        .event_matching(|f| matches!(f, ServerFrame::Broadcast { .. }))
        .await
    {
        ServerFrame::Broadcast { from, text, .. } => {
            assert_eq!((from.as_str(), text.as_str()), ("hans", "to all"));
        }
        other => unreachable!("{other:?}"),
    }
    luke.who().await;
    assert!(
        luke.pending_event(|f| matches!(f, ServerFrame::Broadcast { .. }))
            .is_none(),
        "luke blocks hans"
    );
}

#[tokio::test]
async fn a_message_for_a_user_whose_node_is_killed_is_queued_not_lost() {
    let Some(services) = Services::get("recipient's node killed") else {
        return;
    };
    let cluster = Cluster::new(&services, 2).await;
    let args = ["--lease-ttl-ms", "1500", "--ack-timeout-ms", "500"];
    let first = cluster.start(0, &args);
    let second = cluster.start(1, &args);
    let mut hans = Client::login(first.addr, "hans").await;
    let luke = Client::login(second.addr, "luke").await;
    eventually("node 0 to know luke is online", async || {
        hans.who().await.contains(&"luke".to_owned())
    })
    .await;
    // luke's node dies with the message on its way, unacknowledged.
    drop(luke);
    second.kill9();
    let id = hans
        .submit(|id| {
            ClientFrame::Send(msg_proto::server::SendRequest {
                id,
                to: "luke".into(),
                text: "are you there".into(),
                client_id: None,
            })
        })
        .await;
    match hans.reply(id).await {
        ServerFrame::Sent { queued, .. } => assert!(queued),
        other => panic!("{other:?}"),
    }
    // luke comes back on the surviving node and gets it.
    let mut luke = eventually_login(first.addr, "luke").await;
    match luke.next_message().await {
        ServerFrame::Message { text, .. } => assert_eq!(text, "are you there"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn killing_a_node_while_messages_flow_loses_and_doubles_nothing_acknowledged() {
    let Some(services) = Services::get("kill -9 while messages flow") else {
        return;
    };
    let cluster = Cluster::new(&services, 3).await;
    let args = ["--lease-ttl-ms", "1500", "--ack-timeout-ms", "500"];
    let mut nodes = cluster.start_all(&args);
    let mut hans = Client::login(nodes[0].addr, "hans").await;
    let luke = Client::login(nodes[1].addr, "luke").await;
    eventually("node 0 to know luke is online", async || {
        hans.who().await.contains(&"luke".to_owned())
    })
    .await;
    // luke's client stores (acks) whatever reaches it until its node dies.
    let reader = tokio::spawn(async move {
        let mut luke = luke;
        luke.closed().await
    });
    let survivor = nodes[2].addr;
    let victim = nodes.remove(1);
    let mut victim = Some(victim);
    let mut acknowledged = Vec::new();
    for i in 0..40 {
        if i == 10
            && let Some(node) = victim.take()
        {
            node.kill9();
        }
        let text = format!("m{i}");
        match hans.message("luke", &text).await {
            ServerFrame::Sent { msg_id, .. } => acknowledged.push((text, msg_id)),
            other => panic!("{text}: {other:?}"),
        }
    }
    let mut received: std::collections::HashMap<String, std::collections::HashSet<MsgId>> =
        std::collections::HashMap::new();
    for frame in reader.await.expect("luke's reader") {
        if let ServerFrame::Message { msg_id, text, .. } = frame {
            received.entry(text).or_default().insert(msg_id);
        }
    }
    // luke comes back on a surviving node; the rest arrives from the queue.
    let mut luke = eventually_login(survivor, "luke").await;
    while acknowledged
        .iter()
        .any(|(text, id)| !received.get(text).is_some_and(|ids| ids.contains(id)))
    {
        match luke.next_message().await {
            ServerFrame::Message { msg_id, text, .. } => {
                received.entry(text).or_default().insert(msg_id);
            }
            other => panic!("{other:?}"),
        }
    }
    // Every message exists once: never two copies under different ids.
    for (text, ids) in &received {
        assert_eq!(ids.len(), 1, "{text} arrived as {ids:?}");
    }
}

fn private(
    kind: fn(UserRequest) -> ClientFrame,
    user: &str,
) -> impl FnOnce(msg_proto::RequestId) -> ClientFrame {
    let user = user.to_owned();
    move |id| kind(UserRequest { id, user })
}

#[tokio::test]
async fn private_sessions_are_brokered_between_users_of_two_nodes() {
    let Some(services) = Services::get("private sessions across nodes") else {
        return;
    };
    let cluster = Cluster::new(&services, 3).await;
    let nodes = cluster.start_all(&[]);
    let mut hans = Client::login(nodes[0].addr, "hans").await;
    let mut luke = Client::login(nodes[1].addr, "luke").await;
    let mut yoda = Client::login(nodes[2].addr, "yoda").await;
    eventually("the nodes to know each other's users", async || {
        hans.who().await.contains(&"luke".to_owned())
            && yoda.who().await.contains(&"luke".to_owned())
    })
    .await;

    let reply = hans
        .request(private(ClientFrame::PrivateRequest, "luke"))
        .await;
    assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");
    luke.event_matching(
        |f| matches!(f, ServerFrame::PrivateRequest { from, .. } if from == "hans"),
    )
    .await;
    // A second request while the first waits is refused by hans's node.
    let again = hans
        .request(private(ClientFrame::PrivateRequest, "luke"))
        .await;
    assert_eq!(error_of(&again).0, ErrorCode::PrivateRequestPending);
    let reply = luke
        .request(private(ClientFrame::PrivateAccept, "hans"))
        .await;
    assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");

    let is_ready = |f: &ServerFrame| matches!(f, ServerFrame::PrivateReady { .. });
    let ServerFrame::PrivateReady {
        peer,
        token,
        addr,
        caller_ip,
        peer_key,
        ..
    } = hans.event_matching(is_ready).await
    else {
        unreachable!()
    };
    assert_eq!(peer, "luke");
    assert_eq!(addr.as_deref(), Some("127.0.0.1:40000"));
    assert_eq!(caller_ip, None);
    assert_eq!(peer_key.as_deref(), Some(&*"5a".repeat(32)));
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
    assert_eq!(peer, "hans");
    assert_eq!(luke_token.expose(), token.expose(), "one token for both");
    assert_eq!(addr, None);
    assert_eq!(caller_ip.as_deref(), Some("127.0.0.1"));

    // Either side's end reaches the other's node.
    let reply = hans.request(private(ClientFrame::PrivateEnd, "luke")).await;
    assert!(matches!(reply, ServerFrame::Ok { .. }));
    luke.event_matching(|f| matches!(f, ServerFrame::PrivateEnded { peer, .. } if peer == "hans"))
        .await;

    // A declined request is reported on the asker's node.
    let reply = yoda
        .request(private(ClientFrame::PrivateRequest, "luke"))
        .await;
    assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");
    luke.event_matching(
        |f| matches!(f, ServerFrame::PrivateRequest { from, .. } if from == "yoda"),
    )
    .await;
    let reply = luke
        .request(private(ClientFrame::PrivateDecline, "yoda"))
        .await;
    assert!(matches!(reply, ServerFrame::Ok { .. }));
    yoda.event_matching(|f| matches!(f, ServerFrame::PrivateDeclined { peer } if peer == "luke"))
        .await;

    // A user who blocks the asker is refused on the asker's node.
    assert!(matches!(luke.block("yoda").await, ServerFrame::Ok { .. }));
    eventually("node 2 to learn of the block", async || {
        !yoda.who().await.contains(&"luke".to_owned())
    })
    .await;
    let refused = yoda
        .request(private(ClientFrame::PrivateRequest, "luke"))
        .await;
    assert_eq!(error_of(&refused).0, ErrorCode::BlockedYou);
}

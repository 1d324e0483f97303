//! docs/PROTOCOL.md and the server agree: every error code and frame type
//! is documented, every exact text in the document's tables is the text a
//! real server sends, and the rules the document states hold against a
//! real server process.
// Signals drive the shutdown texts; the Windows port is built, not run.
#![cfg(unix)]

mod common;

use std::collections::BTreeSet;

use common::*;
use msg_proto::server::{
    BroadcastRequest, ClientFrame, LoginRequest, LogoutReason, PresenceEvent, PrivateEndReason,
    ResumeRequest, SendRequest, ServerFrame, UserRequest, WhoSinceRequest,
};
use msg_proto::{ErrorCode, PROTOCOL_VERSION, RequestId, Secret};

const DOC: &str = include_str!("../../../docs/PROTOCOL.md");

// ---- reading the document ---------------------------------------------------

/// The text of the section `## heading`, up to the next `## `.
fn section(heading: &str) -> &'static str {
    let head = format!("\n## {heading}\n");
    let start = DOC
        .find(&head)
        .unwrap_or_else(|| panic!("PROTOCOL.md has no section {heading:?}"))
        + head.len();
    let rest = &DOC[start..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// The data rows of every table in `text`, as trimmed cells (each table's
/// header row and separator row left out).
fn table_rows(text: &str) -> Vec<Vec<&str>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut rows = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let is_row = line.starts_with('|');
        let is_separator = line.starts_with("|---");
        let is_header = lines
            .get(i + 1)
            .is_some_and(|next| next.starts_with("|---"));
        if is_row && !is_separator && !is_header {
            let cells = line.trim().trim_matches('|').split('|').map(str::trim);
            rows.push(cells.collect());
        }
    }
    rows
}

/// The `backticked` spans of a cell.
fn backticked(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// The error table: (code, exact message template) for each row.
fn documented_errors() -> Vec<(&'static str, &'static str)> {
    let table = section("Error codes");
    let table = &table[..table
        .find("Texts in other frames")
        .expect("the texts table")];
    table_rows(table)
        .into_iter()
        .map(|cells| {
            let code = backticked(cells[0]);
            let text = backticked(cells[1]);
            assert!(
                code.len() == 1 && text.len() == 1,
                "malformed row {cells:?}"
            );
            (code[0], text[0])
        })
        .collect()
}

/// The table of texts in other frames: (frame, exact message template).
fn documented_texts() -> Vec<(&'static str, &'static str)> {
    let table = section("Error codes");
    let table = &table[table
        .find("Texts in other frames")
        .expect("the texts table")..];
    table_rows(table)
        .into_iter()
        .map(|cells| {
            let text = backticked(cells[1]);
            assert!(text.len() == 1, "malformed row {cells:?}");
            (cells[0], text[0])
        })
        .collect()
}

/// A documented text with its placeholders filled in (`<seconds>` with
/// the error's `retry_after`).
fn render(template: &str, user: &str, seconds: Option<u64>) -> String {
    let seconds = seconds.map_or_else(|| "<seconds>".to_owned(), |s| s.to_string());
    template
        .replace("<user>", user)
        .replace("<version>", &BAD_VERSION.to_string())
        .replace("<seconds>", &seconds)
}

/// What a client asks for in the version-mismatch case.
const BAD_VERSION: u32 = 99;

/// The `"type"` of a frame as it goes on the wire.
fn type_of(value: serde_json::Value) -> String {
    value["type"].as_str().expect("a type").to_owned()
}

fn client_type(frame: &ClientFrame) -> String {
    type_of(serde_json::to_value(frame).expect("serializes"))
}

fn server_type(frame: &ServerFrame) -> String {
    type_of(serde_json::to_value(frame).expect("serializes"))
}

/// One of each client frame. The match below has no wildcard: a new
/// variant does not compile until it is added here too.
fn every_client_frame() -> Vec<ClientFrame> {
    let user = || UserRequest {
        id: 1,
        user: "luke".into(),
    };
    let login = || LoginRequest {
        id: 1,
        user: "hans".into(),
        password: Secret::from("pw"),
        peer_port: None,
        peer_key: None,
        device: None,
    };
    let all = vec![
        ClientFrame::Hello {
            version: 1,
            agent: None,
        },
        ClientFrame::Login(login()),
        ClientFrame::Register(login()),
        ClientFrame::Account(user()),
        ClientFrame::Resume(ResumeRequest {
            id: 1,
            user: "hans".into(),
            token: Secret::from("t"),
            peer_port: None,
            peer_key: None,
        }),
        ClientFrame::Send(SendRequest {
            id: 1,
            to: "luke".into(),
            text: "hi".into(),
            client_id: None,
        }),
        ClientFrame::Broadcast(BroadcastRequest {
            id: 1,
            text: "hi".into(),
        }),
        ClientFrame::Who { id: 1 },
        ClientFrame::WhoSince(WhoSinceRequest { id: 1, secs: 5 }),
        ClientFrame::Block(user()),
        ClientFrame::Unblock(user()),
        ClientFrame::Logout {
            id: 1,
            revoke_device: false,
        },
        ClientFrame::Ping,
        ClientFrame::Ack { msg_id: 1.into() },
        ClientFrame::Activity,
        ClientFrame::PrivateRequest(user()),
        ClientFrame::PrivateAccept(user()),
        ClientFrame::PrivateDecline(user()),
        ClientFrame::PrivateEnd(user()),
    ];
    for frame in &all {
        match frame {
            ClientFrame::Hello { .. }
            | ClientFrame::Login(_)
            | ClientFrame::Register(_)
            | ClientFrame::Account(_)
            | ClientFrame::Resume(_)
            | ClientFrame::Send(_)
            | ClientFrame::Broadcast(_)
            | ClientFrame::Who { .. }
            | ClientFrame::WhoSince(_)
            | ClientFrame::Block(_)
            | ClientFrame::Unblock(_)
            | ClientFrame::Logout { .. }
            | ClientFrame::Ping
            | ClientFrame::Ack { .. }
            | ClientFrame::Activity
            | ClientFrame::PrivateRequest(_)
            | ClientFrame::PrivateAccept(_)
            | ClientFrame::PrivateDecline(_)
            | ClientFrame::PrivateEnd(_) => {}
        }
    }
    all
}

/// One of each server frame; the match keeps the list complete.
fn every_server_frame() -> Vec<ServerFrame> {
    let all = vec![
        ServerFrame::Hello {
            version: 1,
            server: "msg-server".into(),
        },
        ServerFrame::Welcome {
            id: 1,
            user: "hans".into(),
            message: "hi".into(),
            token: None,
        },
        ServerFrame::Account {
            id: 1,
            user: "hans".into(),
            exists: true,
            registration: false,
            blocked_for: None,
        },
        ServerFrame::ok(1, None),
        ServerFrame::Sent {
            id: 1,
            msg_id: 2.into(),
            queued: false,
        },
        ServerFrame::Users {
            id: 1,
            users: vec![],
        },
        ServerFrame::error(Some(1), ErrorCode::Internal, "x"),
        ServerFrame::Message {
            msg_id: 1.into(),
            from: "luke".into(),
            text: "hi".into(),
            at: 0,
            client_id: None,
        },
        ServerFrame::Broadcast {
            from: "luke".into(),
            text: "hi".into(),
            at: 0,
        },
        ServerFrame::Presence {
            user: "luke".into(),
            online: true,
            at: 0,
        },
        ServerFrame::PresenceBatch {
            events: vec![PresenceEvent("luke".into(), true, 0)],
        },
        ServerFrame::LoggedOut {
            reason: LogoutReason::Timeout,
            message: "x".into(),
        },
        ServerFrame::PrivateRequest {
            from: "luke".into(),
            at: 0,
        },
        ServerFrame::PrivateReady {
            peer: "luke".into(),
            token: Secret::from("t"),
            peer_key: None,
            addr: None,
            caller_ip: None,
            expires_in: 60,
        },
        ServerFrame::PrivateDeclined {
            peer: "luke".into(),
        },
        ServerFrame::PrivateExpired {
            peer: "luke".into(),
        },
        ServerFrame::PrivateEnded {
            peer: "luke".into(),
            reason: PrivateEndReason::Stopped,
        },
        ServerFrame::Pong,
    ];
    for frame in &all {
        match frame {
            ServerFrame::Hello { .. }
            | ServerFrame::Welcome { .. }
            | ServerFrame::Account { .. }
            | ServerFrame::Ok { .. }
            | ServerFrame::Sent { .. }
            | ServerFrame::Users { .. }
            | ServerFrame::Error { .. }
            | ServerFrame::Message { .. }
            | ServerFrame::Broadcast { .. }
            | ServerFrame::Presence { .. }
            | ServerFrame::PresenceBatch { .. }
            | ServerFrame::LoggedOut { .. }
            | ServerFrame::PrivateRequest { .. }
            | ServerFrame::PrivateReady { .. }
            | ServerFrame::PrivateDeclined { .. }
            | ServerFrame::PrivateExpired { .. }
            | ServerFrame::PrivateEnded { .. }
            | ServerFrame::Pong => {}
        }
    }
    all
}

/// Every name in the first column of the tables of a section.
fn first_column_names(heading: &str) -> BTreeSet<&'static str> {
    table_rows(section(heading))
        .into_iter()
        .flat_map(|cells| backticked(cells[0]))
        .collect()
}

#[test]
fn every_error_code_and_frame_type_is_documented() {
    let documented: BTreeSet<&str> = documented_errors().iter().map(|(code, _)| *code).collect();
    let sent: BTreeSet<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
    assert_eq!(documented, sent, "the error table lists exactly the codes");

    let documented = first_column_names("Client → server");
    let types: BTreeSet<String> = every_client_frame().iter().map(client_type).collect();
    let types: BTreeSet<&str> = types.iter().map(String::as_str).collect();
    assert_eq!(documented, types, "client frame types");

    let documented = first_column_names("Server → client");
    let types: BTreeSet<String> = every_server_frame().iter().map(server_type).collect();
    let types: BTreeSet<&str> = types.iter().map(String::as_str).collect();
    assert_eq!(documented, types, "server frame types");

    // The reasons the server sends, and no other.
    let logged_out = table_rows(section("Server → client"))
        .into_iter()
        .find(|cells| cells[0] == "`logged_out`")
        .expect("a logged_out row");
    let listed: BTreeSet<&str> = backticked(logged_out[1]).into_iter().collect();
    let sent: BTreeSet<String> = [
        LogoutReason::Timeout,
        LogoutReason::Shutdown,
        LogoutReason::SlowConsumer,
        LogoutReason::Revoked,
    ]
    .iter()
    .map(|reason| {
        serde_json::to_value(reason)
            .expect("a reason")
            .as_str()
            .expect("text")
            .to_owned()
    })
    .chain(["reason".to_owned(), "message".to_owned()])
    .collect();
    let sent: BTreeSet<&str> = sent.iter().map(String::as_str).collect();
    assert_eq!(listed, sent, "logged_out reasons");
}

// ---- the texts, from a real server --------------------------------------------

/// What the server was seen to send: an error (code, text) or another
/// frame's text, with the user the request named.
#[derive(Default)]
struct Seen {
    errors: Vec<(String, String, &'static str, Option<u64>)>,
    texts: Vec<(&'static str, String, &'static str)>,
}

impl Seen {
    /// Records the error in `frame`, which must be one.
    fn error(&mut self, frame: &ServerFrame, user: &'static str) {
        let (code, message) = error_of(frame);
        let ServerFrame::Error { retry_after, .. } = frame else {
            unreachable!()
        };
        self.errors.push((
            code.as_str().to_owned(),
            message.to_owned(),
            user,
            *retry_after,
        ));
    }

    fn text(&mut self, key: &'static str, message: &str, user: &'static str) {
        self.texts.push((key, message.to_owned(), user));
    }
}

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

async fn end_private(client: &mut Client, user: &str) -> ServerFrame {
    client
        .request(|id| {
            ClientFrame::PrivateEnd(UserRequest {
                id,
                user: user.into(),
            })
        })
        .await
}

/// Logs in without a `peer_port` (no private sessions).
async fn login_without_peer_port(addr: std::net::SocketAddr, user: &str) -> Client {
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
                device: None,
            })
        })
        .await;
    assert!(matches!(reply, ServerFrame::Welcome { .. }), "{reply:?}");
    client
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

/// The text of a frame that carries one.
fn message_of(frame: &ServerFrame) -> &str {
    match frame {
        ServerFrame::Welcome { message, .. } | ServerFrame::LoggedOut { message, .. } => message,
        ServerFrame::Ok {
            message: Some(message),
            ..
        } => message,
        other => panic!("no text in {other:?}"),
    }
}

/// Drives the server through every error it can send (but a store failure)
/// and every other text, recording what it said.
async fn observe_the_server() -> Seen {
    let mut seen = Seen::default();
    let env = Env::new();
    let server = env.start(&["--block-duration", "600"]);
    let mut hans = Client::login(server.addr, "hans").await;
    let mut luke = Client::login(server.addr, "luke").await;
    let mut vader = Client::login(server.addr, "vader").await;

    // Greeting.
    let mut rude = Client::connect_raw(server.addr).await;
    rude.send(ClientFrame::Ping).await;
    seen.error(&rude.closed().await[0], "");
    let mut old = Client::connect_raw(server.addr).await;
    old.send(ClientFrame::Hello {
        version: BAD_VERSION,
        agent: None,
    })
    .await;
    seen.error(&old.closed().await[0], "");

    // Login, and requests before it.
    let mut anon = Client::connect(server.addr).await;
    seen.error(&anon.try_login("bad name", "pw").await, "");
    seen.error(&anon.try_login("yoda", "").await, "");
    seen.error(&anon.try_login("palpatine", "pw").await, "");
    let resume = anon
        .request(|id| {
            ClientFrame::Resume(ResumeRequest {
                id,
                user: "yoda".into(),
                token: Secret::from("ab".repeat(32).as_str()),
                peer_port: None,
                peer_key: None,
            })
        })
        .await;
    seen.error(&resume, "");
    seen.error(&anon.try_login("hans", password_of("hans")).await, "");
    seen.error(&anon.request(|id| ClientFrame::Who { id }).await, "");
    seen.error(&anon.request(register("rey")).await, "");
    for _ in 0..3 {
        seen.error(&anon.try_login("r2d2", "wrong").await, "");
    }
    seen.error(&anon.try_login("r2d2", password_of("r2d2")).await, "");
    let welcome = Client::connect(server.addr)
        .await
        .try_login("yoda", password_of("yoda"))
        .await;
    seen.text("`welcome`", message_of(&welcome), "");
    seen.error(&hans.try_login("hans", password_of("hans")).await, "");

    // Messages and blocks.
    seen.error(&hans.message("hans", "hi").await, "");
    seen.error(&hans.message("luke", "   ").await, "");
    seen.error(&hans.message("luke", &"x".repeat(4001)).await, "");
    let too_long_id = hans
        .request(|id| {
            ClientFrame::Send(SendRequest {
                id,
                to: "luke".into(),
                text: "hi".into(),
                client_id: Some("c".repeat(129)),
            })
        })
        .await;
    seen.error(&too_long_id, "");
    seen.text(
        "`ok` to `block`",
        message_of(&luke.block("vader").await),
        "vader",
    );
    seen.error(&vader.message("luke", "hi").await, "");
    seen.text(
        "`ok` to `broadcast`, when a user who blocks the sender was skipped",
        message_of(&vader.broadcast("hello").await),
        "",
    );
    seen.error(&luke.block("vader").await, "vader");
    seen.error(&luke.unblock("yoda").await, "yoda");
    seen.error(&luke.block("luke").await, "");
    seen.error(&luke.block("palpatine").await, "");

    // Private sessions.
    seen.error(&ask(&mut hans, "r2d2").await, "r2d2");
    seen.error(&ask(&mut hans, "hans").await, "");
    seen.error(&ask(&mut vader, "luke").await, "luke");
    seen.error(&accept(&mut luke, "hans").await, "hans");
    let _leia = login_without_peer_port(server.addr, "leia").await;
    seen.error(&ask(&mut hans, "leia").await, "leia");
    assert!(matches!(
        ask(&mut hans, "luke").await,
        ServerFrame::Ok { .. }
    ));
    seen.error(&ask(&mut hans, "luke").await, "luke");
    seen.text(
        "`ok` to `unblock`",
        message_of(&luke.unblock("vader").await),
        "vader",
    );

    // Malformed frames.
    luke.send_raw(b"garbage\n").await;
    seen.error(
        &luke
            .event_matching(|f| matches!(f, ServerFrame::Error { .. }))
            .await,
        "",
    );
    luke.send_raw(format!("{}\n", "x".repeat(70 * 1024)).as_bytes())
        .await;
    seen.error(
        &luke
            .event_matching(|f| matches!(f, ServerFrame::Error { .. }))
            .await,
        "",
    );
    let logout = hans
        .request(|id| ClientFrame::Logout {
            id,
            revoke_device: false,
        })
        .await;
    seen.text("`ok` to `logout`", message_of(&logout), "");

    // Registration, on servers with and without it.
    // Each server has a state directory (a database) of its own.
    let open_env = Env::new();
    let open = open_env.start(&["--allow-register"]);
    let mut client = Client::connect(open.addr).await;
    seen.error(&client.request(register("hans")).await, "");

    // Rate limits: wrong passwords, registrations.
    let limited_env = Env::new();
    let limited = limited_env.start(&[
        "--login-fail-rate",
        "1/h",
        "--allow-register",
        "--register-rate",
        "1/h",
    ]);
    let mut guesser = Client::connect(limited.addr).await;
    guesser.try_login("hans", "guess").await;
    seen.error(&guesser.try_login("luke", "guess").await, "");
    assert!(matches!(
        guesser.request(register("rey")).await,
        ServerFrame::Welcome { .. }
    ));
    let mut second = Client::connect(limited.addr).await;
    seen.error(&second.request(register("finn")).await, "");

    // A full offline queue.
    let full_env = Env::new();
    let full = full_env.start(&["--max-queued-messages", "1"]);
    let mut sender = Client::login(full.addr, "hans").await;
    assert!(matches!(
        sender.message("luke", "one").await,
        ServerFrame::Sent { queued: true, .. }
    ));
    seen.error(&sender.message("luke", "two").await, "luke");

    // Timers, and shutdown. The login timeout is short, so its client says
    // nothing at all (even a hello could come too late on a busy machine).
    let quick_env = Env::new();
    let quick = quick_env.start(&["--login-timeout-ms", "300"]);
    let mut silent = Client::connect_raw(quick.addr).await;
    seen.error(&silent.closed().await[0], "");
    let timed_env = Env::new();
    let mut timed = timed_env.start(&["--timeout", "1"]);
    let mut idle = Client::login(timed.addr, "hans").await;
    let frames = idle.closed().await;
    let logged_out = frames
        .iter()
        .find(|f| matches!(f, ServerFrame::LoggedOut { .. }))
        .expect("logged out for inactivity");
    seen.text("`logged_out` `timeout`", message_of(logged_out), "");
    let mut staying = Client::login(timed.addr, "luke").await;
    timed.signal("TERM");
    let frames = staying.closed().await;
    let logged_out = frames
        .iter()
        .find(|f| matches!(f, ServerFrame::LoggedOut { .. }))
        .expect("logged out at shutdown");
    seen.text("`logged_out` `shutdown`", message_of(logged_out), "");
    assert_eq!(timed.wait_exit(), Some(0));

    // Impractical to cause here: a failing store, a damaged one (see
    // tests/damage.rs, which damages a page and checks this text), and a
    // client slow enough to be dropped (see the test of its own below).
    seen.errors.push((
        ErrorCode::Internal.as_str().to_owned(),
        msg_server::texts::STORE_FAILED.to_owned(),
        "",
        None,
    ));
    seen.errors.push((
        ErrorCode::QueueUnreadable.as_str().to_owned(),
        msg_server::texts::QUEUE_UNREADABLE.to_owned(),
        "",
        None,
    ));
    seen.text(
        "`logged_out` `slow_consumer`",
        msg_server::texts::SLOW_CONSUMER_LOGOUT,
        "",
    );
    // Caused by `msg-server revoke` (tested in msg-cli's device_tokens).
    seen.text(
        "`logged_out` `revoked`",
        msg_server::texts::REVOKED_LOGOUT,
        "",
    );
    seen
}

#[tokio::test]
async fn every_text_in_the_document_is_what_the_server_sends() {
    let seen = observe_the_server().await;
    let documented = documented_errors();
    for (code, template) in &documented {
        let matched = seen
            .errors
            .iter()
            .any(|(c, message, user, secs)| c == code && *message == render(template, user, *secs));
        assert!(
            matched,
            "documented {code} {template:?}; the server sent {:?}",
            seen.errors
                .iter()
                .filter(|(c, ..)| c == code)
                .collect::<Vec<_>>()
        );
    }
    for (code, message, user, secs) in &seen.errors {
        let documented = documented
            .iter()
            .any(|(c, template)| c == code && *message == render(template, user, *secs));
        assert!(
            documented,
            "the server sent {code} {message:?}, not in the table"
        );
    }

    let documented = documented_texts();
    for (key, template) in &documented {
        let sent: Vec<_> = seen.texts.iter().filter(|(k, ..)| k == key).collect();
        assert!(!sent.is_empty(), "no case for the text of {key}");
        for (_, message, user) in sent {
            assert_eq!(*message, render(template, user, None), "the text of {key}");
        }
    }
    for (key, ..) in &seen.texts {
        assert!(
            documented.iter().any(|(k, _)| k == key),
            "{key} is not in the texts table"
        );
    }
}

// ---- the rules, against a real server ----------------------------------------

fn error_frame(id: Option<RequestId>, code: ErrorCode, message: &str) -> ServerFrame {
    ServerFrame::Error {
        id,
        code,
        message: message.into(),
        retry_after: None,
    }
}

#[tokio::test]
async fn the_first_frame_must_be_a_valid_hello() {
    let env = Env::new();
    let server = env.start(&[]);
    let oversized = format!("{}\n", "x".repeat(70 * 1024));
    let cases: [(&[u8], Option<RequestId>); 6] = [
        (b"{\"type\":\"ping\"}\n", None),
        (b"{\"type\":\"who\",\"id\":5}\n", Some(5)),
        (b"{\"type\":\"send\",\"id\":14,\"to\":5}\n", Some(14)),
        (b"{\"type\":\"hello\"}\n", None),
        (b"not json at all\n", None),
        (oversized.as_bytes(), None),
    ];
    let refused = |id| {
        error_frame(
            id,
            ErrorCode::HelloRequired,
            "Error. The first frame must be hello",
        )
    };
    for (bytes, id) in cases {
        let mut client = Client::connect_raw(server.addr).await;
        client.send_raw(bytes).await;
        assert_eq!(
            client.closed().await,
            [refused(id)],
            "for {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
        );
    }

    // After a valid hello, a second one is a bad frame; the connection stays.
    let mut client = Client::connect(server.addr).await;
    client
        .send(ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            agent: None,
        })
        .await;
    let error = client
        .event_matching(|f| matches!(f, ServerFrame::Error { .. }))
        .await;
    assert_eq!(
        error,
        error_frame(None, ErrorCode::InvalidCommand, "Error. Invalid command")
    );
    assert!(matches!(
        client.try_login("hans", password_of("hans")).await,
        ServerFrame::Welcome { .. }
    ));
}

#[tokio::test]
async fn errors_for_malformed_frames_echo_their_id() {
    let env = Env::new();
    let server = env.start(&[]);
    let invalid = |id| error_frame(id, ErrorCode::InvalidCommand, "Error. Invalid command");

    // Before login, and after: the id is echoed whenever it can be read.
    let mut anon = Client::connect(server.addr).await;
    anon.send_raw(b"{\"type\":\"login\",\"id\":1017,\"user\":\"hans\"}\n")
        .await;
    assert_eq!(anon.reply(1017).await, invalid(Some(1017)));

    let mut hans = Client::login(server.addr, "hans").await;
    hans.send_raw(b"{\"type\":\"send\",\"id\":1014,\"to\":5}\n")
        .await;
    assert_eq!(hans.reply(1014).await, invalid(Some(1014)));
    hans.send_raw(b"{\"type\":\"teleport\",\"id\":1016,\"to\":\"mars\"}\n")
        .await;
    assert_eq!(hans.reply(1016).await, invalid(Some(1016)));
    // An id that is not an unsigned integer cannot be echoed.
    hans.send_raw(b"{\"type\":\"who\",\"id\":\"1015\"}\n").await;
    let error = hans
        .event_matching(|f| matches!(f, ServerFrame::Error { .. }))
        .await;
    assert_eq!(error, invalid(None));
    assert_eq!(hans.who().await, Vec::<String>::new());
}

#[tokio::test]
async fn the_malformed_frame_count_is_per_connection_and_never_reset() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut hans = Client::login(server.addr, "hans").await;
    // Nine bad frames, each followed by a good request: still served.
    for _ in 0..9 {
        hans.send_raw(b"garbage\n").await;
        assert_eq!(hans.who().await, Vec::<String>::new());
    }
    // The tenth closes the connection, after its error.
    hans.send_raw(b"garbage\n").await;
    let frames = hans.closed().await;
    let errors = frames
        .iter()
        .filter(|f| matches!(f, ServerFrame::Error { .. }))
        .count();
    assert_eq!(errors, 10, "{frames:?}");
}

#[tokio::test]
async fn a_second_private_request_is_refused_while_the_first_is_pending() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut hans = Client::login(server.addr, "hans").await;
    let mut luke = Client::login(server.addr, "luke").await;
    assert!(matches!(
        ask(&mut hans, "luke").await,
        ServerFrame::Ok { .. }
    ));
    assert_eq!(
        error_of(&ask(&mut hans, "luke").await),
        (
            ErrorCode::PrivateRequestPending,
            "Error. A private messaging request to luke is already pending"
        )
    );
    // luke was asked once.
    luke.event_matching(|f| matches!(f, ServerFrame::PrivateRequest { .. }))
        .await;
    luke.who().await;
    assert!(
        luke.pending_event(|f| matches!(f, ServerFrame::PrivateRequest { .. }))
            .is_none()
    );
    // The other direction is a request of its own.
    assert!(matches!(
        ask(&mut luke, "hans").await,
        ServerFrame::Ok { .. }
    ));
    // Once answered, hans may ask again.
    let declined = luke
        .request(|id| {
            ClientFrame::PrivateDecline(UserRequest {
                id,
                user: "hans".into(),
            })
        })
        .await;
    assert!(matches!(declined, ServerFrame::Ok { .. }));
    assert!(matches!(
        ask(&mut hans, "luke").await,
        ServerFrame::Ok { .. }
    ));
}

#[tokio::test]
async fn private_end_is_always_ok_and_tells_the_peer_only_of_a_session() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut hans = Client::login(server.addr, "hans").await;
    let mut luke = Client::login(server.addr, "luke").await;
    let is_ended = |f: &ServerFrame| matches!(f, ServerFrame::PrivateEnded { .. });

    // No session: ok, and luke hears nothing.
    assert!(matches!(
        end_private(&mut hans, "luke").await,
        ServerFrame::Ok { message: None, .. }
    ));
    luke.who().await;
    assert!(luke.pending_event(is_ended).is_none());

    // A session: ok, and luke is told.
    ask(&mut hans, "luke").await;
    luke.event_matching(|f| matches!(f, ServerFrame::PrivateRequest { .. }))
        .await;
    accept(&mut luke, "hans").await;
    hans.event_matching(|f| matches!(f, ServerFrame::PrivateReady { .. }))
        .await;
    assert!(matches!(
        end_private(&mut hans, "luke").await,
        ServerFrame::Ok { message: None, .. }
    ));
    assert_eq!(
        luke.event_matching(is_ended).await,
        ServerFrame::PrivateEnded {
            peer: "hans".into(),
            reason: PrivateEndReason::Stopped
        }
    );
    // Ending it again (both sides may): ok, nobody told.
    assert!(matches!(
        end_private(&mut luke, "hans").await,
        ServerFrame::Ok { message: None, .. }
    ));
    hans.who().await;
    assert!(hans.pending_event(is_ended).is_none());
}

#[tokio::test]
async fn a_late_ack_deletes_the_stored_copy() {
    let env = Env::new();
    let server = env.start(&["--ack-timeout-ms", "300"]);
    let mut hans = Client::login(server.addr, "hans").await;
    let mut luke = Client::login(server.addr, "luke").await;
    luke.auto_ack = false;
    let mut delivered = Vec::new();
    for text in ["acked late", "never acked"] {
        let id = hans
            .submit(|id| {
                ClientFrame::Send(SendRequest {
                    id,
                    to: "luke".into(),
                    text: text.into(),
                    client_id: None,
                })
            })
            .await;
        let ServerFrame::Message { msg_id, .. } = luke.next_message().await else {
            unreachable!()
        };
        // Not acknowledged in time: stored, and hans is told so.
        assert!(matches!(
            hans.reply(id).await,
            ServerFrame::Sent { queued: true, .. }
        ));
        delivered.push(msg_id);
    }
    luke.ack(delivered[0]).await;
    luke.logout().await;
    // Only the message never acknowledged comes again.
    let mut luke = Client::login(server.addr, "luke").await;
    let again = luke.next_message().await;
    assert!(
        matches!(&again, ServerFrame::Message { msg_id, text, .. }
            if *msg_id == delivered[1] && text == "never acked"),
        "{again:?}"
    );
    luke.who().await;
    assert!(
        luke.pending_event(|f| matches!(f, ServerFrame::Message { .. }))
            .is_none()
    );
}

#[tokio::test]
async fn login_checks_come_in_the_documented_order() {
    let env = Env::new();
    let server = env.start(&["--block-duration", "600"]);
    let hans = Client::login(server.addr, "hans").await;
    let mut client = Client::connect(server.addr).await;
    // Three wrong passwords block r2d2.
    for _ in 0..3 {
        client.try_login("r2d2", "wrong").await;
    }
    let cases = [
        // The request's form first: username, then password.
        ("bad name", "", ErrorCode::InvalidUsername),
        ("palpatine", "", ErrorCode::InvalidPasswordFormat),
        ("r2d2", "", ErrorCode::InvalidPasswordFormat),
        ("hans", "", ErrorCode::InvalidPasswordFormat),
        // Then the account: unknown, blocked (whatever the password), a
        // session elsewhere (whatever the password), and only then the
        // password.
        ("palpatine", "pw", ErrorCode::InvalidUser),
        ("r2d2", "wrong", ErrorCode::LoginBlocked),
        ("r2d2", password_of("r2d2"), ErrorCode::LoginBlocked),
        ("hans", "wrong", ErrorCode::AlreadyLoggedIn),
        ("hans", password_of("hans"), ErrorCode::AlreadyLoggedIn),
        ("yoda", "wrong", ErrorCode::InvalidPassword),
    ];
    for (user, password, code) in cases {
        let reply = client.try_login(user, password).await;
        assert_eq!(error_of(&reply).0, code, "{user:?} / {password:?}");
    }
    // A wrong password for a user logged in elsewhere is not counted:
    // hans is not blocked after three.
    for _ in 0..3 {
        let reply = client.try_login("hans", "wrong").await;
        assert_eq!(error_of(&reply).0, ErrorCode::AlreadyLoggedIn);
    }
    // Form errors are not failed logins: yoda (one failure so far) is not
    // blocked after three more.
    for _ in 0..3 {
        let reply = client.try_login("yoda", "").await;
        assert_eq!(error_of(&reply).0, ErrorCode::InvalidPasswordFormat);
    }
    assert!(matches!(
        client.try_login("yoda", password_of("yoda")).await,
        ServerFrame::Welcome { .. }
    ));
    hans.logout().await;
    assert!(matches!(
        Client::connect(server.addr)
            .await
            .try_login("hans", password_of("hans"))
            .await,
        ServerFrame::Welcome { .. }
    ));
}

#[tokio::test]
async fn private_ready_gives_an_ipv6_address_in_brackets() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    }
    let env = Env::new();
    let server = env.start_bound("::1", &[]);
    let mut hans = Client::login(server.addr, "hans").await;
    let mut luke = Client::login(server.addr, "luke").await;
    ask(&mut hans, "luke").await;
    luke.event_matching(|f| matches!(f, ServerFrame::PrivateRequest { .. }))
        .await;
    accept(&mut luke, "hans").await;
    let ready = hans
        .event_matching(|f| matches!(f, ServerFrame::PrivateReady { .. }))
        .await;
    let ServerFrame::PrivateReady { addr, .. } = ready else {
        unreachable!()
    };
    // The test client advertises peer port 40000.
    assert_eq!(addr.as_deref(), Some("[::1]:40000"));
}

#[tokio::test]
async fn a_client_that_does_not_read_is_told_why_it_is_dropped() {
    let env = Env::new();
    // The notice comes after everything luke has not read (megabytes in the
    // socket buffers): give luke all the time it needs to read them.
    let server = env.start(&["--max-rate", "0", "--close-grace-ms", "60000"]);
    let mut yoda = Client::login(server.addr, "yoda").await;
    // luke logs in and then stops reading.
    let mut luke = Client::login_with_small_buffer(server.addr, "luke").await;
    // Big broadcasts fill the socket buffers, then luke's queue, quickly.
    let big = "b".repeat(4000);
    let started = std::time::Instant::now();
    while yoda.pending_event(is_presence("luke", false)).is_none() {
        assert!(started.elapsed() < DEADLINE * 6, "luke was never dropped");
        for _ in 0..20 {
            yoda.broadcast(&big).await;
        }
    }
    let frames = luke.closed().await;
    let doc_text = documented_texts()
        .into_iter()
        .find(|(key, _)| *key == "`logged_out` `slow_consumer`")
        .expect("documented")
        .1;
    assert_eq!(
        frames.last(),
        Some(&ServerFrame::LoggedOut {
            reason: LogoutReason::SlowConsumer,
            message: doc_text.into()
        }),
        "the last of {} frames",
        frames.len()
    );
}

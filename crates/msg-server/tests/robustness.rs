//! Bad input, timeouts, signals and the command line.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use msg_proto::ErrorCode;
use msg_proto::server::{ClientFrame, ServerFrame};

#[tokio::test]
async fn bad_frames_get_error_frames_and_do_not_disturb_others() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut hans = Client::login(server.addr, "hans").await;
    let mut luke = Client::login(server.addr, "luke").await;

    let oversized = format!(
        "{{\"type\":\"who\",\"id\":1,\"pad\":\"{}\"}}\n",
        "x".repeat(70 * 1024)
    );
    // Ids far from the client's own, which count from 1.
    let cases: [(&[u8], ErrorCode, Option<u64>); 5] = [
        (oversized.as_bytes(), ErrorCode::FrameTooLarge, None),
        (b"this is not json\n", ErrorCode::InvalidCommand, None),
        (
            b"{\"type\":\"who\",\"id\":\xff\xfe}\n",
            ErrorCode::InvalidCommand,
            None,
        ),
        (
            b"{\"type\":\"teleport\",\"id\":9003}\n",
            ErrorCode::InvalidCommand,
            Some(9003),
        ),
        (
            b"{\"type\":\"send\",\"id\":9004}\n",
            ErrorCode::InvalidCommand,
            Some(9004),
        ),
    ];
    for (bytes, code, id) in cases {
        luke.send_raw(bytes).await;
        let frame = match id {
            // A readable id is echoed, so the error is that request's reply.
            Some(id) => luke.reply(id).await,
            // Presence notices may arrive in between; the error frame is what counts.
            None => {
                luke.event_matching(|f| matches!(f, ServerFrame::Error { .. }))
                    .await
            }
        };
        assert_eq!(
            error_of(&frame).0,
            code,
            "for {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
        );
        // The connection carries on.
        assert_eq!(luke.who().await, ["hans"]);
    }
    assert_eq!(hans.who().await, ["luke"]);

    // Repeated abuse closes the connection; the others carry on.
    // The server may close before the last of them is written.
    for _ in 0..10 {
        if luke.try_send_raw(b"garbage\n").await.is_err() {
            break;
        }
    }
    let frames = luke.closed().await;
    assert!(
        frames
            .iter()
            .all(|f| matches!(f, ServerFrame::Error { .. })),
        "{frames:?}"
    );
    hans.event_matching(is_presence("luke", false)).await;
    assert_eq!(hans.who().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_connection_must_greet_and_log_in_in_time() {
    let env = Env::new();
    // Long enough for a loaded machine to greet and log in well within it.
    const LOGIN_TIMEOUT: Duration = Duration::from_millis(1500);
    let server = env.start(&["--login-timeout-ms", &LOGIN_TIMEOUT.as_millis().to_string()]);

    // Silent connection: closed after the login timeout.
    let mut silent = Client::connect_raw(server.addr).await;
    let frames = silent.closed().await;
    assert!(
        matches!(
            frames.as_slice(),
            [ServerFrame::Error {
                code: ErrorCode::NotLoggedIn,
                ..
            }]
        ),
        "{frames:?}"
    );

    // Greeted but never logged in: same.
    let mut idle = Client::connect(server.addr).await;
    idle.closed().await;

    // Commands before login are refused; a frame before hello ends it.
    let mut early = Client::connect(server.addr).await;
    let reply = early.request(|id| ClientFrame::Who { id }).await;
    assert_eq!(error_of(&reply).0, ErrorCode::NotLoggedIn);
    let mut rude = Client::connect_raw(server.addr).await;
    rude.send(ClientFrame::Who { id: 1 }).await;
    let frames = rude.closed().await;
    assert!(
        matches!(
            frames.as_slice(),
            [ServerFrame::Error {
                code: ErrorCode::HelloRequired,
                ..
            }]
        ),
        "{frames:?}"
    );

    // A logged-in session is not subject to the login timeout.
    let connecting = tokio::time::Instant::now();
    let mut hans = Client::login(server.addr, "hans").await;
    tokio::time::sleep_until(connecting + LOGIN_TIMEOUT * 3 / 2).await;
    assert_eq!(hans.who().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_version_mismatch_is_a_clear_error() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut client = Client::connect_raw(server.addr).await;
    client
        .send(ClientFrame::Hello {
            version: 99,
            agent: None,
        })
        .await;
    let frames = client.closed().await;
    let [ServerFrame::Error { code, message, .. }] = frames.as_slice() else {
        panic!("{frames:?}")
    };
    assert_eq!(*code, ErrorCode::VersionMismatch);
    assert!(message.contains("99") && message.contains('1'), "{message}");
}

#[tokio::test]
async fn a_silent_connection_is_dropped_even_while_logged_in() {
    let env = Env::new();
    // hans's loop below speaks every ~100 ms; the timeout leaves a loaded
    // machine plenty of slack for him.
    let server = env.start(&["--dead-timeout-ms", "1500", "--timeout", "0"]);
    let mut hans = Client::login(server.addr, "hans").await;
    let mut luke = Client::login(server.addr, "luke").await;
    // hans keeps pinging (alive, though not active); luke goes silent.
    let started = std::time::Instant::now();
    loop {
        assert!(started.elapsed() < DEADLINE, "luke was never dropped");
        hans.request(|id| ClientFrame::Who { id }).await;
        hans.send(ClientFrame::Ping).await;
        if hans.pending_event(is_presence("luke", false)).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    luke.closed().await;
}

#[cfg(unix)] // signals
#[tokio::test]
async fn sigterm_tells_clients_and_exits_zero() {
    let env = Env::new();
    let mut server = env.start(&[]);
    let mut hans = Client::login(server.addr, "hans").await;
    server.signal("TERM");
    let frames = hans.closed().await;
    assert!(
        frames.iter().any(|f| matches!(
            f,
            ServerFrame::LoggedOut {
                reason: msg_proto::server::LogoutReason::Shutdown,
                ..
            }
        )),
        "{frames:?}"
    );
    assert_eq!(server.wait_exit(), Some(0));
}

#[cfg(unix)]
#[tokio::test]
async fn it_tells_systemd_when_it_is_ready() {
    let env = Env::new();
    let socket_path = env.dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let server = env.start_with_env(
        &[],
        &[("NOTIFY_SOCKET", socket_path.to_str().expect("utf-8"))],
    );
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("a READY notification");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
    // It is really ready: a client can log in straight away.
    Client::login(server.addr, "hans").await;
}

/// Runs `msg-server` with arguments that must make it exit at once.
fn run_to_exit(env: &Env, args: &[&str]) -> std::process::Output {
    ChildGuard::spawn(
        Command::new(server_bin())
            .args(args)
            .current_dir(env.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .wait_output(DEADLINE)
}

#[test]
fn bad_command_lines_exit_2_with_a_clear_error() {
    let env = Env::new();
    let cases: &[(&[&str], &str)] = &[
        (&["abc", "10", "10"], "invalid value 'abc'"),
        (&["4747", "-5", "10"], "BLOCK_DURATION"),
        (&["4747", "0", "10"], "BLOCK_DURATION"),
        (&["99999", "10", "10"], "PORT"),
        (
            &["--port", "4747", "4747", "10", "10"],
            "cannot be used with",
        ),
        (&["--timeout", "soon"], "invalid value 'soon'"),
        (&["--bind", "not-an-ip"], "invalid value 'not-an-ip'"),
        (
            &["--credentials", "missing.txt", "--port", "0"],
            "cannot read the credentials file",
        ),
        (&["--frobnicate"], "unexpected argument"),
    ];
    for (args, expected) in cases {
        let output = run_to_exit(&env, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in {stderr}"
        );
    }
}

#[test]
fn the_classic_positional_form_starts_the_server() {
    let env = Env::new();
    let state = env.state_dir();
    let args: Vec<String> = ["0", "5", "0", "--bind", "127.0.0.1", "--state-dir"]
        .iter()
        .map(|s| s.to_string())
        .chain([state.display().to_string()])
        .collect();
    // Default --credentials is ./credentials.txt, which Env wrote.
    let server = Server::spawn(&args, env.dir.path());
    assert!(server.addr.port() > 0);
    let help = run_to_exit(&env, &["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--port",
        "--block-duration",
        "--timeout",
        "--bind",
        "--credentials",
        "--state-dir",
        "--allow-register",
        "passwd",
    ] {
        assert!(help.contains(flag), "--help mentions {flag}");
    }
}

#[tokio::test]
async fn a_client_over_its_frame_rate_is_slowed_not_refused() {
    let env = Env::new();
    let server = env.start(&["--max-rate", "10"]);
    let mut hans = Client::login(server.addr, "hans").await;
    let started = std::time::Instant::now();
    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(hans.submit(|id| ClientFrame::Who { id }).await);
    }
    for id in ids {
        let reply = hans.reply(id).await;
        assert!(matches!(reply, ServerFrame::Users { .. }), "{reply:?}");
    }
    // At most a one-second burst (10) goes through at once; the other 20
    // frames are read at 10 a second.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1500), "{elapsed:?}");
}

#[tokio::test]
async fn a_panicking_connection_task_still_ends_its_session() {
    let env = Env::new();
    // A debug-build test hook: this text makes the sender's task panic.
    let server = env.start(&["--panic-on-text", "boom"]);
    let mut hans = Client::login(server.addr, "hans").await;
    let mut luke = Client::login(server.addr, "luke").await;
    hans.submit(send_to("luke", "boom")).await;
    hans.closed().await;
    luke.event_matching(is_presence("hans", false)).await;
    assert_eq!(luke.who().await, Vec::<String>::new());
    // hans can come back: the session did not outlive its task.
    Client::login(server.addr, "hans").await;
    assert!(server.log().contains("test hook"));
}

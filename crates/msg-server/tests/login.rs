//! Accounts and login: lockout, duplicates, registration, passwd, reload.

mod common;

use std::time::Duration;

use common::*;
use msg_proto::ErrorCode;
use msg_proto::server::{ClientFrame, LoginRequest, ServerFrame};

#[tokio::test]
async fn three_failures_across_connections_block_the_account_until_the_duration_passes() {
    let env = Env::new();
    let server = env.start(&["--block-duration", "2"]);
    let mut first = Client::connect(server.addr).await;
    let mut second = Client::connect(server.addr).await;

    let reply = first.try_login("hans", "wrong").await;
    assert_eq!(
        error_of(&reply),
        (
            ErrorCode::InvalidPassword,
            "Invalid Password. Please try again"
        )
    );
    let reply = second.try_login("hans", "wrong again").await;
    assert_eq!(error_of(&reply).0, ErrorCode::InvalidPassword);
    // The block starts after this instant, whatever the reply's delay.
    let before_block = std::time::Instant::now();
    let reply = first.try_login("hans", "still wrong").await;
    assert_eq!(
        error_of(&reply),
        (
            ErrorCode::AccountBlocked,
            "Invalid Password. Your account has been blocked. Please try again later"
        )
    );

    // Even the right password, from a new connection, is refused during the block.
    let mut third = Client::connect(server.addr).await;
    let reply = third.try_login("hans", "falcon*solo").await;
    assert_eq!(
        error_of(&reply),
        (
            ErrorCode::LoginBlocked,
            "Your account is blocked due to multiple login failures. Please try again later"
        )
    );
    // Other accounts are unaffected.
    Client::login(server.addr, "luke").await;

    // After the duration the right password works again.
    eventually("the block to end", async || {
        let mut client = Client::connect(server.addr).await;
        matches!(
            client.try_login("hans", "falcon*solo").await,
            ServerFrame::Welcome { .. }
        )
    })
    .await;
    assert!(
        before_block.elapsed() >= Duration::from_millis(1900),
        "block ended early"
    );
}

#[tokio::test]
async fn a_successful_login_resets_the_failure_count() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut client = Client::connect(server.addr).await;
    for _ in 0..2 {
        assert_eq!(
            error_of(&client.try_login("yoda", "x").await).0,
            ErrorCode::InvalidPassword
        );
    }
    assert!(matches!(
        client.try_login("yoda", "wise@!man").await,
        ServerFrame::Welcome { .. }
    ));
    client.logout().await;
    let mut client = Client::connect(server.addr).await;
    for _ in 0..2 {
        assert_eq!(
            error_of(&client.try_login("yoda", "x").await).0,
            ErrorCode::InvalidPassword
        );
    }
}

#[tokio::test]
async fn a_login_block_survives_a_server_restart() {
    let env = Env::new();
    let server = env.start(&["--block-duration", "600"]);
    let mut client = Client::connect(server.addr).await;
    for _ in 0..3 {
        client.try_login("vader", "nope").await;
    }
    server.kill9();
    let server = env.start(&["--block-duration", "600"]);
    let mut client = Client::connect(server.addr).await;
    let reply = client.try_login("vader", "sithlord**").await;
    assert_eq!(error_of(&reply).0, ErrorCode::LoginBlocked);
}

#[tokio::test]
async fn unknown_users_and_duplicate_logins_are_refused() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut client = Client::connect(server.addr).await;
    let reply = client.try_login("palpatine", "x").await;
    assert_eq!(
        error_of(&reply),
        (ErrorCode::InvalidUser, "Error. Invalid user")
    );

    let _hans = Client::login(server.addr, "hans").await;
    let reply = client.try_login("hans", "falcon*solo").await;
    assert_eq!(
        error_of(&reply),
        (ErrorCode::AlreadyLoggedIn, "This user is already logged in")
    );
}

#[tokio::test]
async fn registration_is_off_by_default() {
    let env = Env::new();
    let server = env.start(&[]);
    let mut client = Client::connect(server.addr).await;
    let reply = client
        .request(|id| {
            ClientFrame::Register(LoginRequest {
                id,
                user: "rey".into(),
                password: "jakku".into(),
                peer_port: None,
                peer_key: None,
                device: None,
            })
        })
        .await;
    assert_eq!(error_of(&reply).0, ErrorCode::RegistrationDisabled);
    assert!(
        !std::fs::read_to_string(env.credentials())
            .unwrap()
            .contains("rey")
    );
}

#[tokio::test]
async fn registration_appends_a_hashed_account_and_logs_in() {
    let env = Env::new();
    let server = env.start(&["--allow-register"]);
    let mut client = Client::connect(server.addr).await;
    let reply = client.request(register("bad name", "pw")).await;
    assert_eq!(error_of(&reply).0, ErrorCode::InvalidUsername);
    let reply = client.request(register("hans", "pw")).await;
    assert_eq!(error_of(&reply).0, ErrorCode::UserExists);
    // Names are unique ignoring case, and must not look like flags or paths.
    let reply = client.request(register("HANS", "pw")).await;
    assert_eq!(error_of(&reply).0, ErrorCode::UserExists);
    for name in ["-v", "--help", ".."] {
        let reply = client.request(register(name, "pw")).await;
        assert_eq!(error_of(&reply).0, ErrorCode::InvalidUsername, "{name}");
    }
    let reply = client.request(register("rey", "jakku sands")).await;
    assert!(
        matches!(reply, ServerFrame::Welcome { ref user, .. } if user == "rey"),
        "{reply:?}"
    );

    let text = std::fs::read_to_string(env.credentials()).unwrap();
    assert!(
        text.starts_with("# test accounts\nhans falcon*solo\n"),
        "other lines kept: {text}"
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("rey "))
        .expect("rey added");
    assert!(line.starts_with("rey $argon2id$"), "{line}");
    assert!(!text.contains("jakku"));

    client.logout().await;
    let mut client = Client::connect(server.addr).await;
    assert!(matches!(
        client.try_login("rey", "jakku sands").await,
        ServerFrame::Welcome { .. }
    ));
}

#[tokio::test]
async fn passwd_changes_a_password_that_the_running_server_picks_up() {
    let env = Env::new();
    let server = env.start(&[]);
    let output = passwd(&env, "hans", "new falcon\n");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "Changed the password of hans"
    );
    let text = std::fs::read_to_string(env.credentials()).unwrap();
    assert!(
        text.starts_with("# test accounts\nhans $argon2id$"),
        "{text}"
    );
    assert!(text.contains("yoda wise@!man"));

    // The server notices the change without a restart. (Polling with logins
    // would trip the lockout, so wait for the reload itself.)
    eventually("the server to reload the credentials", async || {
        server.log().contains("credentials file changed; reloaded")
    })
    .await;
    let mut client = Client::connect(server.addr).await;
    assert_eq!(
        error_of(&client.try_login("hans", "falcon*solo").await).0,
        ErrorCode::InvalidPassword
    );
    assert!(matches!(
        client.try_login("hans", "new falcon").await,
        ServerFrame::Welcome { .. }
    ));

    let output = passwd(&env, "finn", "fn2187\n");
    assert!(output.status.success());
    eventually("the new account to exist", async || {
        let mut client = Client::connect(server.addr).await;
        matches!(
            client.try_login("finn", "fn2187").await,
            ServerFrame::Welcome { .. }
        )
    })
    .await;
}

#[tokio::test]
async fn passwd_refuses_bad_input_without_touching_the_file() {
    let env = Env::new();
    let before = std::fs::read_to_string(env.credentials()).unwrap();
    let output = passwd(&env, "bad/name", "pw\n");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid username"));
    let output = passwd(&env, "hans", "\n");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid password"));
    assert_eq!(std::fs::read_to_string(env.credentials()).unwrap(), before);
}

#[tokio::test]
async fn inactivity_logs_out_with_a_notice_and_pings_do_not_count() {
    let env = Env::new();
    let server = env.start(&["--timeout", "2"]);
    // hans's last user command (his login) comes after this instant.
    let before_login = std::time::Instant::now();
    let mut hans = Client::login(server.addr, "hans").await;
    let mut luke = Client::login(server.addr, "luke").await;

    // hans only pings; luke keeps issuing commands.
    let mut logged_out = None;
    while logged_out.is_none() {
        assert!(
            before_login.elapsed() < DEADLINE,
            "hans was never logged out"
        );
        hans.send(ClientFrame::Ping).await;
        luke.who().await;
        if let Some(frame) = luke.pending_event(is_presence("hans", false)) {
            logged_out = Some(frame);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(before_login.elapsed() >= Duration::from_millis(1900));
    let frames = hans.closed().await;
    assert!(
        frames.iter().any(|f| matches!(f,
            ServerFrame::LoggedOut { reason: msg_proto::server::LogoutReason::Timeout, message }
                if message == "You have been logged out due to inactivity")),
        "{frames:?}"
    );
    assert_eq!(luke.who().await, Vec::<String>::new());
}

#[cfg(unix)] // signals
#[tokio::test]
async fn sighup_reloads_the_credentials() {
    let env = Env::new();
    let server = env.start(&[]);
    server.signal("HUP");
    eventually("the SIGHUP reload", async || {
        server.log().contains("SIGHUP: credentials reloaded")
    })
    .await;
    // Still serving after the reload.
    Client::login(server.addr, "yoda").await;
}

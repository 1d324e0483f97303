//! The server's files: private whatever the umask, one server per state
//! directory, a default directory per port, and clear errors about the
//! credentials file.
#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use msg_proto::server::{ClientFrame, LoginRequest, ServerFrame};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
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

/// Checks that the state directory and the database files are the
/// owner's alone.
fn assert_private(state: &Path) {
    assert_eq!(mode(state), 0o700, "the state directory");
    for name in ["msg.db", "msg.db-wal", "msg.db-shm"] {
        let path = state.join(name);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{name}");
        }
    }
}

#[tokio::test]
async fn the_state_directory_and_database_are_private_whatever_the_umask() {
    let env = Env::new();
    let state = env.state_dir();
    // The tests run with the usual umask (022), which leaves new files
    // readable by everyone unless the server says otherwise.
    let mut server = env.start(&[]);
    let mut hans = Client::login(server.addr, "hans").await;
    assert!(matches!(
        hans.message("luke", "secret").await,
        ServerFrame::Sent { queued: true, .. }
    ));
    assert!(state.join("msg.db-wal").exists());
    assert_private(&state);
    server.signal("TERM");
    assert_eq!(server.wait_exit(), Some(0));

    // Files left world-readable (an older server, a copy) are tightened.
    set_mode(&state, 0o755);
    std::fs::write(state.join("msg.db-wal"), b"").expect("a WAL file");
    for name in ["msg.db", "msg.db-wal"] {
        set_mode(&state.join(name), 0o644);
    }
    let server = env.start(&[]);
    assert_private(&state);
    Client::login(server.addr, "luke").await;
}

#[tokio::test]
async fn a_second_server_on_the_same_state_directory_is_refused() {
    let env = Env::new();
    let _first = env.start(&[]);
    let state = env.state_dir();
    let output = run_to_exit(
        &env,
        &[
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--state-dir",
            state.to_str().expect("utf-8"),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&state.display().to_string()), "{stderr}");
    assert!(stderr.contains("--state-dir"), "{stderr}");
}

#[test]
fn a_missing_credentials_file_is_named() {
    let env = Env::new();
    let output = run_to_exit(&env, &["--credentials", "nowhere/creds.txt", "--port", "0"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("nowhere/creds.txt"), "{stderr}");
}

#[tokio::test]
async fn with_registration_a_missing_credentials_file_is_created() {
    let env = Env::new();
    std::fs::remove_file(env.credentials()).expect("no credentials");
    let server = env.start(&["--allow-register"]);
    assert_eq!(std::fs::read(env.credentials()).expect("created"), b"");
    assert_eq!(mode(&env.credentials()), 0o600);
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
    assert!(matches!(reply, ServerFrame::Welcome { .. }), "{reply:?}");
}

#[test]
fn the_default_state_directory_is_per_port_and_help_shows_the_default_port() {
    let env = Env::new();
    let home = env.dir.path().join("home");
    std::fs::create_dir(&home).expect("home");
    let mut child = ChildGuard::spawn(
        Command::new(server_bin())
            .args(["--port", "0", "--bind", "127.0.0.1", "--credentials"])
            .arg(env.credentials())
            .env("HOME", &home)
            .env_remove("XDG_DATA_HOME")
            .env_remove("STATE_DIRECTORY")
            .current_dir(env.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.child().stdout.as_mut().expect("stdout")),
        &mut line,
    )
    .expect("the listening line");
    assert!(line.starts_with("msg-server listening on"), "{line}");
    let state = home.join(".local/share/msg-server/0");
    assert!(state.join("msg.db").exists(), "{}", state.display());
    assert_private(&state);
    drop(child);

    let help = run_to_exit(&env, &["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("[default: 4747]"), "{help}");
}

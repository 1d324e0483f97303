//! What must survive: daemon crashes, stale sockets, a second daemon, server
//! restarts, and other users knocking on the socket.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn kill_9_of_msgd_loses_nothing_and_its_stale_socket_is_replaced() {
    let server = Server::start();
    let [hans, luke] = <[User; 2]>::try_from(online(&server, &["hans", "luke"]))
        .ok()
        .unwrap();
    // `send` returns once luke's daemon acked, i.e. after it stored the message.
    hans.msg(&["send", "luke", "do not lose me"]).ok();
    luke.kill_daemon();
    let socket = luke.runtime_dir().join("msgd.sock");
    assert!(socket.exists(), "kill -9 leaves the socket file behind");
    let status = luke.msg(&["status"]);
    assert_eq!(
        status.code, 4,
        "a stale socket is not a running daemon: {status:?}"
    );

    assert_eq!(luke.msg(&["daemon", "start"]).ok().out(), "msgd started");
    let inbox = luke.msg(&["inbox"]);
    assert!(
        inbox.ok().out().ends_with("hans: do not lose me"),
        "{inbox:?}"
    );
}

#[test]
fn a_second_daemon_for_the_same_directory_refuses() {
    let server = Server::start();
    let hans = User::new("hans", &server);
    hans.msg(&["daemon", "start"]).ok();
    let pid = hans.daemon_pid();
    let mut second = assert_cmd::Command::from_std(hans.command(&bins().msgd));
    let out = second
        .arg("--no-notify")
        .timeout(DEADLINE)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("msgd is already running for this user"),
        "{stderr}"
    );
    assert_eq!(hans.daemon_pid(), pid, "the first one still answers");
}

#[test]
fn a_server_restart_is_survived_by_reconnecting() {
    let mut server = Server::start();
    let [hans, luke] = <[User; 2]>::try_from(online(&server, &["hans", "luke"]))
        .ok()
        .unwrap();
    server.restart();
    // Both daemons log in again by themselves; then hans sees luke again.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let who = hans.msg(&["who"]);
        if who.code == 0 && who.out() == "luke" {
            break;
        }
        assert!(Instant::now() < deadline, "never reconnected: {who:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(hans.status()["state"], "online");
    hans.msg(&["send", "luke", "still here"]).ok();
    let inbox = luke.msg(&["inbox"]);
    assert!(inbox.ok().out().ends_with("hans: still here"), "{inbox:?}");
}

#[cfg(unix)]
#[test]
fn another_user_cannot_use_the_socket() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;

    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: the peer-credential check is covered by msgd's unit tests");
        return;
    }
    // Another user must be able to reach the binaries: not so when the
    // checkout sits in a private directory (`mktemp -d` makes it 0700).
    let mut version = std::process::Command::new(&bins().msg);
    version.arg("--version").uid(65534).gid(65534);
    let reachable = assert_cmd::Command::from_std(version)
        .timeout(DEADLINE)
        .output();
    if let Err(e) = reachable {
        eprintln!(
            "skipped: user nobody cannot run {}: {e}",
            bins().msg.display()
        );
        return;
    }
    let server = Server::start();
    let hans = User::new("hans", &server);
    hans.login().ok();
    let as_nobody = || {
        let mut cmd = hans.command(&bins().msg);
        cmd.arg("who").uid(65534).gid(65534);
        let out = assert_cmd::Command::from_std(cmd)
            .timeout(DEADLINE)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim_end().to_owned(),
        )
    };
    // Another user's runtime dir is refused by `msg` itself, with its path.
    let dir = hans.runtime_dir().display().to_string();
    let refused = format!("Refusing to use {dir}: it belongs to uid 0");
    let (code, stderr) = as_nobody();
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.starts_with(&refused), "{stderr}");

    // Even with the file modes opened up (msgd itself would refuse the
    // caller's uid too: its unit tests check that).
    let open = |path: &std::path::Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    open(hans.dir.path(), 0o755);
    open(&hans.runtime_dir(), 0o777);
    open(&hans.runtime_dir().join("msgd.sock"), 0o777);
    let (code, stderr) = as_nobody();
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.starts_with(&refused), "{stderr}");
    open(hans.dir.path(), 0o700);
    open(&hans.runtime_dir(), 0o700);
    assert_eq!(hans.msg(&["who"]).code, 0, "the owner still gets in");
}

#[test]
fn every_control_connection_starts_with_a_version_handshake() {
    use futures::{SinkExt, StreamExt};
    use msg_proto::control::{CONTROL_VERSION, Reply, Request};
    use tokio_util::codec::Framed;

    let server = Server::start();
    let hans = User::new("hans", &server);
    hans.msg(&["daemon", "start"]).ok();
    let paths = msg_local::paths::Paths {
        runtime_dir: hans.runtime_dir(),
        data_dir: hans.data_dir(),
        config_file: hans.dir.path().join("unused.toml"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let first = |request: Request| {
            let paths = paths.clone();
            async move {
                let stream = msg_local::socket::connect(&paths).await.unwrap();
                let mut conn = Framed::new(stream, msg_proto::JsonLines::<Reply, Request>::new());
                conn.send(request).await.unwrap();
                let reply = tokio::time::timeout(DEADLINE, conn.next()).await.unwrap();
                reply.unwrap().unwrap().unwrap()
            }
        };
        match first(Request::Hello {
            version: CONTROL_VERSION + 1,
        })
        .await
        {
            Reply::Error { code, message, .. } => {
                assert_eq!(code, "version_mismatch");
                assert!(message.contains("msg daemon stop"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        match first(Request::Status).await {
            Reply::Error { code, .. } => assert_eq!(code, "invalid_command"),
            other => panic!("{other:?}"),
        }
        match first(Request::Hello {
            version: CONTROL_VERSION,
        })
        .await
        {
            Reply::Hello { version, .. } => assert_eq!(version, CONTROL_VERSION),
            other => panic!("{other:?}"),
        }
    });
}

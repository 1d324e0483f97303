//! `msg` hands nothing (least of all a password) to a control socket that is
//! not its own user's msgd: another local user who owns the runtime dir, or
//! whose process listens on the socket, is refused with an error naming the
//! path, before a byte is sent.
#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{ChildGuard, DEADLINE, Server, User, bins};

const NOBODY: u32 = 65534;

/// Whether this test can play two users (root can run a process as nobody).
fn can_play_another_user() -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: not root, cannot run a process as another user");
        return false;
    }
    true
}

/// The trap another local user could plant in a shared place: a fake msgd,
/// run by user nobody, that answers like msgd (hello, logged out, then
/// "Welcome" to anything) and records everything it is sent in `record`. (Python, so that it can be
/// anything at all; the test is skipped without python3.)
const FAKE_MSGD: &str = r#"
import os, socket, sys
path, record = sys.argv[1], sys.argv[2]
os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
os.chmod(path, 0o666)
server.listen(8)
while True:
    conn, _ = server.accept()
    data = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        with open(record, "ab") as f:
            f.write(chunk)
        data += chunk
        while b"\n" in data:
            line, data = data.split(b"\n", 1)
            if b'"hello"' in line:
                reply = b'{"type":"hello","version":1,"daemon":"msgd 0.1.0"}'
            elif b'"status"' in line:
                reply = b'{"type":"status","pid":1,"state":"logged_out","unread":0}'
            else:
                reply = b'{"type":"done","message":"Welcome"}'
            conn.sendall(reply + b"\n")
    conn.close()
"#;

fn fake_msgd(socket: &Path, record: &Path) -> Option<ChildGuard> {
    let child = std::process::Command::new("python3")
        .args(["-c", FAKE_MSGD])
        .arg(socket)
        .arg(record)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .uid(NOBODY)
        .gid(NOBODY)
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) => {
            eprintln!("SKIPPED: no python3 to play the fake daemon: {e}");
            return None;
        }
    };
    let guard = ChildGuard(child);
    let deadline = Instant::now() + DEADLINE;
    while !socket.exists() {
        assert!(Instant::now() < deadline, "the fake msgd never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(guard)
}

#[test]
fn a_socket_planted_by_another_user_never_gets_the_password() {
    if !can_play_another_user() {
        return;
    }
    let server = Server::start();
    let hans = User::new("hans", &server);
    // A shared place both users can reach, like /tmp.
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let planted = shared.path().join("msg");
    let record = shared.path().join("received");
    let Some(_trap) = fake_msgd(&planted.join("msgd.sock"), &record) else {
        return;
    };

    let login = |runtime_dir: &Path| {
        let mut cmd = hans.command(&bins().msg);
        cmd.env("MSG_RUNTIME_DIR", runtime_dir)
            .args(["login", "hans", "--password-stdin"]);
        let out = assert_cmd::Command::from_std(cmd)
            .write_stdin("falcon*solo\n")
            .timeout(DEADLINE)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim_end().to_owned(),
        )
    };

    let nothing_received = || {
        let received = std::fs::read(&record).unwrap_or_default();
        assert!(
            received.is_empty(),
            "{}",
            String::from_utf8_lossy(&received)
        );
    };

    // The directory is nobody's: refused before connecting.
    let (code, stderr) = login(&planted);
    nothing_received();
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "Refusing to use {}: it belongs to uid {NOBODY}",
            planted.display()
        )),
        "{stderr}"
    );

    // Files handed over to hans (as a trap might arrange), but the process
    // listening is still nobody's: the peer credentials give it away, and
    // the connection is dropped before anything is sent.
    let socket = planted.join("msgd.sock");
    std::os::unix::fs::chown(&planted, Some(0), Some(0)).unwrap();
    std::os::unix::fs::chown(&socket, Some(0), Some(0)).unwrap();
    let (code, stderr) = login(&planted);
    nothing_received();
    assert_eq!(code, Some(4), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "Refusing to talk to {}: the process listening there runs as uid {NOBODY}, not as you (uid 0)",
            socket.display()
        )
    );
}

#[test]
fn a_runtime_dir_others_can_write_is_refused() {
    let server = Server::start();
    let hans = User::new("hans", &server);
    assert_eq!(hans.login().code, 0);
    let dir = hans.runtime_dir();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = hans.msg(&["who"]);
    assert_eq!(out.code, 4, "{out:?}");
    assert_eq!(
        out.stderr.trim_end(),
        format!(
            "Refusing to use {}: other users can write in it; it is not your msgd (remove it, or set MSG_RUNTIME_DIR to a directory of your own)",
            dir.display()
        )
    );
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(hans.msg(&["who"]).code, 0);
}

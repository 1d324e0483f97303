//! Desktop notifications against a real session bus with a test-side
//! `org.freedesktop.Notifications` service. Needs `dbus-daemon` (Debian
//! package `dbus`).
#![cfg(target_os = "linux")]

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use common::*;

struct Notifications {
    calls: mpsc::Sender<(String, String)>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Notifications {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        _app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        _actions: Vec<String>,
        _hints: HashMap<String, zbus::zvariant::OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        let _ = self.calls.send((summary, body));
        1
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["body".into()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        ("msg-test".into(), "msg".into(), "0".into(), "1.2".into())
    }

    fn close_notification(&self, _id: u32) {}
}

/// A private session bus with the test's notification service on it.
struct Bus {
    _daemon: ChildGuard,
    _service: zbus::blocking::Connection,
    _dir: tempfile::TempDir,
    address: String,
    calls: mpsc::Receiver<(String, String)>,
}

impl Bus {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut bus = Command::new("dbus-daemon");
        bus.args(["--session", "--nofork", "--print-address=1"])
            .arg(format!(
                "--address=unix:path={}",
                dir.path().join("bus").display()
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = bus
            .spawn()
            .expect("dbus-daemon (Debian package `dbus`) is needed");
        let lines = Lines::new(child.stdout.take().unwrap());
        let daemon = ChildGuard(child);
        let address = lines.next();
        let (tx, calls) = mpsc::channel();
        let service = zbus::blocking::connection::Builder::address(address.as_str())
            .unwrap()
            .name("org.freedesktop.Notifications")
            .unwrap()
            .serve_at(
                "/org/freedesktop/Notifications",
                Notifications { calls: tx },
            )
            .unwrap()
            .build()
            .unwrap();
        Self {
            _daemon: daemon,
            _service: service,
            _dir: dir,
            address,
            calls,
        }
    }

    /// Logs `user` in with their msgd on this bus.
    fn login(&self, user: &User) {
        let mut login = assert_cmd::Command::from_std(user.command(&bins().msg));
        login
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .args(["login", &user.name, "--password-stdin"])
            .write_stdin(format!("{}\n", password(&user.name)))
            .timeout(DEADLINE)
            .assert()
            .success();
        user.track_daemon();
    }

    fn next_call(&self) -> (String, String) {
        self.calls.recv_timeout(DEADLINE).expect("a Notify call")
    }
}

fn call(title: &str, body: &str) -> (String, String) {
    (title.to_owned(), body.to_owned())
}

#[test]
fn an_incoming_message_raises_a_notification_with_sender_and_text() {
    let bus = Bus::start();
    let server = Server::start();
    let hans = User::new("hans", &server);
    hans.login().ok();
    // luke's msgd (auto-started by `msg login`) inherits the bus address.
    let luke = User::new("luke", &server);
    bus.login(&luke);
    // leia turned notifications off in her config.
    let leia = User::new("leia", &server);
    leia.config("notify = false\n");
    bus.login(&leia);
    hans.msg(&["send", "leia", "quietly"]).ok();

    hans.msg(&["send", "luke", "Hello from the falcon"]).ok();
    assert_eq!(bus.next_call(), call("hans", "Hello from the falcon"));
    hans.msg(&["broadcast", "to everyone"]).ok();
    assert_eq!(bus.next_call(), call("hans (broadcast)", "to everyone"));
    // leia got both and raised nothing. (A smoke check: had her daemon
    // raised one, it would normally have arrived before luke's.)
    leia.wait_messages(&["hans: quietly", "hans (broadcast): to everyone"]);
    assert!(bus.calls.try_recv().is_err());
}

#[test]
fn private_requests_are_notified() {
    let bus = Bus::start();
    let server = Server::start();
    let luke = User::new("luke", &server);
    bus.login(&luke);
    let hans = User::new("hans", &server);
    hans.login().ok();
    let start = hans.background(&["private", "start", "luke"]);
    assert_eq!(
        bus.next_call(),
        call("hans", "hans would like to private message")
    );
    luke.msg(&["private", "decline", "hans"]).ok();
    assert_eq!(start.join().code, 1);
}

// Apart from the private request: on a busy machine hans's login and
// request could take longer than a short timeout, and luke would be gone.
#[test]
fn the_inactivity_logout_is_notified() {
    let bus = Bus::start();
    let server = Server::with(ServerOptions {
        timeout: 2,
        ..Default::default()
    });
    let luke = User::new("luke", &server);
    bus.login(&luke);
    assert_eq!(
        bus.next_call(),
        call("msg", "You have been logged out due to inactivity")
    );
}

#[test]
fn a_missing_notification_service_is_logged_once_and_never_fatal() {
    let server = Server::start();
    let [hans, luke] = <[User; 2]>::try_from(online(&server, &["hans", "luke"]))
        .ok()
        .unwrap();
    hans.msg(&["send", "luke", "one"]).ok();
    hans.msg(&["send", "luke", "two"]).ok();
    hans.msg(&["send", "luke", "three"]).ok();
    assert_eq!(luke.status()["unread"], 3);
    // The warning is written by a background task; poll the log briefly.
    let log = luke.data_dir().join("msgd.log");
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let warnings = text.matches("desktop notifications unavailable").count();
        if warnings >= 1 {
            assert_eq!(warnings, 1, "{text}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no warning logged: {text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn notifications_show_markup_and_escapes_as_text() {
    let bus = Bus::start();
    let server = Server::start();
    let hans = User::new("hans", &server);
    hans.login().ok();
    let luke = User::new("luke", &server);
    bus.login(&luke);
    hans.msg(&[
        "send",
        "luke",
        "<img src=\"file:///etc/passwd\"/> & \u{1b}[2J\u{202e}",
    ])
    .ok();
    assert_eq!(
        bus.next_call(),
        call(
            "hans",
            "&lt;img src=\"file:///etc/passwd\"/&gt; &amp; \\x1b[2J\\u{202e}"
        )
    );
}

#[test]
fn a_burst_becomes_a_few_notifications_and_one_summary() {
    let bus = Bus::start();
    let server = Server::start();
    let hans = User::new("hans", &server);
    hans.login().ok();
    let luke = User::new("luke", &server);
    bus.login(&luke);
    for i in 0..12 {
        hans.msg(&["send", "luke", &format!("message {i}")]).ok();
    }
    for i in 0..5 {
        assert_eq!(bus.next_call(), call("hans", &format!("message {i}")));
    }
    // The other seven are summed up once the rate-limit window ends.
    assert_eq!(
        bus.next_call(),
        call("msg", "7 more items arrived; see `msg inbox`")
    );
    assert_eq!(luke.status()["unread"], 12, "every message is in the inbox");
    assert!(bus.calls.try_recv().is_err());
}

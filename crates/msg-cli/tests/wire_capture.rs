//! What crosses the network, seen by a capture of all loopback traffic.
//! Today's plain TCP link carries texts readable; the checks for encrypted
//! links (TLS, private sessions) use the same capture. Needs root (raw
//! socket); skipped with a message otherwise.
#![cfg(target_os = "linux")]

mod common;

use common::capture::{Capture, contains};
use common::*;

/// The capture sees every loopback byte, this binary's other tests'
/// included: one test at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn the_capture_sees_what_plain_tcp_carries() {
    let _alone = alone();
    let Some(capture) = Capture::start() else {
        return;
    };
    let server = Server::start();
    let [hans, luke] = <[User; 2]>::try_from(online(&server, &["hans", "luke"]))
        .ok()
        .unwrap();
    hans.msg(&["send", "luke", "plainly-readable-4711"]).ok();
    luke.wait_messages(&["hans: plainly-readable-4711"]);
    let wire = capture.finish();
    assert!(
        contains(&wire, b"plainly-readable-4711"),
        "{} bytes captured, text not among them",
        wire.len()
    );
}

#[test]
fn over_tls_the_wire_shows_no_password_and_no_text() {
    let _alone = alone();
    let Some(capture) = Capture::start() else {
        return;
    };
    let tls = common::tls::TlsServer::start();
    let users: Vec<User> = ["hans", "luke"]
        .iter()
        .map(|name| {
            let user = User::with_server_addr(name, &tls.url());
            user.run_with(
                &[
                    "login",
                    name,
                    "--password-stdin",
                    "--fingerprint",
                    &tls.fingerprint,
                ],
                Some(&format!("{}\n", password(name))),
            )
            .ok();
            user
        })
        .collect();
    let [hans, luke] = <[User; 2]>::try_from(users).ok().unwrap();
    hans.msg(&["send", "luke", "secretly-readable-4711"]).ok();
    luke.wait_messages(&["hans: secretly-readable-4711"]);
    let wire = capture.finish();
    // The capture did see the connections (the handshakes at least).
    assert!(wire.len() > 2000, "only {} bytes captured", wire.len());
    for secret in [
        "secretly-readable-4711",
        password("hans"),
        password("luke"),
        "\"type\":\"login\"",
    ] {
        assert!(
            !contains(&wire, secret.as_bytes()),
            "{secret} crossed the wire readable"
        );
    }
}

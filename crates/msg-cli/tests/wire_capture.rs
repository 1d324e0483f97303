//! What crosses the network, seen by a capture of all loopback traffic.
//! Today's plain TCP link carries texts readable; the checks for encrypted
//! links (TLS, private sessions) use the same capture. Needs root (raw
//! socket); skipped with a message otherwise.
#![cfg(target_os = "linux")]

mod common;

use common::capture::{Capture, contains};
use common::*;

#[test]
fn the_capture_sees_what_plain_tcp_carries() {
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

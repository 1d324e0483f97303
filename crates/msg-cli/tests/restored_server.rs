//! A recipient never drops a message it has not stored: a server whose
//! database was restored from a backup hands out message ids again, and a
//! new message with a used id must not pass for the old one.

mod common;

use std::path::Path;

use common::*;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if kind.is_file() {
            // Not the running server's admin socket: a backup has none.
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_reused_message_id_with_other_content_is_stored_not_dropped() {
    let mut server = Server::start();
    // The backup: the server's state before any message.
    server.stop();
    let backup = tempfile::tempdir().unwrap();
    copy_dir(&server.state_dir(), backup.path());
    server.start_again();

    let [hans, luke, yoda] = <[User; 3]>::try_from(online(&server, &["hans", "luke", "yoda"]))
        .ok()
        .unwrap();
    let first = hans.msg(&["--json", "send", "luke", "first, from hans"]);
    let first_id = first.ok().json()["msg_id"].clone();
    luke.wait_messages(&["hans: first, from hans"]);

    // The server's database is restored from the backup.
    server.stop();
    std::fs::remove_dir_all(server.state_dir()).unwrap();
    copy_dir(backup.path(), &server.state_dir());
    server.start_again();

    // The daemons log in again by themselves; then yoda writes.
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let who = yoda.msg(&["who"]);
        if who.code == 0 && who.lines().contains(&"luke") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never back: {who:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let second = yoda.msg(&["--json", "send", "luke", "second, from yoda"]);
    second.ok();
    assert_eq!(
        second.json()["msg_id"],
        first_id,
        "the restored server reuses the id (else this test proves nothing)"
    );
    luke.wait_messages(&["hans: first, from hans", "yoda: second, from yoda"]);
}

//! Message ids never repeat, whatever happens to the database between
//! runs: a recipient that de-duplicates by id (as msgd's inbox does) would
//! otherwise swallow new messages that reuse the ids of old ones.
#![cfg(unix)]

mod common;

use std::collections::HashSet;
use std::path::Path;

use common::*;
use msg_proto::MsgId;
use msg_proto::server::ServerFrame;

/// One run of the server: hans sends five messages to luke, who is online
/// and de-duplicates by id. Returns how many were new to luke.
async fn run_once(env: &Env, seen: &mut HashSet<MsgId>, run: usize) -> usize {
    let mut server = env.start(&[]);
    let mut hans = Client::login(server.addr, "hans").await;
    let mut luke = Client::login(server.addr, "luke").await;
    let mut new = 0;
    for n in 0..5 {
        let text = format!("run {run} message {n}");
        let id = hans.submit(send_to("luke", &text)).await;
        // luke stores and acknowledges it, or drops it as a duplicate.
        if let ServerFrame::Message { msg_id, .. } = luke.next_message().await
            && seen.insert(msg_id)
        {
            new += 1;
        }
        let reply = hans.reply(id).await;
        assert!(
            matches!(reply, ServerFrame::Sent { queued: false, .. }),
            "{reply:?}"
        );
    }
    // A clean stop: the database is whole on disk afterwards.
    server.signal("TERM");
    assert_eq!(server.wait_exit(), Some(0));
    new
}

fn copy_database(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("backup dir");
    for name in ["msg.db", "msg.db-wal", "msg.db-shm"] {
        let _ = std::fs::remove_file(to.join(name));
        if from.join(name).exists() {
            std::fs::copy(from.join(name), to.join(name)).expect("copy");
        }
    }
}

#[tokio::test]
async fn ids_never_repeat_after_a_restored_or_lost_database() {
    let env = Env::new();
    let state = env.state_dir();
    let backup = env.dir.path().join("backup");
    let mut seen = HashSet::new();

    assert_eq!(run_once(&env, &mut seen, 1).await, 5);
    copy_database(&state, &backup);
    assert_eq!(run_once(&env, &mut seen, 2).await, 5);
    // An older copy of the database comes back (a restored backup).
    copy_database(&backup, &state);
    assert_eq!(
        run_once(&env, &mut seen, 3).await,
        5,
        "messages after restoring an old database were taken for old ones"
    );
    // The database is lost altogether.
    for name in ["msg.db", "msg.db-wal", "msg.db-shm"] {
        let _ = std::fs::remove_file(state.join(name));
    }
    assert_eq!(
        run_once(&env, &mut seen, 4).await,
        5,
        "messages after losing the database were taken for old ones"
    );
}

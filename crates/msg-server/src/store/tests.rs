//! The store against a real database file: order, durability across
//! reopening, migration of old files and the start-up snapshot.

use std::collections::HashSet;

use msg_proto::MsgId;
use rusqlite::Connection;

use crate::store::{Store, StoredMessage};

fn message(n: u64, to: &str, text: &str) -> StoredMessage {
    StoredMessage {
        seq: 0,
        id: MsgId::new(7, n),
        recipient: to.into(),
        sender: "hans".into(),
        text: text.into(),
        at: 1000 + n,
        client_id: Some(format!("c{n}")),
    }
}

fn enqueue_sync(store: &Store, messages: Vec<StoredMessage>) {
    let (tx, rx) = std::sync::mpsc::channel();
    store.enqueue(
        messages,
        Box::new(move |r| tx.send(r.is_ok_and(|full| full.is_empty())).unwrap()),
    );
    assert!(rx.recv().unwrap());
}

#[test]
fn queue_survives_reopen_in_order_and_deletes_only_own_messages() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(dir.path(), 0).unwrap();
        // Stored order is delivery order, whatever the ids.
        enqueue_sync(
            &store,
            vec![message(3, "luke", "a"), message(1, "luke", "c")],
        );
        enqueue_sync(&store, vec![message(2, "yoda", "b")]);
        // Only the recipient's own ack deletes.
        store.delete("yoda", MsgId::new(7, 1));
        store.close();
    }
    let (store, _) = Store::open(dir.path(), 0).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let pending = rt
        .block_on(store.pending_after("luke", 0, 10))
        .unwrap()
        .unwrap();
    assert_eq!(
        pending.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["a", "c"]
    );
    assert_eq!(pending[0].id, MsgId::new(7, 3));
    assert_eq!(pending[0].client_id.as_deref(), Some("c3"));
    let page = rt
        .block_on(store.pending_after("luke", pending[0].seq, 10))
        .unwrap()
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].text, "c");
    store.delete("luke", MsgId::new(7, 1));
    assert_eq!(rt.block_on(store.queue_len()).unwrap().unwrap(), 2);
}

#[test]
fn a_database_from_before_client_ids_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = Connection::open(dir.path().join("msg.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE queue (id INTEGER PRIMARY KEY, recipient TEXT NOT NULL,
                 sender TEXT NOT NULL, text TEXT NOT NULL, at INTEGER NOT NULL);
             INSERT INTO queue VALUES (1, 'luke', 'hans', 'old', 5);",
        )
        .unwrap();
    }
    let (store, _) = Store::open(dir.path(), 0).unwrap();
    enqueue_sync(&store, vec![message(2, "luke", "new")]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let pending = rt
        .block_on(store.pending_after("luke", 0, 10))
        .unwrap()
        .unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].client_id, None);
    assert_eq!(pending[1].client_id.as_deref(), Some("c2"));
}

#[test]
fn old_integer_ids_become_their_decimal_strings_in_their_old_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = Connection::open(dir.path().join("msg.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             INSERT INTO meta VALUES ('boot', 2);
             CREATE TABLE queue (id INTEGER PRIMARY KEY, recipient TEXT NOT NULL,
                 sender TEXT NOT NULL, text TEXT NOT NULL, at INTEGER NOT NULL,
                 client_id TEXT);
             CREATE INDEX queue_by_recipient ON queue (recipient, id);
             INSERT INTO queue VALUES (8589934593, 'luke', 'hans', 'second', 6, NULL);
             INSERT INTO queue VALUES (4294967296, 'luke', 'hans', 'first', 5, 'k');
             INSERT INTO queue VALUES (4294967297, 'yoda', 'hans', 'other', 5, NULL);",
        )
        .unwrap();
    }
    let (store, _) = Store::open(dir.path(), 0).unwrap();
    enqueue_sync(&store, vec![message(4_294_967_296, "luke", "third")]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let pending = rt
        .block_on(store.pending_after("luke", 0, 10))
        .unwrap()
        .unwrap();
    let seen: Vec<(String, &str)> = pending
        .iter()
        .map(|m| (m.id.to_string(), m.text.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("4294967296".to_owned(), "first"),
            ("8589934593".to_owned(), "second"),
            (MsgId::new(7, 4_294_967_296).to_string(), "third"),
        ]
    );
    assert_eq!(pending[0].id, MsgId::legacy(4_294_967_296));
    assert_eq!(pending[0].client_id.as_deref(), Some("k"));
    // An old id is acknowledged in its string form.
    store.delete("luke", MsgId::legacy(4_294_967_296));
    assert_eq!(rt.block_on(store.queue_len()).unwrap().unwrap(), 3);
}

#[test]
fn blocks_history_and_lockouts_load_into_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(dir.path(), 0).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(store.set_block("luke", "vader", true))
            .unwrap()
            .unwrap();
        rt.block_on(store.set_block("luke", "yoda", true))
            .unwrap()
            .unwrap();
        rt.block_on(store.set_block("luke", "yoda", false))
            .unwrap()
            .unwrap();
        store.presence("hans", 400, true);
        store.presence("hans", 500, false);
        store.presence("leia", 700, true);
        rt.block_on(store.lockout("yoda", 9_000)).unwrap().unwrap();
        rt.block_on(store.lockout("r2d2", 100)).unwrap().unwrap();
    }
    let (_store, snapshot) = Store::open(dir.path(), 1_000).unwrap();
    assert_eq!(
        snapshot.blocks.get("luke").unwrap(),
        &HashSet::from(["vader".to_string()])
    );
    assert_eq!(snapshot.last_seen.get("hans"), Some(&500));
    assert_eq!(snapshot.last_seen.get("leia"), Some(&700));
    assert_eq!(snapshot.lockouts.get("yoda"), Some(&9_000));
    assert!(
        !snapshot.lockouts.contains_key("r2d2"),
        "expired blocks are dropped"
    );
}

/// Fills a database with messages for luke, leia (big ones, over many
/// pages) and yoda, then overwrites the page that holds leia's message
/// `damaged` with garbage, as a failing disk would.
fn database_with_a_damaged_page(dir: &std::path::Path, damaged: u64) {
    let text = |n: u64| format!("leia-{n:04}-{}", "x".repeat(1000));
    {
        let (store, _) = Store::open(dir, 0).unwrap();
        enqueue_sync(&store, (0..5).map(|n| message(n, "luke", "hi")).collect());
        enqueue_sync(
            &store,
            (100..700).map(|n| message(n, "leia", &text(n))).collect(),
        );
        enqueue_sync(
            &store,
            (900..905).map(|n| message(n, "yoda", "hi")).collect(),
        );
        store.close();
    }
    let path = dir.join("msg.db");
    // Everything is in the main file after a clean close.
    assert!(
        std::fs::metadata(dir.join("msg.db-wal")).map_or(true, |m| m.len() == 0),
        "the WAL was checkpointed"
    );
    let mut bytes = std::fs::read(&path).unwrap();
    let page_size = u16::from_be_bytes([bytes[16], bytes[17]]) as usize;
    let marker = format!("leia-{damaged:04}-");
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .expect("the message is in the file");
    let page = at / page_size;
    for b in &mut bytes[page * page_size..(page + 1) * page_size] {
        *b = 0xa5;
    }
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn a_damaged_page_fails_only_the_jobs_that_touch_it() {
    use super::Job;
    use tokio::sync::oneshot;

    let dir = tempfile::tempdir().unwrap();
    database_with_a_damaged_page(dir.path(), 400);
    let conn = Connection::open(dir.path().join("msg.db")).unwrap();
    let quota = super::quota::Quota::load(&conn, Default::default());
    let mut writer = super::thread::Writer { conn, quota };
    let (yoda_done, yoda_stored) = std::sync::mpsc::channel();
    let (luke_done, luke_stored) = std::sync::mpsc::channel();
    let (leia_page, leia_read) = oneshot::channel();
    let (luke_page, luke_read) = oneshot::channel();
    let (barrier, barrier_done) = oneshot::channel();
    // One batch, as group commit would make it: leia's read and the ack of
    // a message on the damaged page fail; nothing else may.
    let batch = vec![
        Job::Enqueue {
            messages: vec![message(950, "yoda", "new for yoda")],
            done: Box::new(move |r| yoda_done.send(r.is_ok()).unwrap()),
        },
        Job::PendingAfter {
            recipient: "leia".into(),
            after: 0,
            limit: 1000,
            done: leia_page,
        },
        Job::Delete {
            recipient: "leia".into(),
            id: MsgId::new(7, 400),
            fence: None,
        },
        Job::Delete {
            recipient: "luke".into(),
            id: MsgId::new(7, 0),
            fence: None,
        },
        Job::PendingAfter {
            recipient: "luke".into(),
            after: 0,
            limit: 1000,
            done: luke_page,
        },
        Job::Enqueue {
            messages: vec![message(951, "luke", "new for luke")],
            done: Box::new(move |r| luke_done.send(r.is_ok()).unwrap()),
        },
        Job::Barrier { done: barrier },
    ];
    writer.apply_batch(batch);
    assert!(leia_read.blocking_recv().unwrap().is_err(), "leia's page");
    assert_eq!(luke_read.blocking_recv().unwrap().unwrap().len(), 4);
    assert!(yoda_stored.recv().unwrap(), "yoda's message is stored");
    assert!(luke_stored.recv().unwrap(), "luke's message is stored");
    assert!(barrier_done.blocking_recv().unwrap().is_ok());
    drop(writer);

    // Durable: both new messages are there after reopening, luke's ack too.
    let conn = Connection::open(dir.path().join("msg.db")).unwrap();
    let texts: Vec<String> = conn
        .prepare("SELECT text FROM queue WHERE recipient IN ('luke', 'yoda') ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(texts.len(), 4 + 5 + 2, "{texts:?}");
    assert!(texts.contains(&"new for yoda".to_owned()));
    assert!(texts.contains(&"new for luke".to_owned()));
}

fn pragma(dir: &std::path::Path, name: &str) -> i64 {
    let conn = Connection::open(dir.join("msg.db")).unwrap();
    conn.pragma_query_value(None, name, |r| r.get(0)).unwrap()
}

#[test]
fn acknowledged_messages_give_their_space_back() {
    let dir = tempfile::tempdir().unwrap();
    // A database from before: no auto_vacuum.
    {
        let conn = Connection::open(dir.path().join("msg.db")).unwrap();
        conn.execute_batch("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);")
            .unwrap();
    }
    assert_eq!(pragma(dir.path(), "auto_vacuum"), 0);
    let text = "x".repeat(1000);
    {
        let (store, _) = Store::open(dir.path(), 0).unwrap();
        enqueue_sync(
            &store,
            (0..3000).map(|n| message(n, "luke", &text)).collect(),
        );
        for n in 0..3000 {
            store.delete("luke", MsgId::new(7, n));
        }
        store.vacuum(1_000_000);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(store.barrier()).unwrap().unwrap();
        store.close();
    }
    assert_eq!(pragma(dir.path(), "auto_vacuum"), 2, "incremental");
    assert_eq!(pragma(dir.path(), "freelist_count"), 0);
    let pages = pragma(dir.path(), "page_count");
    assert!(pages < 50, "{pages} pages left for an empty queue");
}

#[test]
fn a_store_that_cannot_keep_up_refuses_jobs_past_its_bound_and_loses_nothing_it_took() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), 0).unwrap();
    enqueue_sync(&store, vec![message(1, "luke", "kept")]);
    // Another writer holds the database, so the store's thread waits (up
    // to its busy timeout) and the jobs pile up behind it.
    let blocker = Connection::open(dir.path().join("msg.db")).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stuck = tx.clone();
    store.enqueue(
        vec![message(2, "luke", "behind the lock")],
        Box::new(move |r| drop(stuck.send(r.map(|_| ()).map_err(|e| e.to_string())))),
    );
    // Acks of made-up ids: each would be a job. (The thread may have taken
    // a batch of them before it met the lock.)
    for n in 0..(crate::store::MAX_WAITING_JOBS + super::thread::MAX_BATCH) as u64 + 10 {
        store.delete("luke", MsgId::new(9, n));
    }
    store.enqueue(
        vec![message(3, "luke", "refused")],
        Box::new(move |r| drop(tx.send(r.map(|_| ()).map_err(|e| e.to_string())))),
    );
    // Refused at once, with a clear reason, while the thread is still stuck.
    let refused = rx.recv().unwrap();
    assert_eq!(refused, Err("the store is overloaded".to_owned()));
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    assert_eq!(
        rx.recv().unwrap(),
        Ok(()),
        "the job taken before is applied"
    );
    // Once the thread has caught up, it takes jobs again.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let pending = loop {
        match rt.block_on(store.pending_after("luke", 0, 10)) {
            Ok(page) => break page.unwrap(),
            Err(_) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the store never caught up"
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    };
    assert_eq!(
        pending.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["kept", "behind the lock"]
    );
}

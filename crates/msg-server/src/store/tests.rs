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
    store.enqueue(messages, Box::new(move |r| tx.send(r.is_ok()).unwrap()));
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

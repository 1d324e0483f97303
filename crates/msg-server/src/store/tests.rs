//! The store against a real database file: order, durability across
//! reopening, migration of old files and the start-up snapshot.

use std::collections::HashSet;

use msg_proto::MsgId;
use rusqlite::Connection;

use crate::store::{Store, StoredMessage};

fn message(id: MsgId, to: &str, text: &str) -> StoredMessage {
    StoredMessage {
        id,
        recipient: to.into(),
        sender: "hans".into(),
        text: text.into(),
        at: 1000 + id,
        client_id: Some(format!("c{id}")),
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
        let (store, snapshot) = Store::open(dir.path(), 0).unwrap();
        assert_eq!(snapshot.boot, 1);
        enqueue_sync(
            &store,
            vec![message(3, "luke", "c"), message(1, "luke", "a")],
        );
        enqueue_sync(&store, vec![message(2, "yoda", "b")]);
        // Only the recipient's own ack deletes.
        store.delete("yoda", 1);
        store.close();
    }
    let (store, snapshot) = Store::open(dir.path(), 0).unwrap();
    assert_eq!(snapshot.boot, 2);
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
    assert_eq!(pending[0].client_id.as_deref(), Some("c1"));
    let page = rt
        .block_on(store.pending_after("luke", 1, 10))
        .unwrap()
        .unwrap();
    assert_eq!(page.len(), 1);
    store.delete("luke", 1);
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

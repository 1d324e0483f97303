//! The inbox: de-duplication (by id and content, by client id), reads,
//! batches, pages, retention, migrations.

use super::*;

fn msg<'a>(msg_id: u64, text: &'a str) -> NewItem<'a> {
    NewItem {
        msg_id: Some(msg_id.into()),
        client_id: None,
        kind: ItemKind::Message,
        from: Some("hans"),
        text,
        at: 1,
    }
}

fn everything() -> Listing {
    Listing {
        all: true,
        after: 0,
        up_to: u64::MAX >> 1,
    }
}

#[test]
fn a_retried_send_is_stored_once_by_client_id() {
    let mut inbox = Inbox::open_in_memory().unwrap();
    let with_key = |msg_id, from, key| NewItem {
        client_id: Some(key),
        from: Some(from),
        ..msg(msg_id, "hi")
    };
    assert!(
        inbox
            .add("luke", &with_key(1, "hans", "k1"))
            .unwrap()
            .is_some()
    );
    // Same sender and key, new server id: the sender retried.
    assert!(
        inbox
            .add("luke", &with_key(2, "hans", "k1"))
            .unwrap()
            .is_none()
    );
    // Another sender may use the same key.
    assert!(
        inbox
            .add("luke", &with_key(3, "yoda", "k1"))
            .unwrap()
            .is_some()
    );
    assert_eq!(inbox.list("luke", true).unwrap().len(), 2);
}

#[test]
fn a_reused_msg_id_with_other_content_is_another_message() {
    let mut inbox = Inbox::open_in_memory().unwrap();
    assert!(inbox.add("luke", &msg(7, "first")).unwrap().is_some());
    // A redelivery: the same id and content.
    assert!(inbox.add("luke", &msg(7, "first")).unwrap().is_none());
    // A restored server hands out id 7 again, for other messages.
    assert!(inbox.add("luke", &msg(7, "second")).unwrap().is_some());
    let from_yoda = NewItem {
        from: Some("yoda"),
        ..msg(7, "first")
    };
    assert!(inbox.add("luke", &from_yoda).unwrap().is_some());
    // Each of those, delivered again, is still stored once.
    assert!(inbox.add("luke", &msg(7, "second")).unwrap().is_none());
    assert!(inbox.add("luke", &from_yoda).unwrap().is_none());
    let lines: Vec<String> = inbox
        .list("luke", true)
        .unwrap()
        .iter()
        .map(InboxItem::line)
        .collect();
    assert_eq!(lines, ["hans: first", "hans: second", "yoda: first"]);
}

#[test]
fn an_inbox_from_before_client_ids_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.db");
    {
        let db = Connection::open(&path).unwrap();
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE items (
                id INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL, msg_id INTEGER,
                kind TEXT NOT NULL, sender TEXT, text TEXT NOT NULL, at INTEGER NOT NULL,
                read INTEGER NOT NULL DEFAULT 0);
             CREATE UNIQUE INDEX items_msg_id ON items(account, msg_id);
             INSERT INTO items (account, msg_id, kind, sender, text, at)
                VALUES ('luke', 1, 'message', 'hans', 'old', 1);",
        )
        .unwrap();
    }
    let mut inbox = Inbox::open(&path).unwrap();
    assert_eq!(inbox.list("luke", true).unwrap().len(), 1);
    let mode: String = inbox
        .db
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "truncate", "converted from WAL");
    let item = NewItem {
        client_id: Some("k"),
        ..msg(2, "new")
    };
    assert!(inbox.add("luke", &item).unwrap().is_some());
    // The old unique index is gone: a reused id with other text is kept.
    assert!(inbox.add("luke", &msg(1, "reused")).unwrap().is_some());
    assert!(inbox.add("luke", &msg(1, "old")).unwrap().is_none());
}

#[test]
fn duplicates_are_stored_once_and_reads_are_tracked() {
    let mut inbox = Inbox::open_in_memory().unwrap();
    let first = inbox.add("luke", &msg(7, "hi")).unwrap().unwrap();
    assert!(inbox.add("luke", &msg(7, "hi")).unwrap().is_none());
    inbox
        .add(
            "luke",
            &NewItem {
                msg_id: None,
                client_id: None,
                kind: ItemKind::Presence,
                from: Some("yoda"),
                text: "yoda logged in",
                at: 2,
            },
        )
        .unwrap()
        .unwrap();
    inbox
        .add("leia", &msg(8, "other account"))
        .unwrap()
        .unwrap();
    assert_eq!(inbox.unread("luke").unwrap(), 2);
    let items = inbox.list("luke", false).unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0], first);
    inbox.mark_read("luke", first.id).unwrap();
    assert_eq!(inbox.unread("luke").unwrap(), 1);
    assert_eq!(inbox.list("luke", true).unwrap().len(), 2);
    assert_eq!(inbox.unread("leia").unwrap(), 1);
}

#[test]
fn a_batch_is_one_commit_and_reports_each_item() {
    let mut inbox = Inbox::open_in_memory().unwrap();
    inbox.add("luke", &msg(1, "one")).unwrap();
    let before = inbox.commits();
    let batch = [msg(1, "one"), msg(2, "two"), msg(3, "three"), msg(2, "two")];
    let stored = inbox.add_batch("luke", &batch).unwrap();
    assert_eq!(inbox.commits(), before + 1);
    let new: Vec<bool> = stored.iter().map(Option::is_some).collect();
    assert_eq!(
        new,
        [false, true, true, false],
        "duplicates inside a batch too"
    );
    assert_eq!(inbox.list("luke", true).unwrap().len(), 3);
}

#[test]
fn pages_cover_a_fixed_range_oldest_first() {
    let mut inbox = Inbox::open_in_memory().unwrap();
    let texts: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    let items: Vec<NewItem<'_>> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| msg(i as u64, t))
        .collect();
    inbox.add_batch("luke", &items).unwrap();
    let up_to = inbox.last_id().unwrap();
    inbox
        .add("luke", &msg(99, "after the listing began"))
        .unwrap();
    let mut listing = Listing {
        all: false,
        after: 0,
        up_to,
    };
    let mut seen = Vec::new();
    loop {
        let page = inbox.page("luke", listing, 3).unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        listing.after = last.id;
        seen.extend(page.into_iter().map(|i| i.text));
    }
    assert_eq!(seen, texts);
}

#[test]
fn retention_deletes_old_read_items_only() {
    let mut inbox = Inbox::open_in_memory().unwrap();
    inbox.add("luke", &msg(1, "old read")).unwrap();
    inbox.add("luke", &msg(2, "old unread")).unwrap();
    inbox.add("luke", &msg(3, "new read")).unwrap();
    inbox
        .db
        .execute(
            "UPDATE items SET stored_at = 1000 WHERE msg_id IN (1, 2)",
            [],
        )
        .unwrap();
    inbox.mark_read("luke", 1).unwrap();
    inbox
        .db
        .execute("UPDATE items SET read = 1 WHERE msg_id = 3", [])
        .unwrap();
    assert_eq!(inbox.purge_read(2000, 100).unwrap(), 1);
    assert_eq!(inbox.purge_read(2000, 100).unwrap(), 0);
    let left: Vec<String> = inbox
        .page("luke", everything(), 10)
        .unwrap()
        .into_iter()
        .map(|i| i.text)
        .collect();
    assert_eq!(left, ["old unread", "new read"]);
}

#[test]
fn survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.sqlite3");
    {
        let mut inbox = Inbox::open(&path).unwrap();
        inbox.add("luke", &msg(1, "kept")).unwrap();
        inbox.set_last_account("luke").unwrap();
        inbox.probe_writable().unwrap();
    }
    let inbox = Inbox::open(&path).unwrap();
    assert_eq!(inbox.last_account().unwrap().as_deref(), Some("luke"));
    assert_eq!(inbox.list("luke", false).unwrap()[0].text, "kept");
}

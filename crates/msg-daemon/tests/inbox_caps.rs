//! The inbox's caps, with a real msgd: the retention period applies at
//! start, and `msg inbox` streams a large inbox in bounded memory.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use msg_daemon::inbox::{Inbox, NewItem};
use msg_local::paths::Paths;
use msg_proto::JsonLines;
use msg_proto::control::{CONTROL_VERSION, ItemKind, Reply, Request};
use tokio_util::codec::Framed;

const DEADLINE: Duration = Duration::from_secs(30);

/// A msgd of its own environment; killed and reaped on drop.
struct Daemon {
    child: Child,
    paths: Paths,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn paths(dir: &Path) -> Paths {
    Paths {
        runtime_dir: dir.join("run"),
        data_dir: dir.join("data").join("msg"),
        config_file: dir.join("config").join("msg").join("config.toml"),
    }
}

/// Starts msgd in `dir` (laid out as [`paths`]) and waits until it answers.
fn start(dir: &Path, config: &str) -> Daemon {
    let paths = paths(dir);
    std::fs::create_dir_all(paths.config_file.parent().unwrap()).unwrap();
    std::fs::write(&paths.config_file, config).unwrap();
    let log = std::fs::File::create(dir.join("msgd.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_msgd"))
        .arg("--no-notify")
        .env_clear()
        .env("HOME", dir.join("home"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_RUNTIME_DIR", dir.join("xdg-run"))
        .env("MSG_RUNTIME_DIR", &paths.runtime_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start msgd");
    let daemon = Daemon { child, paths };
    let deadline = Instant::now() + DEADLINE;
    while !matches!(
        call(&daemon, Request::Status).first(),
        Some(Reply::Status(_))
    ) {
        assert!(Instant::now() < deadline, "msgd never answered");
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon
}

/// Sends one request; the replies up to `end` (inbox) or the one reply.
fn call(daemon: &Daemon, request: Request) -> Vec<Reply> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let Ok(stream) = msg_local::socket::connect(&daemon.paths).await else {
            return Vec::new();
        };
        let mut conn = Framed::new(stream, JsonLines::<Reply, Request>::new());
        let stream = matches!(request, Request::Inbox { .. });
        let exchange = async {
            conn.send(Request::Hello {
                version: CONTROL_VERSION,
            })
            .await
            .ok()?;
            conn.next().await?.ok()?.ok()?;
            conn.send(request).await.ok()?;
            let mut replies = Vec::new();
            while let Some(Ok(Ok(reply))) = conn.next().await {
                let end = !stream || reply == Reply::End;
                replies.push(reply);
                if end {
                    break;
                }
            }
            Some(replies)
        };
        tokio::time::timeout(DEADLINE, exchange)
            .await
            .expect("msgd answers in time")
            .unwrap_or_default()
    })
}

fn texts(replies: &[Reply]) -> Vec<String> {
    replies
        .iter()
        .filter_map(|r| match r {
            Reply::Item(item) => Some(item.text.clone()),
            _ => None,
        })
        .collect()
}

fn message(msg_id: u64, text: &str) -> NewItem<'_> {
    NewItem {
        msg_id: Some(msg_id.into()),
        client_id: None,
        kind: ItemKind::Message,
        from: Some("luke"),
        text,
        at: 1,
    }
}

/// Peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kb * 1024
}

#[test]
fn old_read_items_are_deleted_at_start_and_unread_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let inbox_path = paths(dir.path()).inbox_path();
    std::fs::create_dir_all(inbox_path.parent().unwrap()).unwrap();
    {
        let mut inbox = Inbox::open(&inbox_path).unwrap();
        let items = [
            message(1, "old, read"),
            message(2, "old, unread"),
            message(3, "recent, read"),
            message(4, "recent, unread"),
        ];
        inbox.add_batch("hans", &items).unwrap();
        inbox.set_last_account("hans").unwrap();
        inbox.mark_read("hans", 1).unwrap();
    }
    {
        // Stored three days ago; read or not as the texts say.
        let db = rusqlite::Connection::open(&inbox_path).unwrap();
        let three_days_ago = msg_proto::now_ms() - 3 * 24 * 3600 * 1000;
        db.execute(
            "UPDATE items SET stored_at = ?1 WHERE msg_id IN (1, 2)",
            [three_days_ago as i64],
        )
        .unwrap();
        db.execute("UPDATE items SET read = 1 WHERE msg_id = 3", [])
            .unwrap();
    }
    let daemon = start(dir.path(), "retention_days = 2\n");
    let deadline = Instant::now() + DEADLINE;
    let left = loop {
        let left = texts(&call(
            &daemon,
            Request::Inbox {
                all: true,
                peek: true,
            },
        ));
        if !left.contains(&"old, read".to_owned()) {
            break left;
        }
        assert!(Instant::now() < deadline, "never deleted: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(left, ["old, unread", "recent, read", "recent, unread"]);
}

#[test]
fn a_large_inbox_is_listed_in_bounded_memory() {
    const ITEMS: usize = 4000;
    let dir = tempfile::tempdir().unwrap();
    let inbox_path = paths(dir.path()).inbox_path();
    std::fs::create_dir_all(inbox_path.parent().unwrap()).unwrap();
    // 4,000 items of 16 KB: 64 MB of text.
    let text = "\u{1d11e}".repeat(4000);
    {
        let mut inbox = Inbox::open(&inbox_path).unwrap();
        for chunk in 0..(ITEMS / 500) {
            let items: Vec<NewItem<'_>> = (0..500)
                .map(|i| message((chunk * 500 + i) as u64, &text))
                .collect();
            inbox.add_batch("hans", &items).unwrap();
        }
        inbox.set_last_account("hans").unwrap();
    }
    let daemon = start(dir.path(), "");
    let before = peak_rss(daemon.child.id());
    let listed = call(
        &daemon,
        Request::Inbox {
            all: true,
            peek: true,
        },
    );
    assert_eq!(texts(&listed).len(), ITEMS);
    assert_eq!(listed.last(), Some(&Reply::End));
    let grown = peak_rss(daemon.child.id()).saturating_sub(before);
    eprintln!(
        "listing {ITEMS} items of 16 KB grew msgd's peak memory by {} KB",
        grown / 1024
    );
    assert!(
        grown < 32 * 1024 * 1024,
        "listing 64 MB grew msgd by {} MB",
        grown / (1024 * 1024)
    );
}

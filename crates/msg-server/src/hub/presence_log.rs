//! The presence log: every login and logout, appended once and read by
//! every session's writer at its own pace.
//!
//! Pushing each notice into each online session's queue cost O(online
//! users) per login, N²/2 frames for N logins, under the hub's lock. Here a
//! login appends one entry (with the announcing user's block list, captured
//! then); each session keeps a cursor, and its writer turns everything past
//! the cursor into one `presence_batch` frame when it next writes. So the
//! work is bounded by what the recipients read, many notices share one
//! frame and one write, and an idle session holds no notice of its own.
//!
//! The log is bounded (entries and bytes); a session whose cursor falls
//! behind its start has missed notices and is disconnected as a slow
//! consumer, like one whose queue overflows.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use msg_proto::Timestamp;
use msg_proto::server::{PresenceEvent, ServerFrame};

/// Bytes of notices put into one frame; the rest goes in the next.
/// Below the largest frame a client accepts: the last entry may pass it by
/// one entry (a user name is at most 32 characters) and the frame's tail.
pub const MAX_BATCH_BYTES: usize = 60 * 1024;
/// Accounting overhead of one entry beside its encoded bytes.
const ENTRY_COST: usize = 96;

const BATCH_HEAD: &[u8] = br#"{"type":"presence_batch","events":["#;
const BATCH_TAIL: &[u8] = b"]}\n";

struct Entry {
    /// `["user",true,at]`, encoded once for every reader; exactly sized.
    encoded: Box<[u8]>,
    /// [`name_hash`] of the user: most readers skip most entries' names.
    user_hash: u64,
    /// The users the announcing user blocked when it was announced.
    hidden_from: Option<Arc<HashSet<String>>>,
    at: Timestamp,
    online: bool,
}

impl Entry {
    /// The user's name: names need no escaping in JSON (letters, digits,
    /// `_` and `-`), so it is the text between the first two quotes.
    fn user(&self) -> &str {
        let name = self.encoded.get(2..).unwrap_or_default();
        let end = name.iter().position(|&b| b == b'"').unwrap_or(0);
        std::str::from_utf8(&name[..end]).unwrap_or_default()
    }
}

struct Entries {
    /// Sequence number of `list[0]`.
    first: u64,
    list: VecDeque<Entry>,
    bytes: usize,
}

pub struct PresenceLog {
    entries: RwLock<Entries>,
    /// Sequence number the next entry gets (every entry before it is in
    /// `entries` or dropped). Read without the lock to order queued frames
    /// against notices.
    end: Arc<AtomicU64>,
    max_entries: usize,
    max_bytes: usize,
}

/// What a session's writer reads from the log.
pub enum Read {
    /// Nothing past the cursor for this reader (the cursor may have moved).
    Nothing,
    /// One frame (or, for version 1 clients, several lines) of notices.
    Frame(Bytes),
    /// The cursor fell behind the start of the log: notices were missed.
    FellBehind,
}

/// A session's place in the log and how it wants its notices.
pub struct Reader<'a> {
    pub user: &'a str,
    /// Version 2: one `presence_batch`; version 1: one `presence` per line.
    pub batched: bool,
    /// Sequence number of the next entry to read.
    pub cursor: &'a mut u64,
}

impl PresenceLog {
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            entries: RwLock::new(Entries {
                first: 0,
                list: VecDeque::new(),
                bytes: 0,
            }),
            end: Arc::new(AtomicU64::new(0)),
            max_entries: max_entries.max(1),
            max_bytes,
        }
    }

    /// The sequence number of the next entry, shared with the outboxes so
    /// they can mark where each queued frame falls among the notices.
    pub fn end_counter(&self) -> Arc<AtomicU64> {
        self.end.clone()
    }

    pub fn end(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a login (`online`) or logout of `user`, hidden from
    /// `hidden_from`. Called under the hub's lock, so the log's order is
    /// the order in which sessions began and ended.
    pub fn append(
        &self,
        user: &str,
        online: bool,
        at: Timestamp,
        hidden_from: Option<Arc<HashSet<String>>>,
    ) {
        let event = PresenceEvent(user.to_owned(), online, at);
        let Ok(encoded) = serde_json::to_vec(&event) else {
            return;
        };
        let entry = Entry {
            encoded: encoded.into_boxed_slice(),
            user_hash: name_hash(user),
            hidden_from,
            at,
            online,
        };
        let mut entries = self.write();
        entries.bytes += entry.encoded.len() + ENTRY_COST;
        entries.list.push_back(entry);
        while entries.list.len() > self.max_entries || entries.bytes > self.max_bytes {
            let Some(old) = entries.list.pop_front() else {
                break;
            };
            entries.bytes -= old.encoded.len() + ENTRY_COST;
            entries.first += 1;
        }
        // Published after the entry, so a reader that sees the new end
        // finds the entry.
        let end = entries.first + entries.list.len() as u64;
        self.end.store(end, Ordering::Release);
    }

    /// Forgets the entries before sequence number `before`: every session
    /// has read them.
    pub fn trim(&self, before: u64) {
        let mut entries = self.write();
        while entries.first < before {
            let Some(old) = entries.list.pop_front() else {
                break;
            };
            entries.bytes -= old.encoded.len() + ENTRY_COST;
            entries.first += 1;
        }
        // A storm's worth of room is not kept for good.
        if entries.list.capacity() > 64 && entries.list.capacity() > 4 * entries.list.len() {
            entries.list.shrink_to_fit();
        }
    }

    /// The notices for `reader` from its cursor up to (not including)
    /// sequence number `upto`, at most [`MAX_BATCH_BYTES`] of them; moves
    /// the cursor past what it returns and what is not for this reader.
    pub fn read_upto(&self, reader: &mut Reader<'_>, upto: u64) -> Read {
        let entries = self.read();
        if *reader.cursor < entries.first {
            return Read::FellBehind;
        }
        let end = upto.min(entries.first + entries.list.len() as u64);
        let own_hash = name_hash(reader.user);
        // About 32 bytes a notice: one allocation for most batches.
        let expected = (end.saturating_sub(*reader.cursor) as usize).saturating_mul(32);
        let mut out = BytesMut::with_capacity(expected.min(MAX_BATCH_BYTES) + 256);
        let mut count = 0usize;
        while *reader.cursor < end && out.len() < MAX_BATCH_BYTES {
            // In range: first <= cursor < end <= first + len.
            let index = (*reader.cursor - entries.first) as usize;
            *reader.cursor += 1;
            let Some(entry) = entries.list.get(index) else {
                break;
            };
            if (entry.user_hash == own_hash && entry.user() == reader.user)
                || entry
                    .hidden_from
                    .as_ref()
                    .is_some_and(|hidden| hidden.contains(reader.user))
            {
                continue;
            }
            if reader.batched {
                out.put_slice(if count == 0 { BATCH_HEAD } else { b"," });
                out.put_slice(&entry.encoded);
            } else if let Ok(line) = msg_proto::encode_line(&ServerFrame::Presence {
                user: entry.user().to_owned(),
                online: entry.online,
                at: entry.at,
            }) {
                out.put_slice(&line);
            }
            count += 1;
        }
        if count == 0 {
            return Read::Nothing;
        }
        if reader.batched {
            out.put_slice(BATCH_TAIL);
        }
        Read::Frame(out.freeze())
    }
}

/// A cheap hash of a user name (FNV-1a), to tell most entries are not the
/// reader's own without comparing names.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// When to wake the sessions for a round of notices. On a calm server a
/// notice goes out at once. Rounds come at most every `online × 50 µs`
/// (20 ms to 1 s: one wake-up costs about 10 µs between the server's write
/// and the client's read, so waking everyone stays near a fifth of a core).
/// During a storm (more than [`STORM_RATE`] logins and logouts a second: a
/// restart brings everyone back) the round waits until it passes, at most
/// [`STORM_WAIT`] (half the log unread is a round at once): the logins go
/// first, and their notices
/// follow in fewer, larger frames. A session that writes anyway (a reply, a
/// message) reads the log then too.
pub struct Rounds {
    /// The log's end at the last round.
    last_end: u64,
    last_round: Instant,
    /// Appends counted in the current window, and in the one before it.
    window_start: Instant,
    window: u32,
    previous_window: u32,
    backlog: u64,
}

/// How often [`Rounds::tick`] should be called.
pub const ROUND_STEP: Duration = Duration::from_millis(20);
/// Logins and logouts a second above which rounds wait.
pub const STORM_RATE: u32 = 200;
/// The window over which the rate is counted.
const WINDOW: Duration = Duration::from_millis(250);
/// The longest a storm delays a round. Long: a round in the middle of a
/// storm of 19,000 logins tells 16,000 sessions of 16,000 logins each (8 GB
/// of frames), stalling the logins for seconds; half the log unread is a
/// round anyway.
pub const STORM_WAIT: Duration = Duration::from_secs(60);

impl Rounds {
    pub fn new(backlog: usize, now: Instant) -> Self {
        let long_ago = now.checked_sub(STORM_WAIT).unwrap_or(now);
        Self {
            last_end: 0,
            last_round: long_ago,
            window_start: now,
            window: 0,
            previous_window: 0,
            backlog: backlog as u64,
        }
    }

    /// An entry was appended, the log now ending at `end`: whether a round
    /// is due at once.
    pub fn appended(&mut self, end: u64, online: usize, now: Instant) -> bool {
        self.roll(now);
        self.due(end, online, now)
    }

    /// A login began or a session ended: what a storm's rate counts. A
    /// login counts when it begins, not when its notice is appended (after
    /// its offline queue), so a slow disk does not look like a lull in the
    /// middle of a storm.
    pub fn activity(&mut self, now: Instant) {
        self.roll(now);
        self.window += 1;
    }

    /// A periodic look: whether a round is due for what was appended.
    pub fn tick(&mut self, end: u64, online: usize, now: Instant) -> bool {
        self.roll(now);
        self.due(end, online, now)
    }

    /// Starts a new counting window when the current one is over.
    fn roll(&mut self, now: Instant) {
        let age = now.saturating_duration_since(self.window_start);
        if age >= WINDOW {
            self.previous_window = if age < 2 * WINDOW { self.window } else { 0 };
            self.window = 0;
            self.window_start = now;
        }
    }

    fn due(&mut self, end: u64, online: usize, now: Instant) -> bool {
        let pending = end.saturating_sub(self.last_end);
        if pending == 0 {
            return false;
        }
        let elapsed = now.saturating_duration_since(self.last_round);
        let pace = (Duration::from_micros(50) * u32::try_from(online).unwrap_or(u32::MAX))
            .clamp(ROUND_STEP, Duration::from_secs(1));
        let per_window = STORM_RATE * WINDOW.as_millis() as u32 / 1000;
        let storm = self.window.max(self.previous_window) > per_window;
        // Half the log unread is a round whatever the pace: past the log's
        // end, sessions would miss notices.
        let due =
            (elapsed >= pace && (!storm || elapsed >= STORM_WAIT)) || pending >= self.backlog / 2;
        if due {
            self.last_end = end;
            self.last_round = now;
        }
        due
    }
}

impl Default for Rounds {
    fn default() -> Self {
        Self::new(65_536, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(read: Read) -> String {
        match read {
            Read::Frame(bytes) => String::from_utf8(bytes.to_vec()).expect("utf-8"),
            Read::Nothing => String::new(),
            Read::FellBehind => "fell behind".into(),
        }
    }

    fn read(log: &PresenceLog, user: &str, batched: bool, cursor: &mut u64) -> String {
        let mut reader = Reader {
            user,
            batched,
            cursor,
        };
        text(log.read_upto(&mut reader, u64::MAX))
    }

    #[test]
    fn one_batch_lists_every_notice_since_the_cursor_but_ones_own() {
        let log = PresenceLog::new(100, 1 << 20);
        let mut cursor = log.end();
        log.append("hans", true, 1, None);
        log.append("leia", true, 2, None);
        log.append("hans", false, 3, None);
        let frame = read(&log, "leia", true, &mut cursor);
        assert_eq!(
            frame,
            "{\"type\":\"presence_batch\",\"events\":[[\"hans\",true,1],[\"hans\",false,3]]}\n"
        );
        let parsed: ServerFrame = serde_json::from_str(frame.trim_end()).expect("a frame");
        assert!(matches!(parsed, ServerFrame::PresenceBatch { events } if events.len() == 2));
        assert_eq!(cursor, 3);
        assert_eq!(read(&log, "leia", true, &mut cursor), "");
    }

    #[test]
    fn version_one_readers_get_one_frame_per_notice() {
        let log = PresenceLog::new(100, 1 << 20);
        let mut cursor = 0;
        log.append("hans", true, 1, None);
        log.append("luke", true, 2, None);
        let lines = read(&log, "leia", false, &mut cursor);
        assert_eq!(
            lines,
            "{\"type\":\"presence\",\"user\":\"hans\",\"online\":true,\"at\":1}\n\
             {\"type\":\"presence\",\"user\":\"luke\",\"online\":true,\"at\":2}\n"
        );
    }

    #[test]
    fn a_notice_is_hidden_from_those_the_user_blocked_then() {
        let log = PresenceLog::new(100, 1 << 20);
        let blocked: HashSet<String> = ["vader".to_owned()].into();
        log.append("luke", true, 1, Some(Arc::new(blocked)));
        let (mut vader, mut leia) = (0, 0);
        assert_eq!(read(&log, "vader", true, &mut vader), "");
        assert_eq!(vader, 1, "skipped, not read again");
        assert!(read(&log, "leia", true, &mut leia).contains("luke"));
    }

    #[test]
    fn reading_stops_at_the_mark_and_at_the_batch_size() {
        let log = PresenceLog::new(100_000, 1 << 30);
        for i in 0..5000 {
            log.append(&format!("user{i}"), true, i, None);
        }
        let mut cursor = 0;
        let mut reader = Reader {
            user: "me",
            batched: true,
            cursor: &mut cursor,
        };
        assert!(text(log.read_upto(&mut reader, 2)).contains("user1"));
        assert_eq!(*reader.cursor, 2);
        let big = text(log.read_upto(&mut reader, u64::MAX));
        assert!(big.len() > MAX_BATCH_BYTES && big.len() < MAX_BATCH_BYTES + 100);
        assert!(*reader.cursor < 5000);
    }

    #[test]
    fn a_reader_left_behind_the_bounded_log_is_told() {
        let log = PresenceLog::new(3, 1 << 20);
        let mut cursor = 0;
        for i in 0..5 {
            log.append("hans", i % 2 == 0, i, None);
        }
        assert_eq!(log.end(), 5);
        assert_eq!(read(&log, "leia", true, &mut cursor), "fell behind");
        let mut fresh = 2;
        assert!(read(&log, "leia", true, &mut fresh).contains("hans"));
    }

    #[test]
    fn on_a_calm_server_a_notice_goes_at_once_then_rounds_keep_a_pace() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut rounds = Rounds::new(65_536, start);
        assert!(!rounds.tick(0, 10, at(0)), "nothing new");
        assert!(rounds.appended(1, 10, at(0)), "at once");
        assert!(!rounds.tick(1, 10, at(20)), "nothing new since");
        // 10,000 online: at most every 0.5 s, even when calm.
        assert!(!rounds.appended(2, 10_000, at(100)));
        assert!(!rounds.tick(2, 10_000, at(400)));
        assert!(rounds.tick(2, 10_000, at(520)));
    }

    #[test]
    fn a_storm_waits_until_it_passes_within_bounds() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let online = 10_000;
        let mut rounds = Rounds::new(1 << 20, start);
        assert!(rounds.appended(1, online, at(0)));
        // 1,000 logins a second, with a pause of 50 ms in the middle, and
        // a pause of 2 s in their notices (a slow disk delays the offline
        // queues) while logins go on: still a storm.
        let mut end = 1;
        let mut first = None;
        for ms in 1..62_000u64 {
            let paused = (3000..3050).contains(&ms);
            let slow_disk = (5000..7000).contains(&ms);
            let due = if paused {
                rounds.tick(end, online, at(ms))
            } else if slow_disk {
                rounds.activity(at(ms));
                rounds.tick(end, online, at(ms))
            } else {
                end += 1;
                rounds.activity(at(ms));
                rounds.appended(end, online, at(ms))
            };
            if due {
                first = Some(ms);
                break;
            }
        }
        assert_eq!(first, Some(60_000), "waits at most the storm's bound");
        // Once the logins stop, the round comes when the rate has fallen
        // (and the pace allows: 0.5 s with 10,000 online).
        assert!(!rounds.appended(end + 1, online, at(60_001)));
        let quiet = (60_020..62_000u64)
            .step_by(20)
            .find(|&ms| rounds.tick(end + 1, online, at(ms)))
            .expect("a round after the storm");
        assert!((60_500..=60_520).contains(&quiet), "{quiet}");
        // Half the log does not wait for the storm to pass.
        let mut rounds = Rounds::new(200, start);
        assert!(rounds.appended(1, online, at(0)));
        for i in 2..=101 {
            assert_eq!(rounds.appended(i, online, at(i)), i == 101, "entry {i}");
        }
    }
}

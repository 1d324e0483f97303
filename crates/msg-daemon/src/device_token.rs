//! The device tokens msgd keeps so that it can log in again without the
//! password after a crash, a reboot or a restart: one file per server
//! address and user in `tokens/` of the data directory (0700), each file
//! 0600, written atomically (a temporary file, fsynced, renamed).
//!
//! A token is a secret: it is held as a [`Secret`] and never logged.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use msg_proto::{Secret, Timestamp, now_ms, validate};
use serde::{Deserialize, Serialize};

/// Files larger than this are not tokens of ours; not read.
const MAX_FILE_LEN: u64 = 4096;
/// Token files looked at, at most, when choosing one at start-up.
const MAX_FILES: usize = 64;

/// A saved token and whose it is.
#[derive(Debug, Clone)]
pub struct SavedToken {
    pub server: String,
    pub user: String,
    pub token: Secret,
}

#[derive(Serialize, Deserialize)]
struct File {
    server: String,
    user: String,
    token: Secret,
    /// When it was saved: the newest is used at start-up.
    saved_at: Timestamp,
}

/// The directory of saved tokens.
#[derive(Debug, Clone)]
pub struct DeviceTokens {
    dir: PathBuf,
}

impl DeviceTokens {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The file of `user`'s token for `server`. Its name only has to be
    /// unique enough: the file says whose token it holds.
    fn path(&self, server: &str, user: &str) -> PathBuf {
        let safe = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                        c
                    } else {
                        '_'
                    }
                })
                .take(100)
                .collect()
        };
        self.dir
            .join(format!("{}@{}.json", safe(user), safe(server)))
    }

    /// Saves `user`'s token for `server`, replacing the one there was.
    pub fn save(&self, server: &str, user: &str, token: &Secret) -> io::Result<()> {
        msg_local::paths::create_private_dir(&self.dir)?;
        let file = File {
            server: server.to_owned(),
            user: user.to_owned(),
            token: token.clone(),
            saved_at: now_ms(),
        };
        let text = serde_json::to_vec(&file).map_err(io::Error::other)?;
        write_private_atomically(&self.path(server, user), &text)
    }

    /// `user`'s saved token for `server`, if there is one.
    pub fn load(&self, server: &str, user: &str) -> Option<Secret> {
        read_token(&self.path(server, user))
            .filter(|file| file.server == server && file.user == user)
            .map(|file| file.token)
    }

    /// Forgets `user`'s token for `server` (none is fine).
    pub fn delete(&self, server: &str, user: &str) {
        match fs::remove_file(self.path(server, user)) {
            Ok(()) => tracing::info!("deleted the saved device token"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot delete the saved device token: {e}"),
        }
    }

    /// The most recently saved token, if any: the account msgd logs in to
    /// by itself when it starts.
    pub fn latest(&self) -> Option<SavedToken> {
        let entries = fs::read_dir(&self.dir).ok()?;
        entries
            .flatten()
            .take(MAX_FILES)
            .filter_map(|entry| read_token(&entry.path()))
            .max_by_key(|file| file.saved_at)
            .map(|file| SavedToken {
                server: file.server,
                user: file.user,
                token: file.token,
            })
    }
}

/// A token file, if it is one: small, a regular file, well-formed.
fn read_token(path: &Path) -> Option<File> {
    let meta = fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE_LEN {
        return None;
    }
    let file: File = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    let token = file.token.expose();
    let well_formed = validate::is_valid_username(&file.user)
        && !file.server.is_empty()
        && file.server.len() <= 300
        && token.len() == 64
        && token.bytes().all(|b| b.is_ascii_hexdigit());
    well_formed.then_some(file)
}

/// Writes `data` to `path` readable by the owner only: a new temporary
/// file beside it, fsynced, renamed over it, and the directory fsynced, so
/// that a crash leaves the old file or the new one, never half of one.
fn write_private_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".token-{}.tmp", msg_proto::random_hex(8)));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        #[cfg(unix)]
        fs::File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// How this device is named on the server: `msgd@HOSTNAME`.
pub fn device_label() -> String {
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    format!("msgd@{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Secret {
        Secret(msg_proto::random_hex(32))
    }

    #[test]
    fn a_saved_token_is_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = DeviceTokens::new(dir.path().join("tokens"));
        let saved = token();
        tokens.save("127.0.0.1:4747", "hans", &saved).unwrap();
        let latest = tokens.latest().unwrap();
        assert_eq!(latest.user, "hans");
        assert_eq!(latest.server, "127.0.0.1:4747");
        assert_eq!(latest.token, saved);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = tokens.path("127.0.0.1:4747", "hans");
            let mode = fs::metadata(path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        tokens.delete("127.0.0.1:4747", "hans");
        assert!(tokens.latest().is_none());
    }

    #[test]
    fn the_newest_wins_and_junk_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = DeviceTokens::new(dir.path().to_owned());
        tokens.save("a:1", "hans", &token()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        tokens.save("b:2", "luke", &token()).unwrap();
        fs::write(dir.path().join("junk.json"), b"{not json").unwrap();
        fs::write(
            dir.path().join("bad.json"),
            br#"{"server":"x","user":"a b","token":"zz","saved_at":99999999999999}"#,
        )
        .unwrap();
        assert_eq!(tokens.latest().unwrap().user, "luke");
    }

    #[test]
    fn the_token_does_not_show_in_debug_output() {
        let saved = SavedToken {
            server: "s".into(),
            user: "u".into(),
            token: Secret("ab".repeat(32)),
        };
        assert!(!format!("{saved:?}").contains("abab"));
    }
}

//! The credentials file: reading it (comments and malformed lines
//! skipped, names unique ignoring case) and editing it by whole, atomic
//! rewrites that keep every other line.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use msg_proto::validate::{is_valid_username, username_key};

use super::LoadReport;
use super::{AccountsError, Credential, Stamp, Table, check_new_password, hash_password};

pub(super) fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Splits a line into username and password field, or `None` for comments,
/// blank lines and malformed lines.
pub(super) fn parse_line(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (user, rest) = line.split_once(char::is_whitespace)?;
    let password = rest.trim();
    (is_valid_username(user) && !password.is_empty()).then_some((user, password))
}

fn is_content(line: &str) -> bool {
    let line = line.trim();
    !line.is_empty() && !line.starts_with('#')
}

pub(super) fn read_table(path: &Path) -> Result<(Table, LoadReport), AccountsError> {
    let stamp = Stamp::File(stamp(path));
    let text = fs::read_to_string(path).map_err(AccountsError::Read)?;
    let (users, report) = parse_text(&text);
    Ok((Table { users, stamp }, report))
}

/// The accounts in the text of a credentials file, and a summary.
pub(super) fn parse_text(text: &str) -> (HashMap<String, Credential>, LoadReport) {
    let mut report = LoadReport::default();
    let mut users: HashMap<String, Credential> = HashMap::new();
    // Name (ignoring case) -> the spelling that has it.
    let mut spellings: HashMap<String, String> = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        match parse_line(line) {
            Some((user, password)) => {
                let spelling = spellings
                    .entry(username_key(user))
                    .or_insert_with(|| user.to_owned());
                if spelling != user {
                    report.skipped_lines += 1;
                    tracing::warn!(
                        line = number + 1,
                        "ignoring an account whose name differs from an earlier one only in case"
                    );
                    continue;
                }
                // The same name again: the later line wins, as it always did.
                users.insert(user.to_owned(), Credential::parse(password));
            }
            None if is_content(line) => {
                report.skipped_lines += 1;
                tracing::warn!(line = number + 1, "ignoring a malformed credentials line");
            }
            None => {}
        }
    }
    report.accounts = users.len();
    report.plain = users
        .values()
        .filter(|c| matches!(c, Credential::Plain(_)))
        .count();
    (users, report)
}

/// Parses the text of a credentials file as loading it does, and returns
/// the summary: the entry point for the fuzzer and for checking a file.
pub fn check_credentials(text: &str) -> LoadReport {
    parse_text(text).1
}

/// Whether [`set_password`] changed an existing account or added one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordChange {
    Changed,
    Added,
}

/// Hashes `password` with argon2id and writes it for `user` into the file at
/// `path` (created if missing), keeping every other line as it was.
pub fn set_password(
    path: &Path,
    user: &str,
    password: &str,
) -> Result<PasswordChange, AccountsError> {
    check_new_password(user, password)?;
    let hash = hash_password(password)?;
    let original = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(AccountsError::Read(e)),
    };
    // The spelling that holds the name is the first one in the file (as
    // loading reads it); another spelling may not add a twin.
    let key = username_key(user);
    let holder = original
        .lines()
        .filter_map(parse_line)
        .find(|(name, _)| username_key(name) == key);
    if let Some((name, _)) = holder
        && name != user
    {
        return Err(AccountsError::NameTaken(name.to_owned()));
    }
    let (text, change) = with_password(&original, user, &hash);
    write_atomically(path, &text).map_err(AccountsError::Write)?;
    Ok(change)
}

/// The file's new text: `user`'s line replaced in place, or appended.
fn with_password(original: &str, user: &str, field: &str) -> (String, PasswordChange) {
    let mut out = String::with_capacity(original.len() + field.len() + user.len() + 2);
    let mut change = PasswordChange::Added;
    for line in original.lines() {
        match parse_line(line) {
            Some((name, _)) if name == user => {
                if change == PasswordChange::Added {
                    out.push_str(&format!("{user} {field}\n"));
                    change = PasswordChange::Changed;
                }
                // A duplicate line for the same user would shadow the new
                // password; drop it.
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if change == PasswordChange::Added {
        out.push_str(&format!("{user} {field}\n"));
    }
    (out, change)
}

/// Creates an empty credentials file (0600) when there is none, for a
/// server that lets users register.
pub fn create_if_missing(path: &Path) -> std::io::Result<()> {
    if path.try_exists()? {
        return Ok(());
    }
    write_atomically(path, "")
}

/// Temp file in the same directory, fsync, rename over, fsync the directory:
/// after a crash the file is either the old or the new version, never a mix.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "credentials".into());
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // Password hashes: the owner's alone, whatever the umask or the
            // old file's mode.
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        #[cfg(unix)]
        fs::File::open(&dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

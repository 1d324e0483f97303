//! The account list: the credentials file, one `username password` a line.
//!
//! A password beginning with `$argon2` is an argon2 PHC hash; anything else is
//! a plain password (the classic format). The file is edited only by whole,
//! atomic rewrites (temp file, fsync, rename) that keep every other line and
//! comment, so a reader never sees half a file.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use msg_proto::validate::{USERNAME_RULE, is_valid_password, is_valid_username, username_key};
use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("cannot read the credentials file: {0}")]
    Read(std::io::Error),
    #[error("cannot write the credentials file: {0}")]
    Write(std::io::Error),
    #[error("invalid username ({rule})", rule = USERNAME_RULE)]
    InvalidUsername,
    #[error("invalid password (must be non-empty, without line breaks)")]
    InvalidPassword,
    #[error("user already exists")]
    UserExists,
    /// Another account has the same name but for case (`Luke` and `luke`).
    #[error("the account {0} already exists (names are unique ignoring case)")]
    NameTaken(String),
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// How a password is kept in the file.
#[derive(Clone)]
enum Credential {
    Plain(String),
    Hash(String),
}

impl Credential {
    fn parse(field: &str) -> Self {
        if field.starts_with("$argon2") {
            Self::Hash(field.to_owned())
        } else {
            Self::Plain(field.to_owned())
        }
    }

    /// Constant-time for plain passwords; argon2's own verification compares
    /// hashes in constant time. Slow for hashes by design: call off the runtime.
    fn verify(&self, password: &str) -> bool {
        match self {
            Self::Plain(expected) => expected.as_bytes().ct_eq(password.as_bytes()).into(),
            Self::Hash(phc) => match PasswordHash::new(phc) {
                Ok(hash) => Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok(),
                Err(_) => false,
            },
        }
    }
}

/// One parsed version of the file.
#[derive(Default)]
struct Table {
    users: HashMap<String, Credential>,
    /// What the file looked like when read, to notice changes cheaply.
    stamp: Option<(SystemTime, u64)>,
}

/// Summary of a load, for the start-up log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub accounts: usize,
    pub plain: usize,
    pub skipped_lines: usize,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Splits a line into username and password field, or `None` for comments,
/// blank lines and malformed lines.
fn parse_line(line: &str) -> Option<(&str, &str)> {
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

fn read_table(path: &Path) -> Result<(Table, LoadReport), AccountsError> {
    let stamp = stamp(path);
    let text = fs::read_to_string(path).map_err(AccountsError::Read)?;
    let (users, report) = parse_text(&text);
    Ok((Table { users, stamp }, report))
}

/// The accounts in the text of a credentials file, and a summary.
fn parse_text(text: &str) -> (HashMap<String, Credential>, LoadReport) {
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

/// The live account list, shared by all connections.
pub struct Accounts {
    path: PathBuf,
    table: RwLock<Arc<Table>>,
    /// Serialises this process's own rewrites of the file.
    write_lock: std::sync::Mutex<()>,
}

impl Accounts {
    pub fn load(path: &Path) -> Result<(Self, LoadReport), AccountsError> {
        let (table, report) = read_table(path)?;
        Ok((
            Self {
                path: path.to_owned(),
                table: RwLock::new(Arc::new(table)),
                write_lock: std::sync::Mutex::new(()),
            },
            report,
        ))
    }

    fn current(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn exists(&self, user: &str) -> bool {
        self.current().users.contains_key(user)
    }

    /// The account whose name equals `user` ignoring case, if any.
    pub fn spelled(&self, user: &str) -> Option<String> {
        let key = username_key(user);
        self.current()
            .users
            .keys()
            .find(|name| username_key(name) == key)
            .cloned()
    }

    /// Checks a password. Slow (argon2): run it on a blocking thread.
    /// Unknown users return `None`.
    pub fn verify(&self, user: &str, password: &str) -> Option<bool> {
        let credential = self.current().users.get(user).cloned()?;
        Some(credential.verify(password))
    }

    /// Re-reads the file if it changed since the last read. Returns the new
    /// summary when it did.
    pub fn reload_if_changed(&self) -> Result<Option<LoadReport>, AccountsError> {
        if stamp(&self.path) == self.current().stamp {
            return Ok(None);
        }
        self.reload().map(Some)
    }

    pub fn reload(&self) -> Result<LoadReport, AccountsError> {
        let (table, report) = read_table(&self.path)?;
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
        Ok(report)
    }

    /// Adds a new account (registration). Fails if the name is taken.
    pub fn register(&self, user: &str, password: &str) -> Result<(), AccountsError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        // Re-read first so an account added by `passwd` a moment ago counts.
        self.reload()?;
        match self.spelled(user) {
            Some(name) if name == user => return Err(AccountsError::UserExists),
            Some(name) => return Err(AccountsError::NameTaken(name)),
            None => {}
        }
        set_password(&self.path, user, password)?;
        self.reload()?;
        Ok(())
    }
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
    if !is_valid_username(user) {
        return Err(AccountsError::InvalidUsername);
    }
    if !is_valid_password(password) {
        return Err(AccountsError::InvalidPassword);
    }
    let salt = SaltString::generate(&mut OsRng);
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| AccountsError::Hash(e.to_string()))?
        .to_string();
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

#[cfg(test)]
mod tests;

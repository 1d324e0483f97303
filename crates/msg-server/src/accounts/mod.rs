//! The account list: the credentials file, one `username password` a line,
//! or in cluster mode the shared database's accounts table
//! ([`crate::cluster::accounts`]), which a node's `--credentials` file only
//! seeds.
//!
//! A password beginning with `$argon2` is an argon2 PHC hash; anything else is
//! a plain password (the classic format). The file is edited only by whole,
//! atomic rewrites (temp file, fsync, rename) that keep every other line and
//! comment, so a reader never sees half a file.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use msg_proto::validate::{USERNAME_RULE, is_valid_password, is_valid_username, username_key};
use subtle::ConstantTimeEq;

use crate::cluster::ClusterError;
use crate::cluster::accounts as db;

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
    #[error(transparent)]
    Database(#[from] ClusterError),
}

/// How a password is kept in the file (or the accounts table).
#[derive(Clone)]
pub enum Credential {
    Plain(String),
    Hash(String),
}

impl Credential {
    /// The field as the file (or the accounts table) holds it.
    fn field(&self) -> &str {
        match self {
            Self::Plain(text) | Self::Hash(text) => text,
        }
    }

    pub(crate) fn parse(field: &str) -> Self {
        if field.starts_with("$argon2") {
            Self::Hash(field.to_owned())
        } else {
            Self::Plain(field.to_owned())
        }
    }

    /// Whether `password` is this one. Constant-time for plain passwords;
    /// argon2's own verification compares hashes in constant time. Slow for
    /// hashes by design: call off the runtime.
    pub fn check(&self, password: &str) -> bool {
        self.verify(password)
    }

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

/// One version of the account list.
#[derive(Default)]
struct Table {
    users: HashMap<String, Credential>,
    /// What the source looked like when read, to notice changes cheaply.
    stamp: Stamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stamp {
    File(Option<(SystemTime, u64)>),
    Database(db::Stamp),
}

impl Default for Stamp {
    fn default() -> Self {
        Self::File(None)
    }
}

/// Where the accounts live.
enum Source {
    File(PathBuf),
    /// The cluster's table. Its calls block (they come from blocking
    /// threads, beside the password checks) on the server's runtime.
    Database {
        pool: deadpool_postgres::Pool,
        runtime: tokio::runtime::Handle,
    },
}

/// Summary of a load, for the start-up log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub accounts: usize,
    pub plain: usize,
    pub skipped_lines: usize,
}

/// The live account list, shared by all connections.
pub struct Accounts {
    source: Source,
    table: RwLock<Arc<Table>>,
    /// Serialises this process's own rewrites of the file.
    write_lock: std::sync::Mutex<()>,
}

impl Accounts {
    pub fn load(path: &Path) -> Result<(Self, LoadReport), AccountsError> {
        let (table, report) = read_table(path)?;
        Ok((Self::new(Source::File(path.to_owned()), table), report))
    }

    /// The accounts of a cluster's database, after adding those of
    /// `seed` (a credentials file) that it lacks. Returns the list and how
    /// many accounts the file added.
    pub async fn in_database(
        pool: deadpool_postgres::Pool,
        seed: Option<&Path>,
    ) -> Result<(Self, LoadReport, u64), AccountsError> {
        let mut added = 0;
        if let Some(path) = seed {
            let text = fs::read_to_string(path).map_err(AccountsError::Read)?;
            let (users, _) = parse_text(&text);
            let entries: Vec<(String, String)> = users
                .iter()
                .map(|(user, credential)| (user.clone(), credential.field().to_owned()))
                .collect();
            added = db::import(&pool, &entries).await?;
        }
        let (table, report) = table_of(db::all(&pool).await?);
        let source = Source::Database {
            pool,
            runtime: tokio::runtime::Handle::current(),
        };
        Ok((Self::new(source, table), report, added))
    }

    fn new(source: Source, table: Table) -> Self {
        Self {
            source,
            table: RwLock::new(Arc::new(table)),
            write_lock: std::sync::Mutex::new(()),
        }
    }

    fn current(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn exists(&self, user: &str) -> bool {
        self.current().users.contains_key(user)
    }

    /// Whether `user` has an account. In a cluster, one added on another
    /// node a moment ago counts: a name this node does not know is looked
    /// up (and kept), ahead of the next poll.
    pub async fn knows(&self, user: &str) -> bool {
        if self.exists(user) {
            return true;
        }
        let Source::Database { pool, .. } = &self.source else {
            return false;
        };
        match db::credential(pool, user).await {
            Ok(Some(field)) => {
                let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
                let mut users = table.users.clone();
                users.insert(user.to_owned(), Credential::parse(&field));
                // The old stamp: the next poll reads the whole list.
                *table = Arc::new(Table {
                    users,
                    stamp: table.stamp,
                });
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look an account up");
                false
            }
        }
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

    /// `user`'s credential, to check a password with off the runtime
    /// ([`Credential::check`]): in a cluster read afresh (a password changed
    /// on another node counts at once), before the slow check takes one of
    /// the few places for password checks.
    pub async fn credential(&self, user: &str) -> Result<Option<Credential>, AccountsError> {
        match &self.source {
            Source::File(_) => Ok(self.current().users.get(user).cloned()),
            Source::Database { pool, .. } => Ok(db::credential(pool, user)
                .await?
                .map(|field| Credential::parse(&field))),
        }
    }

    /// Checks a password. Slow (argon2): run it on a blocking thread.
    /// Unknown users return `None`. In a cluster the credential is read
    /// afresh, so a password changed on another node counts at once.
    pub fn verify(&self, user: &str, password: &str) -> Result<Option<bool>, AccountsError> {
        let credential = match &self.source {
            Source::File(_) => self.current().users.get(user).cloned(),
            Source::Database { pool, runtime } => block_on(runtime, db::credential(pool, user))?
                .map(|field| Credential::parse(&field)),
        };
        Ok(credential.map(|credential| credential.verify(password)))
    }

    /// Re-reads the list if it changed since the last read. Returns the
    /// new summary when it did. Blocks: call it from a blocking thread.
    pub fn reload_if_changed(&self) -> Result<Option<LoadReport>, AccountsError> {
        let now = match &self.source {
            Source::File(path) => Stamp::File(stamp(path)),
            Source::Database { pool, runtime } => {
                Stamp::Database(block_on(runtime, db::stamp(pool))?)
            }
        };
        if now == self.current().stamp {
            return Ok(None);
        }
        self.reload().map(Some)
    }

    /// Reads the whole list again. Blocks: call it from a blocking thread.
    pub fn reload(&self) -> Result<LoadReport, AccountsError> {
        let (table, report) = match &self.source {
            Source::File(path) => read_table(path)?,
            Source::Database { pool, runtime } => table_of(block_on(runtime, db::all(pool))?),
        };
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
        Ok(report)
    }

    /// Adds a new account (registration). Fails if the name is taken.
    pub fn register(&self, user: &str, password: &str) -> Result<(), AccountsError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        match &self.source {
            Source::File(path) => {
                // Re-read first so an account added by `passwd` a moment ago counts.
                self.reload()?;
                match self.spelled(user) {
                    Some(name) if name == user => return Err(AccountsError::UserExists),
                    Some(name) => return Err(AccountsError::NameTaken(name)),
                    None => {}
                }
                set_password(path, user, password)?;
            }
            Source::Database { pool, runtime } => {
                check_new_password(user, password)?;
                let hash = hash_password(password)?;
                match block_on(runtime, db::add(pool, user, &hash))? {
                    db::Added::Added => {}
                    db::Added::Taken(name) if name == user => {
                        return Err(AccountsError::UserExists);
                    }
                    db::Added::Taken(name) => return Err(AccountsError::NameTaken(name)),
                }
            }
        }
        self.reload()?;
        Ok(())
    }
}

/// Runs a database call from a blocking thread (or, briefly, a worker).
fn block_on<F: std::future::Future>(runtime: &tokio::runtime::Handle, call: F) -> F::Output {
    tokio::task::block_in_place(|| runtime.block_on(call))
}

/// The table of the accounts read from the database.
fn table_of((rows, stamp): (Vec<(String, String)>, db::Stamp)) -> (Table, LoadReport) {
    let users: HashMap<String, Credential> = rows
        .into_iter()
        .map(|(user, field)| {
            let credential = Credential::parse(&field);
            (user, credential)
        })
        .collect();
    let report = LoadReport {
        accounts: users.len(),
        plain: users
            .values()
            .filter(|c| matches!(c, Credential::Plain(_)))
            .count(),
        skipped_lines: 0,
    };
    let stamp = Stamp::Database(stamp);
    (Table { users, stamp }, report)
}

/// Sets `user`'s password in a cluster's database (`msg-server passwd
/// --store`), adding the account if there is none.
pub async fn set_password_in_database(
    pool: &deadpool_postgres::Pool,
    user: &str,
    password: &str,
) -> Result<PasswordChange, AccountsError> {
    check_new_password(user, password)?;
    let hash = hash_password(password)?;
    match db::set(pool, user, &hash).await? {
        db::Set::Changed => Ok(PasswordChange::Changed),
        db::Set::Added => Ok(PasswordChange::Added),
        db::Set::Taken(name) => Err(AccountsError::NameTaken(name)),
    }
}

fn check_new_password(user: &str, password: &str) -> Result<(), AccountsError> {
    if !is_valid_username(user) {
        return Err(AccountsError::InvalidUsername);
    }
    if !is_valid_password(password) {
        return Err(AccountsError::InvalidPassword);
    }
    Ok(())
}

/// An argon2id PHC string for `password`, with a fresh salt.
fn hash_password(password: &str) -> Result<String, AccountsError> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| AccountsError::Hash(e.to_string()))?
        .to_string())
}

mod file;
#[cfg(test)]
mod tests;

pub use file::{PasswordChange, check_credentials, create_if_missing, set_password};
use file::{parse_text, read_table, stamp};

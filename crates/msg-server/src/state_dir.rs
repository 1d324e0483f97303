//! The server's state directory: where it is, that it is the owner's alone,
//! and that one server at a time uses it.
//!
//! Two servers on one database would each hand out sessions and drain the
//! same offline queues; a lock file held for the process's life refuses the
//! second. The default directory is per port so that two servers on one
//! machine (different ports) never meet by accident.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// The files the store keeps; each is made the owner's alone.
const DATABASE_FILES: [&str; 3] = ["msg.db", "msg.db-wal", "msg.db-shm"];
const LOCK_FILE: &str = "lock";

#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("no home directory to keep state in; pass --state-dir")]
    NoHome,
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "another msg-server is using the state directory {0}; \
         give this one its own with --state-dir"
    )]
    InUse(PathBuf),
}

/// `explicit` (`--state-dir`), else systemd's `$STATE_DIRECTORY` (first
/// entry), else `<data dir>/msg-server/<port>`.
pub fn resolve(explicit: Option<&Path>, port: u16) -> Result<PathBuf, StateDirError> {
    if let Some(dir) = explicit {
        return Ok(dir.to_owned());
    }
    if let Some(dirs) = std::env::var_os("STATE_DIRECTORY")
        && let Some(first) = std::env::split_paths(&dirs).next()
    {
        return Ok(first);
    }
    let base = directories::ProjectDirs::from("", "", "msg-server")
        .map(|dirs| dirs.data_dir().to_owned())
        .ok_or(StateDirError::NoHome)?;
    let dir = base.join(port.to_string());
    adopt_unported_database(&base, &dir, port);
    Ok(dir)
}

/// Servers before the per-port layout kept `msg.db` straight in the data
/// directory; the default port's server takes it over rather than start
/// empty and strand the queued messages.
fn adopt_unported_database(base: &Path, dir: &Path, port: u16) {
    if port != msg_proto::DEFAULT_PORT || dir.exists() || !base.join("msg.db").exists() {
        return;
    }
    if let Err(e) = create_private_dir(dir) {
        tracing::warn!(error = %e, "cannot move the old database into its per-port directory");
        return;
    }
    for name in DATABASE_FILES {
        let from = base.join(name);
        if from.exists()
            && let Err(e) = fs::rename(&from, dir.join(name))
        {
            tracing::warn!(file = name, error = %e, "cannot move an old database file");
        }
    }
    tracing::info!(dir = %dir.display(), "moved the database into its per-port directory");
}

/// A state directory prepared for use: private, and locked while this value
/// lives.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    _lock: File,
}

impl StateDir {
    /// Creates `path` if needed, makes it and the database files the
    /// owner's alone (0700 and 0600, whatever the umask or an older server
    /// left), and takes the lock.
    pub fn prepare(path: PathBuf) -> Result<Self, StateDirError> {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| StateDirError::Io { path, source }
        };
        create_private_dir(&path).map_err(io_err(&path))?;
        let lock_path = path.join(LOCK_FILE);
        let lock = create_private_file(&lock_path).map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StateDirError::InUse(path)),
            Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        // SQLite gives the WAL and shared-memory files the database's mode,
        // so the database is created private before SQLite opens it.
        let database = path.join(DATABASE_FILES[0]);
        create_private_file(&database).map_err(io_err(&database))?;
        for name in DATABASE_FILES {
            let file = path.join(name);
            match make_private(&file, 0o600) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&file)(e)),
            }
        }
        Ok(Self { path, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn create_private_dir(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)?;
    make_private(path, 0o700)
}

fn create_private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Sets `mode` on Unix; elsewhere files get their directory's ACL.
fn make_private(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = mode;
        fs::metadata(path).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_held_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let first = StateDir::prepare(path.clone()).unwrap();
        assert!(matches!(
            StateDir::prepare(path.clone()),
            Err(StateDirError::InUse(_))
        ));
        drop(first);
        StateDir::prepare(path).unwrap();
    }
}

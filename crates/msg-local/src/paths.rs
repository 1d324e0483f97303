//! Where the daemon keeps its socket, inbox, log and config.
//!
//! Everything comes from `directories`, so `HOME` and the `XDG_*` variables
//! place it and two accounts on one machine are two environments.
//! `MSG_RUNTIME_DIR` overrides the socket's directory (tests, several accounts).

use std::io;
use std::path::{Path, PathBuf};

use directories::ProjectDirs;

/// Overrides the directory of the control socket and the lock file.
pub const RUNTIME_DIR_ENV: &str = "MSG_RUNTIME_DIR";

#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    #[error("no home directory found; set HOME")]
    NoHome,
}

#[derive(Debug, Clone)]
pub struct Paths {
    /// Socket and lock file; private to the user (0700).
    pub runtime_dir: PathBuf,
    /// Inbox and log.
    pub data_dir: PathBuf,
    pub config_file: PathBuf,
}

impl Paths {
    pub fn from_env() -> Result<Self, PathsError> {
        let dirs = ProjectDirs::from("", "", "msg").ok_or(PathsError::NoHome)?;
        let data_dir = dirs.data_dir().to_owned();
        let runtime_dir = match std::env::var_os(RUNTIME_DIR_ENV) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            // No XDG_RUNTIME_DIR (e.g. macOS, a bare ssh session): a private
            // directory under the data dir serves the same purpose.
            _ => dirs
                .runtime_dir()
                .map_or_else(|| data_dir.join("run"), Path::to_owned),
        };
        Ok(Self {
            runtime_dir,
            data_dir,
            config_file: dirs.config_dir().join("config.toml"),
        })
    }

    pub fn socket_path(&self) -> PathBuf {
        self.runtime_dir.join("msgd.sock")
    }

    pub fn lock_path(&self) -> PathBuf {
        self.runtime_dir.join("msgd.lock")
    }

    pub fn inbox_path(&self) -> PathBuf {
        self.data_dir.join("inbox.sqlite3")
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("msgd.log")
    }
}

/// Creates `dir` (and its parents) readable by the owner only.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir)?;
        // The directory may predate us with a looser mode.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    #[cfg(not(unix))]
    builder.create(dir)?;
    Ok(())
}

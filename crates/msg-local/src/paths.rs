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

    /// The certificate fingerprints the user pinned.
    pub fn known_servers_path(&self) -> PathBuf {
        self.data_dir.join(crate::known_servers::FILE_NAME)
    }

    pub fn inbox_path(&self) -> PathBuf {
        self.data_dir.join("inbox.sqlite3")
    }

    /// msgd's saved device tokens, one file per server and user (0700).
    pub fn tokens_dir(&self) -> PathBuf {
        self.data_dir.join("tokens")
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("msgd.log")
    }
}

/// Creates `dir` (and missing parents) readable by the owner only, or
/// checks the one that is there: it must be a real directory (a symlink in
/// its place is refused, never followed), owned by this user; a looser mode
/// is tightened to 0700 through the opened directory itself, so a path
/// swapped in between cannot redirect the change.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
        if let Some(parent) = dir.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| at(dir, e))?;
        }
        // Not recursive: mkdir never follows a symlink in the last place.
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(at(dir, e)),
        }
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(dir)
            .map_err(|e| match e.raw_os_error() {
                // Linux says ENOTDIR for a symlink opened with O_DIRECTORY.
                Some(libc::ELOOP | libc::ENOTDIR) => {
                    let symlink = std::fs::symlink_metadata(dir)
                        .is_ok_and(|meta| meta.file_type().is_symlink());
                    if symlink {
                        untrusted(dir, "it is a symbolic link")
                    } else {
                        untrusted(dir, "it is not a directory")
                    }
                }
                _ => at(dir, e),
            })?;
        let meta = opened.metadata().map_err(|e| at(dir, e))?;
        let me = crate::uid::current_uid();
        if meta.uid() != me {
            return Err(untrusted(
                dir,
                &format!("it belongs to uid {}, not to you (uid {me})", meta.uid()),
            ));
        }
        if meta.mode() & 0o077 != 0 {
            opened
                .set_permissions(std::fs::Permissions::from_mode(0o700))
                .map_err(|e| at(dir, e))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    std::fs::DirBuilder::new()
        .recursive(true)
        .create(dir)
        .map_err(|e| at(dir, e))
}

/// The error `e` with the path it is about.
fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// A directory msg must not use, and why.
#[cfg(unix)]
fn untrusted(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "refusing to use {}: {why}; remove it or point MSG_RUNTIME_DIR elsewhere",
            path.display()
        ),
    )
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_missing_dirs_private_and_tightens_a_loose_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/run");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn a_planted_symlink_is_refused_and_its_target_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("victim");
        std::fs::create_dir(&target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = tmp.path().join("run");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = create_private_dir(&link).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(
            err.to_string().contains(&link.display().to_string()),
            "{err}"
        );
        assert_eq!(mode(&target), 0o755, "the link's target keeps its mode");
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(
            create_private_dir(&file)
                .unwrap_err()
                .to_string()
                .contains("not a directory")
        );
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        if crate::uid::current_uid() != 0 {
            eprintln!("not root: cannot give a directory to another user here");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        let err = create_private_dir(&dir).unwrap_err();
        assert!(err.to_string().contains("belongs to uid 65534"), "{err}");
    }
}

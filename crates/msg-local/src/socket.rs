//! The control socket, as both sides see it: its name, connecting to it,
//! whether a daemon holds the lock, and who is at the other end.
//!
//! On Unix this is a Unix domain socket file in the 0700 runtime dir, mode
//! 0600, and every caller's uid is checked. On Windows it is a named pipe
//! whose name is derived from the runtime dir; named pipes cannot report a
//! peer's user through `interprocess`, so there the pipe's default ACL
//! (owner, SYSTEM and administrators get write access) is the protection.

use std::fs::OpenOptions;
use std::io;
use std::path::PathBuf;

use interprocess::local_socket::Name;
use interprocess::local_socket::tokio::{Stream, prelude::*};

use crate::paths::Paths;
#[cfg(unix)]
pub use crate::uid::current_uid;

/// The socket's name for `interprocess`.
pub fn socket_name(paths: &Paths) -> io::Result<Name<'static>> {
    #[cfg(unix)]
    {
        use interprocess::local_socket::{GenericFilePath, ToFsName};
        paths.socket_path().to_fs_name::<GenericFilePath>()
    }
    #[cfg(not(unix))]
    {
        use interprocess::local_socket::{GenericNamespaced, ToNsName};
        // One pipe per runtime dir, like one socket file per dir on Unix.
        let key = paths.runtime_dir.to_string_lossy();
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        format!("msgd-{hash:016x}").to_ns_name::<GenericNamespaced>()
    }
}

/// Why there is no daemon to talk to.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing (alive) listens there: msgd is not running.
    #[error("no msgd at {path}: {source}")]
    NotRunning { path: PathBuf, source: io::Error },
    /// Something is there, but it is not this user's own msgd: it could be
    /// another user's trap for passwords, so nothing is sent to it.
    #[error("{0}")]
    Untrusted(String),
}

/// Connects to this user's running daemon, and only to it: on Unix the
/// runtime dir and the socket must belong to this user and not be writable
/// by others, and the process listening must run as this user (its peer
/// credentials, checked after connecting and before anything is sent).
pub async fn connect(paths: &Paths) -> Result<Stream, ConnectError> {
    let path = paths.socket_path();
    let not_running = |source| ConnectError::NotRunning {
        path: path.clone(),
        source,
    };
    #[cfg(unix)]
    check_owner(paths)?;
    let stream = Stream::connect(socket_name(paths).map_err(not_running)?)
        .await
        .map_err(not_running)?;
    #[cfg(unix)]
    {
        let me = current_uid();
        let creds = stream.peer_creds().map_err(not_running)?;
        match creds.euid() {
            Some(uid) if uid == me => {}
            other => {
                let who =
                    other.map_or_else(|| "an unknown user".to_owned(), |uid| format!("uid {uid}"));
                return Err(ConnectError::Untrusted(format!(
                    "refusing to talk to {}: the process listening there runs as {who}, not as you (uid {me})",
                    path.display()
                )));
            }
        }
    }
    Ok(stream)
}

/// The runtime dir and the socket file must be this user's and closed to
/// others. A missing one means no daemon; a foreign one is refused.
#[cfg(unix)]
fn check_owner(paths: &Paths) -> Result<(), ConnectError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let me = current_uid();
    let refuse = |path: &std::path::Path, why: String| {
        ConnectError::Untrusted(format!(
            "refusing to use {}: {why}; it is not your msgd (remove it, or set MSG_RUNTIME_DIR to a directory of your own)",
            path.display()
        ))
    };
    let dir = &paths.runtime_dir;
    let meta = std::fs::metadata(dir).map_err(|source| ConnectError::NotRunning {
        path: dir.clone(),
        source,
    })?;
    if meta.uid() != me {
        return Err(refuse(dir, format!("it belongs to uid {}", meta.uid())));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(dir, "other users can write in it".into()));
    }
    let socket = paths.socket_path();
    let meta = std::fs::symlink_metadata(&socket).map_err(|source| ConnectError::NotRunning {
        path: socket.clone(),
        source,
    })?;
    if !meta.file_type().is_socket() {
        return Err(refuse(&socket, "it is not a socket".into()));
    }
    if meta.uid() != me {
        return Err(refuse(&socket, format!("it belongs to uid {}", meta.uid())));
    }
    Ok(())
}

/// Whether a msgd holds the lock for these paths. A stopping msgd removes
/// its socket before it exits; the lock is released only at exit, so this
/// is what tells that a new one can start.
pub fn lock_is_held(paths: &Paths) -> bool {
    match OpenOptions::new().write(true).open(paths.lock_path()) {
        // Probing takes the lock for an instant; dropping the file frees it.
        Ok(file) => matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

/// Whether the process at the other end of `stream` runs as `uid`.
#[cfg(unix)]
pub fn peer_is_uid(stream: &Stream, uid: u32) -> io::Result<bool> {
    let creds = stream.peer_creds()?;
    Ok(creds.euid() == Some(uid))
}

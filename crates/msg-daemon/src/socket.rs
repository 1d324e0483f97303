//! The control socket: its name, binding it safely (single instance, stale
//! sockets replaced, owner-only) and connecting to it.
//!
//! On Unix this is a Unix domain socket file in the 0700 runtime dir, mode
//! 0600, and every caller's uid is checked. On Windows it is a named pipe
//! whose name is derived from the runtime dir; named pipes cannot report a
//! peer's user through `interprocess`, so there the pipe's default ACL (owner,
//! SYSTEM and administrators get write access) is the protection.

use std::fs::{File, OpenOptions};
use std::io;

use interprocess::local_socket::tokio::{Listener, Stream, prelude::*};
use interprocess::local_socket::{ListenerOptions, Name};

use crate::paths::{Paths, create_private_dir};

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("msgd is already running for this user")]
    AlreadyRunning,
    #[error("cannot prepare the runtime directory: {0}")]
    Dir(io::Error),
    #[error("cannot take the daemon lock: {0}")]
    Lock(io::Error),
    #[error("cannot listen on the control socket: {0}")]
    Listen(io::Error),
}

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

/// Connects to a running daemon.
pub async fn connect(paths: &Paths) -> io::Result<Stream> {
    Stream::connect(socket_name(paths)?).await
}

/// A bound control socket plus the lock that makes this daemon the only one
/// for its runtime dir. Dropping it removes the socket file.
pub struct Bound {
    pub listener: Listener,
    _lock: File,
}

/// Takes the lock, replaces a stale socket and listens.
pub async fn bind(paths: &Paths) -> Result<Bound, BindError> {
    create_private_dir(&paths.runtime_dir).map_err(BindError::Dir)?;
    let lock = take_lock(paths)?;
    // Holding the lock, any socket file left is a dead daemon's, unless a
    // daemon runs without our lock (e.g. after someone deleted the lock file):
    // only a socket that refuses connections is removed.
    #[cfg(unix)]
    {
        let path = paths.socket_path();
        if path.exists() {
            match Stream::connect(socket_name(paths).map_err(BindError::Listen)?).await {
                Ok(_) => return Err(BindError::AlreadyRunning),
                Err(_) => {
                    tracing::info!("replacing a stale control socket");
                    std::fs::remove_file(&path).map_err(BindError::Listen)?;
                }
            }
        }
    }
    let options = ListenerOptions::new()
        .name(socket_name(paths).map_err(BindError::Listen)?)
        .reclaim_name(true);
    #[cfg(unix)]
    let options = {
        use interprocess::os::unix::local_socket::ListenerOptionsExt;
        options.mode(0o600)
    };
    let listener = options.create_tokio().map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => BindError::AlreadyRunning,
        _ => BindError::Listen(e),
    })?;
    Ok(Bound {
        listener,
        _lock: lock,
    })
}

fn take_lock(paths: &Paths) -> Result<File, BindError> {
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(paths.lock_path()).map_err(BindError::Lock)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(BindError::AlreadyRunning),
        Err(std::fs::TryLockError::Error(e)) => Err(BindError::Lock(e)),
    }
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

/// The effective uid of this process.
#[cfg(unix)]
pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn paths(dir: &std::path::Path) -> Paths {
        Paths {
            runtime_dir: dir.join("run"),
            data_dir: dir.join("data"),
            config_file: dir.join("config.toml"),
        }
    }

    #[tokio::test]
    async fn second_bind_refuses_and_stale_socket_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = paths(tmp.path());
        assert!(!lock_is_held(&paths));
        let first = bind(&paths).await.unwrap();
        assert!(lock_is_held(&paths));
        assert!(matches!(bind(&paths).await, Err(BindError::AlreadyRunning)));
        {
            use std::os::unix::fs::PermissionsExt;
            let mode =
                |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&paths.runtime_dir), 0o700);
            assert_eq!(mode(&paths.socket_path()), 0o600);
        }
        drop(first);
        assert!(!lock_is_held(&paths), "probing does not keep the lock");
        assert!(!lock_is_held(&paths));
        // A dead daemon's socket file: bound, then the listener leaks it.
        let stale = std::os::unix::net::UnixListener::bind(paths.socket_path()).unwrap();
        drop(stale);
        assert!(paths.socket_path().exists());
        let again = bind(&paths).await.unwrap();
        let stream = connect(&paths).await.unwrap();
        let _accepted = again.listener.accept().await.unwrap();
        drop(stream);
    }

    #[tokio::test]
    async fn peer_credentials_name_the_caller() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = paths(tmp.path());
        let bound = bind(&paths).await.unwrap();
        let _client = connect(&paths).await.unwrap();
        let server_side = bound.listener.accept().await.unwrap();
        assert!(peer_is_uid(&server_side, current_uid()).unwrap());
        assert!(!peer_is_uid(&server_side, current_uid().wrapping_add(1)).unwrap());
    }
}

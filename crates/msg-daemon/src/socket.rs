//! Binding the control socket safely: single instance (a lock file), stale
//! sockets replaced, owner-only. The socket's name and the client side are
//! in `msg_local::socket`, shared with `msg`.

use std::fs::{File, OpenOptions};
use std::io;

use interprocess::local_socket::ListenerOptions;
use interprocess::local_socket::tokio::Listener;
#[cfg(unix)]
use interprocess::local_socket::tokio::{Stream, prelude::*};
use msg_local::paths::{Paths, create_private_dir};
use msg_local::socket::socket_name;

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

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use msg_local::socket::{connect, current_uid, lock_is_held, peer_is_uid};

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

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

use interprocess::local_socket::Name;
use interprocess::local_socket::tokio::{Stream, prelude::*};

use crate::paths::Paths;

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

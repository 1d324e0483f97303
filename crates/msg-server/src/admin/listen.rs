//! The running server's side of the admin socket: bound at start-up in the
//! state directory, answering only its own user, one bounded request per
//! connection.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::admin::{MAX_LINE, Op, parse_request, socket_path};
use crate::hub::Hub;
use crate::store::{DeviceAnswer, DeviceOp};

/// A request must arrive and be answered within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The bound socket; its file is removed when dropped.
pub struct AdminSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `admin.sock` in `state_dir`. A socket file left by a server that
/// is gone is replaced; one a live server answers on is not.
pub fn bind(state_dir: &Path) -> io::Result<AdminSocket> {
    let path = socket_path(state_dir);
    if std::os::unix::net::UnixStream::connect(&path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another server uses this state directory",
        ));
    }
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(&path)?;
    // Owner only; the uid check below covers the moment before this.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(AdminSocket { listener, path })
}

/// Answers admin requests until shutdown.
pub async fn run(socket: AdminSocket, hub: Arc<Hub>, shutdown: CancellationToken) {
    let own_uid = msg_uid();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = socket.listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if !stream.peer_cred().is_ok_and(|cred| cred.uid() == own_uid) {
            tracing::warn!("refused an admin connection from another user");
            continue;
        }
        let hub = hub.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(REQUEST_TIMEOUT, serve_one(stream, &hub))
                .await
                .is_err()
            {
                tracing::warn!("an admin request timed out");
            }
        });
    }
}

fn msg_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

async fn serve_one(stream: UnixStream, hub: &Hub) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_LINE as u64));
    let reply = match reader.read_line(&mut line).await {
        Ok(_) => match parse_request(line.trim_end()) {
            Some((op, user)) => answer(hub, op, &user).await,
            None => json!({"ok": false, "error": "malformed request"}),
        },
        Err(_) => json!({"ok": false, "error": "unreadable request"}),
    };
    let mut text = reply.to_string();
    text.push('\n');
    let _ = write.write_all(text.as_bytes()).await;
}

/// Carries out one request.
pub(super) async fn answer(hub: &Hub, op: Op, user: &str) -> Value {
    if op == Op::Passwd {
        // At once, not at the next poll: the new password works right away.
        match hub.accounts.reload() {
            Ok(report) => tracing::info!(
                accounts = report.accounts,
                "credentials file changed; reloaded"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot re-read the credentials file"),
        }
    }
    let device_op = match op {
        Op::List => DeviceOp::List {
            user: user.to_owned(),
        },
        Op::Revoke | Op::Passwd => DeviceOp::RevokeAll {
            user: user.to_owned(),
        },
    };
    match hub.store.devices(device_op).await {
        Ok(Ok(DeviceAnswer::List(devices))) => {
            json!({"ok": true, "devices": super::client::devices_json(&devices)})
        }
        Ok(Ok(answer)) => {
            let revoked = match answer {
                DeviceAnswer::Revoked(n) => n,
                _ => 0,
            };
            // After the revocation: the session's client cannot come back
            // with its token.
            let ended = hub.end_revoked_session(user);
            tracing::info!(user, revoked, ended, "revoked device tokens");
            json!({"ok": true, "revoked": revoked, "ended": ended})
        }
        Ok(Err(e)) => json!({"ok": false, "error": e.to_string()}),
        Err(_) => json!({"ok": false, "error": "the store has shut down"}),
    }
}

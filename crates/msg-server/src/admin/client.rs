//! The subcommands' side: ask the running server through its admin socket,
//! or, when none answers there, apply the change to the database directly.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use crate::admin::{MAX_LINE, Op, request_line, socket_path};
use crate::store::{Device, DeviceAnswer, DeviceOp, Store};

const SOCKET_TIMEOUT: Duration = Duration::from_secs(15);

/// Carries out `op` for `user` on the server whose state is in
/// `state_dir`: through its socket if it runs, else on its database. The
/// reply has the socket's shape; `"live"` says which way it went.
pub fn request(state_dir: &Path, op: Op, user: &str) -> anyhow::Result<Value> {
    #[cfg(unix)]
    match std::os::unix::net::UnixStream::connect(socket_path(state_dir)) {
        Ok(stream) => {
            let mut reply = ask(stream, op, user).context("the running server did not answer")?;
            reply["live"] = json!(true);
            return Ok(reply);
        }
        Err(e) => tracing::debug!("no server on the admin socket: {e}"),
    }
    let mut reply = offline(state_dir, op, user)?;
    reply["live"] = json!(false);
    Ok(reply)
}

#[cfg(unix)]
fn ask(mut stream: std::os::unix::net::UnixStream, op: Op, user: &str) -> std::io::Result<Value> {
    stream.set_read_timeout(Some(SOCKET_TIMEOUT))?;
    stream.set_write_timeout(Some(SOCKET_TIMEOUT))?;
    stream.write_all(request_line(op, user).as_bytes())?;
    let mut line = String::new();
    BufReader::new(stream.take(MAX_LINE as u64)).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(std::io::Error::other)
}

/// No server runs: the database is edited directly.
fn offline(state_dir: &Path, op: Op, user: &str) -> anyhow::Result<Value> {
    if !state_dir.join("msg.db").is_file() {
        anyhow::bail!(
            "no server state in {} (see --state-dir)",
            state_dir.display()
        );
    }
    let (store, _) = Store::open(state_dir, msg_proto::now_ms())
        .with_context(|| format!("cannot open the database in {}", state_dir.display()))?;
    let device_op = match op {
        Op::List => DeviceOp::List {
            user: user.to_owned(),
        },
        Op::Revoke | Op::Passwd => DeviceOp::RevokeAll {
            user: user.to_owned(),
        },
    };
    let answer = store
        .devices(device_op)
        .blocking_recv()
        .context("the store stopped")??;
    store.close();
    Ok(match answer {
        DeviceAnswer::List(devices) => json!({"ok": true, "devices": devices_json(&devices)}),
        DeviceAnswer::Revoked(n) => json!({"ok": true, "revoked": n, "ended": false}),
        _ => json!({"ok": true, "revoked": 0, "ended": false}),
    })
}

/// Devices as the replies list them.
pub fn devices_json(devices: &[Device]) -> Value {
    devices
        .iter()
        .map(|d| json!({"label": d.label, "created_at": d.created_at, "last_used": d.last_used}))
        .collect()
}

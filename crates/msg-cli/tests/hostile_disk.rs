//! A full disk must not wedge msgd: logging never panics, a message that
//! cannot be stored is not acked, `msg status` says why msgd waits, and
//! once there is space again msgd logs in again and nothing is lost.
//!
//! The full disk is real to msgd: its file size limit (RLIMIT_FSIZE) is
//! lowered to 0 with prlimit(2), with SIGXFSZ ignored, so that every write
//! to its log and its inbox fails with EFBIG; raising the limit "frees
//! space". That works unprivileged and as root.
#![cfg(target_os = "linux")]

mod common;

use std::process::Stdio;
use std::time::Instant;

use common::*;

/// Sets msgd's soft file size limit, keeping the hard one.
fn set_file_size_limit(pid: i32, soft: libc::rlim_t) {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reads the limits of a process this test started.
    let got = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, std::ptr::null(), &mut old) };
    assert_eq!(got, 0, "{}", std::io::Error::last_os_error());
    let new = libc::rlimit {
        rlim_cur: soft.min(old.rlim_max),
        rlim_max: old.rlim_max,
    };
    // SAFETY: as above; lowering a soft limit (or raising it up to the hard
    // one) needs no privilege.
    let set = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &new, std::ptr::null_mut()) };
    assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
}

/// Starts `user`'s msgd by hand, as `msg` would (its stderr is msgd.log),
/// but with SIGXFSZ ignored so that an exceeded file size limit is an
/// error and not death.
fn start_msgd(user: &User) -> ChildGuard {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(user.data_dir()).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(user.data_dir().join("msgd.log"))
        .unwrap();
    let mut cmd = user.command(&bins().msgd);
    cmd.arg("--no-notify").stdout(Stdio::null()).stderr(log);
    // SAFETY: signal() is async-signal-safe; an ignored signal stays
    // ignored across exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let msgd = ChildGuard(cmd.spawn().expect("start msgd"));
    let deadline = Instant::now() + DEADLINE;
    while user.daemon_pid() != Some(msgd.0.id() as i32) {
        assert!(Instant::now() < deadline, "msgd never answered");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    msgd
}

#[test]
fn a_full_disk_neither_wedges_msgd_nor_loses_a_message() {
    let server = Server::start();
    let luke = User::new("luke", &server);
    luke.login().ok();
    let hans = User::new("hans", &server);
    // Dropped before `hans`: killed and reaped by its guard.
    let mut msgd = start_msgd(&hans);
    let pid = msgd.0.id() as i32;
    hans.login().ok();
    luke.msg(&["send", "hans", "before the disk filled"]).ok();
    hans.wait_messages(&["luke: before the disk filled"]);

    set_file_size_limit(pid, 0);
    // hans's msgd cannot store it, so it does not ack it: the server keeps
    // it for hans's next login.
    luke.msg(&["send", "hans", "while the disk was full"]).ok();
    let status = hans.wait_status(|s| s["waiting"] == "the inbox cannot be written (disk full?)");
    assert_eq!(status["state"], "reconnecting", "{status}");
    let human = hans.msg(&["status"]);
    assert!(
        human.ok().out().contains(
            "connection: waiting to log in again: the inbox cannot be written (disk full?), next try in "
        ),
        "{human:?}"
    );
    // Every command tells the truth meanwhile; none hangs or lies.
    let send = hans.msg(&["send", "luke", "are you there"]);
    assert_eq!(send.code, 4, "{send:?}");
    assert!(
        send.err()
            .starts_with("Not connected: waiting to log in again (the inbox cannot be written"),
        "{send:?}"
    );
    assert!(msgd.0.try_wait().unwrap().is_none(), "msgd is alive");

    // Space again: msgd logs in again by itself and gets the message.
    set_file_size_limit(pid, libc::RLIM_INFINITY);
    hans.wait_status(|s| s["state"] == "online" && s["waiting"].is_null());
    hans.wait_messages(&[
        "luke: before the disk filled",
        "luke: while the disk was full",
    ]);
    hans.msg(&["send", "luke", "back"]).ok();
    assert_eq!(hans.daemon_pid(), Some(pid), "the same msgd throughout");
    let log = std::fs::read_to_string(hans.data_dir().join("msgd.log")).unwrap();
    assert!(log.contains("the inbox can be written again"), "{log}");
    assert!(!log.contains("\x1b["), "no colour codes in the log file");
}

//! A program in a pseudo-terminal, as a user at a terminal runs it: what is
//! typed goes in, what it prints comes out, read with a deadline.
#![cfg(unix)]

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use super::{ChildGuard, DEADLINE};

/// A program in a pseudo-terminal: what is typed goes in, what it prints
/// comes out on a channel.
pub struct Pty {
    child: ChildGuard,
    master: std::fs::File,
    output: mpsc::Receiver<Vec<u8>>,
    seen: String,
}

impl Pty {
    pub fn spawn(mut cmd: Command) -> Self {
        let (mut master_fd, mut slave_fd) = (0, 0);
        // SAFETY: openpty writes two new descriptors into the pointers.
        let rc = unsafe {
            libc::openpty(
                &mut master_fd,
                &mut slave_fd,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty failed");
        // SAFETY: both descriptors were just opened and are owned here.
        let (master, slave) = unsafe {
            (
                OwnedFd::from_raw_fd(master_fd),
                OwnedFd::from_raw_fd(slave_fd),
            )
        };
        let slave_raw = slave.as_raw_fd();
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: setsid and TIOCSCTTY are async-signal-safe; they make
        // the pty the child's controlling terminal, as a terminal would.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                if libc::setsid() == -1 || libc::ioctl(slave_raw, libc::TIOCSCTTY, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = ChildGuard(cmd.spawn().expect("start the program"));
        let master = std::fs::File::from(master);
        let mut reader = master.try_clone().unwrap();
        let (tx, output) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            master,
            output,
            seen: String::new(),
        }
    }

    pub fn type_in(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
    }

    /// Reads until `marker` has appeared; returns what came before it.
    pub fn until(&mut self, marker: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(at) = self.seen.find(marker) {
                let before = self.seen[..at].to_owned();
                self.seen.drain(..at + marker.len());
                return before;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(chunk) => self.seen.push_str(&String::from_utf8_lossy(&chunk)),
                Err(_) => panic!(
                    "{marker:?} never appeared; the terminal shows: {:?}",
                    self.seen
                ),
            }
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.master.write_all(b"\x04");
        let _ = self.child.0.kill();
    }
}

//! Everything that crosses the loopback interface while a test runs, as a
//! network capture would see it: an `AF_PACKET` socket on `lo` records every
//! frame (both directions, every port), so a test can look for a password,
//! a token or a message text in the bytes on the wire.
//!
//! Needs root (CAP_NET_RAW). [`Capture::start`] returns `None` without it;
//! the caller skips with a message (CI runs as root).
#![allow(dead_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// At most this much is kept (the tests exchange a few kilobytes; the
/// bound keeps a runaway test from eating memory).
const MAX_BYTES: usize = 64 * 1024 * 1024;

pub struct Capture {
    bytes: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    /// Starts recording loopback traffic; `None` when raw sockets are not
    /// allowed here (not root).
    pub fn start() -> Option<Self> {
        let protocol = (libc::ETH_P_ALL as u16).to_be() as i32;
        // SAFETY: plain socket(2); the descriptor is owned below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, protocol) };
        if fd < 0 {
            eprintln!(
                "SKIPPED capture: no raw socket ({}); run as root",
                std::io::Error::last_os_error()
            );
            return None;
        }
        // SAFETY: fd is a new, valid descriptor that nothing else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: if_nametoindex reads a NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
        assert!(index > 0, "no loopback interface");
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = protocol as u16;
        addr.sll_ifindex = index as i32;
        // SAFETY: addr is a valid sockaddr_ll of the size given.
        let bound = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(bound, 0, "bind to lo: {}", std::io::Error::last_os_error());
        // Wake up now and then to notice the stop flag.
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        // SAFETY: a valid timeval for SO_RCVTIMEO.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (bytes, stop) = (Arc::clone(&bytes), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut frame = vec![0u8; 65_536 + 128];
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: reads into a buffer of the given length.
                    let n = unsafe {
                        libc::recv(
                            socket.as_raw_fd(),
                            frame.as_mut_ptr().cast(),
                            frame.len(),
                            0,
                        )
                    };
                    if n > 0 {
                        let mut kept = bytes.lock().unwrap();
                        if kept.len() < MAX_BYTES {
                            kept.extend_from_slice(&frame[..n as usize]);
                        }
                    }
                }
            })
        };
        Some(Self {
            bytes,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops recording and returns every frame seen, concatenated.
    pub fn finish(mut self) -> Vec<u8> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        std::mem::take(&mut *self.bytes.lock().unwrap())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

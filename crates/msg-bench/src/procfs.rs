//! What the bench reads from and asks of the operating system: a process's
//! memory from `/proc`, the open-file limit, reaping detached daemons.

use std::time::Duration;

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// Now (`VmRSS`).
    pub rss_kib: u64,
    /// Peak since the process started (`VmHWM`).
    pub peak_kib: u64,
}

/// Reads `/proc/PID/status`; `None` once the process is gone.
pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

/// Samples a process's resident memory until dropped, keeping the largest
/// value seen: for a server the bench did not start, whose `VmHWM` covers
/// more than this run.
pub struct Sampler {
    pid: u32,
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    pub fn start(pid: u32) -> Self {
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = peak.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while let Some(m) = memory(pid) {
                seen.fetch_max(m.rss_kib, std::sync::atomic::Ordering::Relaxed);
                tick.tick().await;
            }
        });
        Self { pid, peak, task }
    }

    /// Largest resident size sampled so far, in KiB.
    pub fn peak_kib(&self) -> Option<u64> {
        if let Some(m) = memory(self.pid) {
            self.peak
                .fetch_max(m.rss_kib, std::sync::atomic::Ordering::Relaxed);
        }
        match self.peak.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            kib => Some(kib),
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Raises this process's soft limit on open files to the hard limit, so
/// thousands of client sockets fit; servers started later inherit it.
pub fn raise_nofile_limit() {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!("cannot raise the open-file limit");
            }
        }
    }
}

/// The soft limit on open files.
pub fn nofile_limit() -> u64 {
    // SAFETY: getrlimit with a valid pointer to a local struct.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur
        } else {
            1024
        }
    }
}

/// `msg login` starts msgd detached: as a child subreaper, the bench becomes
/// its parent and can reap it.
pub fn become_subreaper() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with these arguments only sets a flag on this process.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// Kills a process the bench caused to start (not its direct child) and
/// reaps it if it became ours.
pub fn kill_and_reap(pid: i32) {
    if pid <= 0 {
        return;
    }
    // SAFETY: plain syscalls on a pid this run started; WNOHANG-free waitpid
    // is bounded because SIGKILL cannot be ignored.
    unsafe {
        if libc::kill(pid, libc::SIGKILL) == 0 {
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
}

/// Machine description for the report.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown kernel".into());
    format!("{cpus} CPUs, {model}, Linux {kernel}")
}

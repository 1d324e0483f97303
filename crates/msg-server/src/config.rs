//! Run-time settings of the server, separate from how they were parsed.

use std::time::Duration;

use crate::passwords::Passwords;
use crate::per_address::Rate;
use crate::store::QueueLimits;

#[derive(Debug, Clone)]
pub struct Config {
    /// How long an account stays blocked after three failed logins.
    pub block_duration: Duration,
    /// Inactivity timeout; `None` disables it.
    pub idle_timeout: Option<Duration>,
    /// Allow `register` of new accounts.
    pub allow_register: bool,
    /// A connection must log in within this.
    pub login_timeout: Duration,
    /// A connection that sends nothing at all for this long is dead.
    pub dead_timeout: Duration,
    /// How long a private-session request waits for an answer, and how long
    /// the token handed out on accept stays valid.
    pub private_timeout: Duration,
    /// How long the server waits for a recipient's ack before storing the
    /// message and telling the sender it is queued.
    pub ack_timeout: Duration,
    /// Frames per second a connection may send (0 = unlimited); excess frames
    /// are not refused but read more slowly (TCP back-pressure).
    pub max_frames_per_sec: u32,
    /// Frames waiting to be written to one connection before it counts as a
    /// slow consumer and is disconnected.
    pub outbox_capacity: usize,
    /// Bytes one connection may pin in the server: frames waiting to be
    /// written to it, and live messages held for it while its offline queue
    /// is delivered. A client that does not read is disconnected past it.
    pub connection_budget: usize,
    /// `send` requests one connection may have awaiting their reply; more
    /// wait (the connection's reading pauses).
    pub max_outstanding_sends: usize,
    /// Logins and logouts kept for sessions to read (about 130 bytes each);
    /// a session that falls further behind is disconnected as a slow
    /// consumer.
    pub presence_backlog: usize,
    /// Malformed frames tolerated on one connection before it is closed.
    pub max_bad_frames: u32,
    /// How long queued frames (a last error, `logged_out`) may take to reach
    /// a closing client.
    pub close_grace: Duration,
    /// How much may wait in one recipient's offline queue.
    pub queue_limits: QueueLimits,
    /// Password checks and hashes (argon2) that may run at once.
    pub password_checks_at_once: usize,
    /// Registrations one address may make.
    pub register_rate: Rate,
    /// Wrong passwords one address may send.
    pub login_fail_rate: Rate,
    /// Test hook: a `send` with this text panics its connection's task.
    /// Debug builds only; nothing else depends on it.
    #[cfg(debug_assertions)]
    pub panic_on_text: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            block_duration: Duration::from_secs(60),
            idle_timeout: Some(Duration::from_secs(600)),
            allow_register: false,
            login_timeout: Duration::from_secs(10),
            dead_timeout: Duration::from_secs(45),
            private_timeout: Duration::from_secs(60),
            ack_timeout: Duration::from_secs(10),
            max_frames_per_sec: 2000,
            outbox_capacity: 1024,
            connection_budget: 1024 * 1024,
            max_outstanding_sends: 1024,
            // A storm of half as many logins (across every node) is told in
            // one round after it; more forces rounds in the middle of it.
            presence_backlog: 262_144,
            max_bad_frames: 10,
            close_grace: Duration::from_secs(2),
            queue_limits: QueueLimits::default(),
            password_checks_at_once: Passwords::default_at_once(),
            register_rate: Rate {
                count: 10,
                period: Duration::from_secs(3600),
            },
            login_fail_rate: Rate {
                count: 30,
                period: Duration::from_secs(3600),
            },
            #[cfg(debug_assertions)]
            panic_on_text: None,
        }
    }
}

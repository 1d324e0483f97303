//! Presence: who is online (`who`), who was recently (`who_since`), and the
//! notices sent when someone logs in or out. A user's presence is hidden
//! from the users they block, and `who` hides users who block the asker.

use std::sync::Arc;
use std::time::Instant;

use msg_proto::Timestamp;

use crate::hub::Hub;
use crate::hub::state::State;

impl Hub {
    /// Online users other than `asker`, sorted, without those who block `asker`.
    pub fn who(&self, asker: &str) -> Vec<String> {
        let state = self.state();
        let local = state.sessions.keys().map(|name| &**name);
        let elsewhere = state.remote.keys().map(String::as_str);
        let mut users: Vec<String> = local
            .chain(elsewhere)
            .filter(|name| *name != asker && !state.has_blocked(name, asker))
            .map(str::to_owned)
            .collect();
        users.sort_unstable();
        users
    }

    /// Users other than `asker` online at any moment in the last `secs`
    /// seconds, online ones included, without those who block `asker`.
    pub fn who_since(&self, asker: &str, secs: u64) -> Vec<String> {
        let cutoff = self.now_ms().saturating_sub(secs.saturating_mul(1000));
        let state = self.state();
        let online = state.sessions.keys().map(|name| &**name);
        let elsewhere = state.remote.keys().map(String::as_str);
        let recent = state
            .last_seen
            .iter()
            .filter(|(_, at)| **at >= cutoff)
            .map(|(name, _)| name.as_str());
        let mut users: Vec<String> = online
            .chain(elsewhere)
            .chain(recent)
            .filter(|name| *name != asker && !state.has_blocked(name, asker))
            .map(str::to_owned)
            .collect();
        users.sort_unstable();
        users.dedup();
        users
    }
}

impl Hub {
    /// Tells every online user but `user` and those `user` blocks that
    /// `user` logged in or out: one entry in the presence log, which each
    /// session's writer reads (see [`crate::hub::presence_log`]). Called
    /// under the hub's lock, so the log's order is that of the sessions.
    pub(super) fn announce_presence(
        &self,
        state: &mut State,
        user: &str,
        online: bool,
        at: Timestamp,
    ) {
        // Captured now: a later block does not reach back.
        let hidden_from = state
            .blocks
            .get(user)
            .filter(|blocked| !blocked.is_empty())
            .map(|blocked| Arc::new(blocked.clone()));
        self.presence.append(user, online, at, hidden_from);
        if !online {
            // A login counted when it began.
            state.presence_rounds.activity(Instant::now());
        }
        let end = self.presence.end();
        let online = state.sessions.len();
        if state.presence_rounds.appended(end, online, Instant::now()) {
            state.wake_all();
        }
    }

    /// The periodic look for notices whose round was put off (see
    /// [`crate::hub::presence_log::Rounds`]).
    pub fn presence_tick(&self) {
        let mut guard = self.state();
        let state = &mut *guard;
        let end = self.presence.end();
        let online = state.sessions.len();
        if state.presence_rounds.tick(end, online, Instant::now()) {
            state.wake_all();
        }
    }

    /// Forgets the presence notices every session has read.
    pub fn trim_presence(&self) {
        let read_by_all = {
            let state = self.state();
            state
                .sessions
                .values()
                .map(|session| session.out.presence_cursor())
                .min()
                .unwrap_or_else(|| self.presence.end())
        };
        self.presence.trim(read_by_all);
    }
}

impl State {
    /// Wakes every session, to read the presence notices announced since
    /// it last wrote.
    fn wake_all(&self) {
        tracing::debug!(online = self.sessions.len(), "a round of presence notices");
        for session in self.sessions.values() {
            session.out.nudge();
        }
    }
}

//! Presence: who is online (`who`), who was recently (`who_since`), and the
//! notices sent when someone logs in or out. A user's presence is hidden
//! from the users they block, and `who` hides users who block the asker.

use msg_proto::server::ServerFrame;
use msg_proto::{Timestamp, now_ms};

use crate::hub::Hub;
use crate::hub::state::State;

impl Hub {
    /// Online users other than `asker`, sorted, without those who block `asker`.
    pub fn who(&self, asker: &str) -> Vec<String> {
        let state = self.state();
        let mut users: Vec<String> = state
            .sessions
            .keys()
            .filter(|name| *name != asker && !state.has_blocked(name, asker))
            .cloned()
            .collect();
        users.sort_unstable();
        users
    }

    /// Users other than `asker` online at any moment in the last `secs`
    /// seconds, online ones included, without those who block `asker`.
    pub fn who_since(&self, asker: &str, secs: u64) -> Vec<String> {
        let cutoff = now_ms().saturating_sub(secs.saturating_mul(1000));
        let state = self.state();
        let online = state.sessions.keys();
        let recent = state
            .last_seen
            .iter()
            .filter(|(_, at)| **at >= cutoff)
            .map(|(name, _)| name);
        let mut users: Vec<String> = online
            .chain(recent)
            .filter(|name| *name != asker && !state.has_blocked(name, asker))
            .cloned()
            .collect();
        users.sort_unstable();
        users.dedup();
        users
    }
}

impl State {
    /// Tells every online user but `user` and those `user` blocks that
    /// `user` logged in or out.
    pub(super) fn announce_presence(&self, user: &str, online: bool, at: Timestamp) {
        // Encoded once for everyone.
        let Ok(line) = msg_proto::encode_line(&ServerFrame::Presence {
            user: user.to_owned(),
            online,
            at,
        }) else {
            return;
        };
        for (name, session) in &self.sessions {
            if name != user && !self.has_blocked(user, name) {
                session.push(line.clone());
            }
        }
    }
}

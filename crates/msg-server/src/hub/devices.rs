//! The sessions' device tokens: which token a session came with (so that
//! `logout` can revoke it), and ending every session of an account whose
//! tokens were revoked (`msg-server revoke`, `msg-server passwd`).

use crate::hub::Hub;
use crate::hub::state::ConnId;
use crate::store::TokenHash;

impl Hub {
    /// The device token of `user`'s session on connection `conn`, if any.
    pub fn session_device(&self, user: &str, conn: ConnId) -> Option<TokenHash> {
        let state = self.state();
        state
            .sessions
            .get(user)
            .filter(|session| session.conn == conn)
            .and_then(|session| session.device.as_deref().copied())
    }

    /// Tells `user`'s session, if there is one, to end (its connection says
    /// why and closes). True if there was one.
    pub fn end_revoked_session(&self, user: &str) -> bool {
        let state = self.state();
        match state.sessions.get(user) {
            Some(session) => {
                session.out.revoke();
                true
            }
            None => false,
        }
    }
}

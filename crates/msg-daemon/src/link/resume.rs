//! The device token on the link's side: what a login sends (the password,
//! asking for a token, or the token itself), logging in with the saved
//! token when msgd starts, and forgetting a token the server refuses.

use msg_proto::Secret;
use std::sync::Arc;

use msg_proto::control::{LinkState, Trust};
use msg_proto::peer::PeerKey;
use msg_proto::server::{ClientFrame, LoginRequest, ResumeRequest};

use crate::device_token::device_label;
use crate::link::online::Retries;
use crate::link::transport;
use crate::link::{Link, Session};
use crate::state::WaitReason;
use crate::texts;
use msg_local::backoff::Backoff;
use msg_proto::Refusal;

/// What a login proves itself with.
#[derive(Clone, Copy)]
pub(super) enum Credentials<'a> {
    /// `register`: create the account first; `ask_token`: ask for a
    /// device token (at `msg login`, or when none is saved: not at every
    /// reconnect, which would pile tokens up on the server).
    Password {
        password: &'a Secret,
        register: bool,
        ask_token: bool,
    },
    Token(&'a Secret),
}

impl Link {
    /// The login frame for `credentials`. A password login asks for a
    /// device token when there is somewhere to keep one.
    pub(super) fn login_frame(
        &mut self,
        user: &str,
        credentials: Credentials<'_>,
        peer_port: Option<u16>,
        peer_key: Option<PeerKey>,
    ) -> ClientFrame {
        let id = self.id();
        match credentials {
            Credentials::Password {
                password,
                register,
                ask_token,
            } => {
                let login = LoginRequest {
                    id,
                    user: user.into(),
                    password: password.clone(),
                    peer_port,
                    peer_key,
                    device: self
                        .tokens
                        .as_ref()
                        .filter(|_| ask_token)
                        .map(|_| device_label()),
                };
                if register {
                    ClientFrame::Register(login)
                } else {
                    ClientFrame::Login(login)
                }
            }
            Credentials::Token(token) => ClientFrame::Resume(ResumeRequest {
                id,
                user: user.into(),
                token: token.clone(),
                peer_port,
                peer_key,
            }),
        }
    }

    /// What to log in again with: the password held in memory, else the
    /// saved token (loaded afresh: `msg logout` may have deleted it).
    pub(super) fn credentials<'a>(
        &self,
        session: &'a Session,
        token: &'a mut Option<Secret>,
    ) -> Option<Credentials<'a>> {
        let tokens = self.tokens.as_ref();
        *token = tokens.and_then(|tokens| tokens.load(&session.dialer.server(), &session.user));
        match &session.password {
            Some(password) => Some(Credentials::Password {
                password,
                register: false,
                ask_token: token.is_none(),
            }),
            None => token.as_ref().map(Credentials::Token),
        }
    }

    pub(super) fn save_token(&self, server: &str, user: &str, token: &Secret) {
        if let Some(tokens) = &self.tokens {
            match tokens.save(server, user, token) {
                Ok(()) => tracing::info!("saved a device token to log in again by itself"),
                Err(e) => tracing::warn!("cannot save the device token: {e}"),
            }
        }
    }

    /// Deletes the session's saved token (`msg logout`).
    pub(super) fn forget_token(&self, session: &Session) {
        if let Some(tokens) = &self.tokens {
            tokens.delete(&session.dialer.server(), &session.user);
        }
    }

    /// The server refused the token (revoked or unknown): it is deleted,
    /// and what to tell the user is returned.
    pub(super) fn token_refused(&self, session: &Session) -> Refusal {
        self.forget_token(session);
        Refusal::new(
            msg_proto::ErrorCode::BadToken.as_str(),
            texts::TOKEN_REVOKED,
        )
    }

    /// At start-up, with a saved token: logs in with it (retrying while the
    /// server cannot be reached, as after a drop) and runs the session.
    /// True when the daemon is stopping.
    pub(super) async fn resume_at_start(&mut self) -> bool {
        let Some(saved) = self.tokens.as_ref().and_then(|tokens| tokens.latest()) else {
            return false;
        };
        tracing::info!(user = %saved.user, "logging in with the saved device token");
        // The trust a restart can know: pins in known_servers, the CA and
        // insecure settings of config.toml (not a `--ca` given at login).
        let dialer = match transport::dialer(&saved.server, &restart_trust()) {
            Ok(dialer) => Arc::new(dialer),
            Err(e) => {
                tracing::warn!("cannot log in with the saved device token: {e}");
                self.logged_out_after_start();
                return false;
            }
        };
        let session = Session {
            dialer,
            user: saved.user,
            password: None,
        };
        {
            let mut status = self.shared.status();
            status.server = Some(session.dialer.server());
            status.user = Some(session.user.clone());
            status.state = LinkState::Reconnecting;
        }
        let mut retries = Retries::default();
        let mut backoff = Backoff::new();
        match self
            .reconnect(&session, &mut retries, &mut backoff, WaitReason::Starting)
            .await
        {
            Some(conn) => self.session(conn, session).await,
            None => {
                self.logged_out_after_start();
                self.commands.is_closed()
            }
        }
    }

    /// The start-up login did not happen: nobody is logged in.
    fn logged_out_after_start(&self) {
        let mut status = self.shared.status();
        status.state = LinkState::LoggedOut;
        status.user = None;
        status.waiting = None;
    }
}

/// The trust settings in config.toml, for a login msgd makes by itself.
fn restart_trust() -> Trust {
    let config = msg_local::paths::Paths::from_env()
        .ok()
        .and_then(|paths| msg_local::config::Config::load(&paths.config_file).ok())
        .unwrap_or_default();
    Trust {
        ca: config.ca.map(|ca| ca.display().to_string()),
        fingerprint: None,
        insecure: config.insecure,
    }
}

//! Greeting and login: `hello`, `login` and `register`, with the password
//! check (argon2, off the async workers) and the lockout rules, up to the
//! registered session and the start of its offline-queue delivery.

use std::sync::Arc;

use msg_proto::server::{LoginRequest, ServerFrame};
use msg_proto::validate;
use msg_proto::{ErrorCode, PROTOCOL_VERSION, Refusal, Secret};
use tokio::time::Instant;

use crate::accounts::AccountsError;
use crate::connection::{Connection, Flow, Phase};
use crate::hub::SessionSpec;
use crate::texts;

impl Connection {
    pub(super) fn on_hello(&mut self, version: u32) -> Flow {
        if version != PROTOCOL_VERSION {
            self.reply(ServerFrame::error(
                None,
                ErrorCode::VersionMismatch,
                texts::version_mismatch(version, PROTOCOL_VERSION),
            ));
            return Flow::Close;
        }
        self.reply(ServerFrame::Hello {
            version: PROTOCOL_VERSION,
            server: concat!("msg-server ", env!("CARGO_PKG_VERSION")).into(),
        });
        self.phase = Phase::Anonymous;
        Flow::Continue
    }

    /// `login`, or `register` when `register` is set.
    pub(super) async fn on_login(&mut self, request: LoginRequest, register: bool) -> Flow {
        let LoginRequest {
            id,
            user,
            password,
            peer_port,
            peer_key,
        } = request;
        let checked = if register {
            self.check_registration(&user, password).await
        } else {
            self.check_login(&user, password).await
        };
        if let Err(refusal) = checked {
            self.refuse(Some(id), refusal);
            return Flow::Continue;
        }
        let spec = SessionSpec {
            conn: self.id,
            out: self.out.clone(),
            ip: self.peer.ip(),
            peer_port,
            peer_key: peer_key.map(|key| key.to_hex()),
        };
        let first_page = match self.hub.begin_session(&user, spec) {
            Ok(page) => page,
            Err(refusal) => {
                self.refuse(Some(id), refusal);
                return Flow::Continue;
            }
        };
        tracing::info!(user = %user, conn = self.id, "logged in");
        self.phase = Phase::Session(Arc::from(user.as_str()));
        self.last_active = Instant::now();
        self.reply(ServerFrame::Welcome {
            id,
            user,
            message: texts::WELCOME.into(),
        });
        // The run loop writes the offline queue as the client reads it,
        // reading the client's acks and commands meanwhile.
        self.start_drain(first_page);
        Flow::Continue
    }

    /// The checks of a `login`, in the documented order: the request's own
    /// form first (not counted as failures), then the account: unknown, in
    /// a lockout (the password is not even checked), wrong password
    /// (counted). A user logged in elsewhere is refused after all of these,
    /// by [`Hub::begin_session`](crate::hub::Hub::begin_session).
    async fn check_login(&self, user: &str, password: Secret) -> Result<(), Refusal> {
        if !validate::is_valid_username(user) {
            return Err(Refusal::new(
                ErrorCode::InvalidUsername,
                texts::INVALID_USERNAME,
            ));
        }
        if !validate::is_valid_password(password.expose()) {
            return Err(Refusal::new(
                ErrorCode::InvalidPasswordFormat,
                texts::INVALID_PASSWORD_FORMAT,
            ));
        }
        if !self.hub.accounts.exists(user) {
            return Err(Refusal::new(ErrorCode::InvalidUser, texts::INVALID_USER));
        }
        self.hub.check_login_block(user)?;
        let hub = self.hub.clone();
        let name = user.to_owned();
        // argon2 is slow on purpose; keep it off the async workers.
        let verified =
            tokio::task::spawn_blocking(move || hub.accounts.verify(&name, password.expose()))
                .await
                .unwrap_or(None);
        match verified {
            Some(true) => Ok(()),
            Some(false) => {
                let (refusal, durable) = self.hub.login_failed(user);
                if let Some(durable) = durable
                    && let Ok(Err(e)) = durable.await
                {
                    tracing::error!(error = %e, "the login block is only in memory");
                }
                Err(refusal)
            }
            // Removed from the file in the meantime.
            None => Err(Refusal::new(ErrorCode::InvalidUser, texts::INVALID_USER)),
        }
    }

    async fn check_registration(&self, user: &str, password: Secret) -> Result<(), Refusal> {
        if !self.hub.config.allow_register {
            return Err(Refusal::new(
                ErrorCode::RegistrationDisabled,
                texts::REGISTRATION_DISABLED,
            ));
        }
        if !validate::is_valid_username(user) {
            return Err(Refusal::new(
                ErrorCode::InvalidUsername,
                texts::INVALID_USERNAME,
            ));
        }
        if !validate::is_valid_password(password.expose()) {
            return Err(Refusal::new(
                ErrorCode::InvalidPasswordFormat,
                texts::INVALID_PASSWORD_FORMAT,
            ));
        }
        let hub = self.hub.clone();
        let name = user.to_owned();
        let registered =
            tokio::task::spawn_blocking(move || hub.accounts.register(&name, password.expose()))
                .await;
        match registered {
            Ok(Ok(())) => {
                tracing::info!(user, "registered a new account");
                Ok(())
            }
            // A name is taken whatever its case (`Luke` beside `luke`).
            Ok(Err(AccountsError::UserExists | AccountsError::NameTaken(_))) => {
                Err(Refusal::new(ErrorCode::UserExists, texts::USER_EXISTS))
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "registration failed");
                Err(Refusal::new(ErrorCode::Internal, texts::STORE_FAILED))
            }
            Err(_) => Err(Refusal::new(ErrorCode::Internal, texts::STORE_FAILED)),
        }
    }
}

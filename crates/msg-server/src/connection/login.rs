//! Greeting and login: `hello`, `login` and `register`, with the password
//! check (argon2, bounded: see [`crate::passwords`]) and the lockout rules,
//! up to the registered session and the start of its offline-queue
//! delivery.

use std::sync::Arc;

use crate::connection::clock::Moment;
use msg_proto::server::{LoginRequest, ServerFrame, UserRequest};
use msg_proto::validate;
use msg_proto::{ErrorCode, OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION, Refusal, Secret};

use crate::accounts::AccountsError;
use crate::connection::device::{Device, Login};
use crate::connection::{Connection, Flow, Phase};
use crate::hub::SessionSpec;
use crate::passwords::Turn;
use crate::store::DeviceOp;
use crate::texts;

impl Connection {
    pub(super) fn on_hello(&mut self, version: u32) -> Flow {
        if !(OLDEST_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
            self.reply(ServerFrame::error(
                None,
                ErrorCode::VersionMismatch,
                texts::version_mismatch(version, OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION),
            ));
            return Flow::Close;
        }
        self.presence_batched = version >= 2;
        // The version both speak: the client's.
        self.reply(ServerFrame::Hello {
            version,
            server: concat!("msg-server ", env!("CARGO_PKG_VERSION")).into(),
        });
        self.phase = Phase::Anonymous;
        Flow::Continue
    }

    /// `account`: what a login as the user would meet before the password.
    /// Tells no more than a login attempt would (an unknown user is
    /// `invalid_user`, a blocked one `login_blocked` with the wait), but
    /// without a password check or a count against the lockout.
    pub(super) async fn on_account(&mut self, request: UserRequest) -> Flow {
        let hub = &self.hub;
        let blocked_for = hub
            .check_login_block(&request.user)
            .await
            .err()
            .and_then(|refusal| refusal.retry_after);
        self.reply(ServerFrame::Account {
            id: request.id,
            exists: hub.accounts.knows(&request.user).await,
            registration: hub.config.allow_register,
            blocked_for,
            user: request.user,
        });
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
            device,
        } = request;
        let checked = if register {
            self.check_registration(&user, password)
                .await
                .map(|()| None)
        } else {
            self.check_login(&user, password).await.map(Some)
        };
        // Held until the session is registered, so the account's next
        // login, waiting for its turn, finds it logged in.
        let _turn = match checked {
            Ok(turn) => turn,
            Err(refusal) => {
                self.refuse(Some(id), refusal);
                return Flow::Continue;
            }
        };
        // Issued (durably) before the session exists, so that nothing the
        // session is sent can come before the welcome.
        let token = match device {
            Some(label) => self.issue_token(&user, &label).await,
            None => None,
        };
        let session = Login {
            id,
            user,
            peer_port,
            peer_key: peer_key.map(|key| key.to_hex()),
        };
        self.start_session(session, token).await
    }

    /// Registers the session of a checked login and welcomes it; `device`:
    /// the token it logged in with, or (with its hash) the one just issued.
    pub(super) async fn start_session(&mut self, login: Login, device: Option<Device>) -> Flow {
        let Login {
            id,
            user,
            peer_port,
            peer_key,
        } = login;
        // In a cluster, the one login per user across nodes.
        let leased = self.hub.take_lease(&user).await;
        let spec = SessionSpec {
            conn: self.id,
            out: self.out.clone(),
            ip: self.ip,
            peer_port,
            peer_key,
            device: device.as_ref().map(|d| d.hash),
        };
        let name: Arc<str> = Arc::from(user.as_str());
        let first_page = match leased.and_then(|()| self.hub.begin_session(&name, spec)) {
            Ok(page) => page,
            Err(refusal) => {
                if let Some(device) = &device
                    && device.token.is_some()
                {
                    // Issued for a session that did not begin.
                    drop(self.hub.store.devices(DeviceOp::Revoke {
                        user: user.clone(),
                        hash: device.hash,
                    }));
                }
                self.refuse(Some(id), refusal);
                return Flow::Continue;
            }
        };
        tracing::info!(user = %user, conn = self.id, "logged in");
        self.phase = Phase::Session(name);
        self.last_active = Moment::now();
        self.reply(ServerFrame::Welcome {
            id,
            user,
            message: texts::WELCOME.into(),
            token: device.and_then(|d| d.token),
        });
        // The run loop writes the offline queue as the client reads it,
        // reading the client's acks and commands meanwhile.
        self.start_drain(first_page);
        Flow::Continue
    }

    /// The checks of a `login`, in the documented order: the request's own
    /// form first (not counted as failures), then the cheap checks of the
    /// account (unknown, blocked, logged in elsewhere), then the address's
    /// allowance of wrong passwords, and only then the password (argon2),
    /// one check of an account at a time: a login that
    /// waited for its turn checks the block and the session again, so a
    /// burst of wrong passwords runs the three checks that block the
    /// account and no more. Returns the account's turn, to be held until
    /// the session is registered.
    async fn check_login(&self, user: &str, password: Secret) -> Result<Turn, Refusal> {
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
        if !self.hub.accounts.knows(user).await {
            return Err(Refusal::new(ErrorCode::InvalidUser, texts::INVALID_USER));
        }
        self.hub.check_here(user)?;
        let turn = self.hub.passwords.turn(user).await;
        let checked = self.hub.may_log_in(user).await?;
        let failures = checked.failures;
        let read = match checked.credential {
            Some(credential) => Ok(Some(credential)),
            None => self.hub.accounts.credential(user).await,
        };
        let credential = match read {
            Ok(Some(credential)) => credential,
            // Removed in the meantime.
            Ok(None) => return Err(Refusal::new(ErrorCode::InvalidUser, texts::INVALID_USER)),
            Err(e) => {
                tracing::error!(error = %e, "cannot read an account");
                return Err(Refusal::new(
                    ErrorCode::Internal,
                    texts::CLUSTER_UNAVAILABLE,
                ));
            }
        };
        let permit = self.hub.passwords.permit(self.ip).await;
        // A check is reserved against the address's allowance of wrong
        // passwords once it can run (so only running checks hold one), and
        // given back if the password is right.
        let ip = self.ip;
        self.hub
            .failed_logins
            .take(ip, std::time::Instant::now())
            .map_err(|secs| {
                Refusal::new(ErrorCode::RateLimited, texts::too_many_failed_logins(secs))
                    .retry_after(secs)
            })?;
        let verified = self
            .hub
            .passwords
            .run(permit, "checked", user, move || {
                credential.check(password.expose())
            })
            .await;
        match verified {
            Some(true) => {
                self.hub
                    .failed_logins
                    .give_back(ip, std::time::Instant::now());
                self.hub.login_succeeded(user, failures).await;
                Ok(turn)
            }
            Some(false) => Err(self.hub.login_failed(user).await),
            None => Err(Refusal::new(ErrorCode::Internal, texts::STORE_FAILED)),
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
        // A name is taken whatever its case (`Luke` beside `luke`); asked
        // first since it is cheap, and again by `register` under its lock.
        if self.hub.accounts.spelled(user).is_some() {
            return Err(Refusal::new(ErrorCode::UserExists, texts::USER_EXISTS));
        }
        let permit = self.hub.passwords.permit(self.ip).await;
        self.hub
            .registrations
            .take(self.ip, std::time::Instant::now())
            .map_err(|secs| {
                Refusal::new(ErrorCode::RateLimited, texts::too_many_registrations(secs))
                    .retry_after(secs)
            })?;
        let hub = self.hub.clone();
        let name = user.to_owned();
        let registered = self
            .hub
            .passwords
            .run(permit, "hashed", user, move || {
                hub.accounts.register(&name, password.expose())
            })
            .await;
        match registered {
            Some(Ok(())) => {
                tracing::info!(user, "registered a new account");
                Ok(())
            }
            Some(Err(AccountsError::UserExists | AccountsError::NameTaken(_))) => {
                Err(Refusal::new(ErrorCode::UserExists, texts::USER_EXISTS))
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "registration failed");
                Err(Refusal::new(ErrorCode::Internal, texts::STORE_FAILED))
            }
            None => Err(Refusal::new(ErrorCode::Internal, texts::STORE_FAILED)),
        }
    }
}

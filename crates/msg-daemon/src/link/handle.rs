//! The control side's handle on the link task, and starting the task.

use std::sync::Arc;

use msg_proto::control::{Trust, codes};
use msg_proto::{Refusal, RequestId, Secret};
use tokio::sync::{mpsc, oneshot};

use crate::device_token::DeviceTokens;
use crate::link::Link;
use crate::private::{PeerListener, Private};
use crate::state::Shared;
use crate::texts;
use crate::upstream::Upstream;

/// Commands waiting for the link task at most.
const QUEUE: usize = 64;

pub(super) type Reply<T> = oneshot::Sender<Result<T, Refusal>>;

/// What only the control side asks of the link: its session.
pub(super) enum Command {
    Login {
        server: String,
        user: String,
        password: Secret,
        register: bool,
        trust: Trust,
        reply: Reply<String>,
    },
    /// `revoke`: `msg logout`, which also revokes this device's token and
    /// deletes it; without, the session ends but the token is kept (msgd
    /// stops and logs in by itself at its next start).
    Logout { revoke: bool, reply: Reply<()> },
}

/// The control side's handle on the link task; the task ends when the last
/// one is dropped.
#[derive(Clone)]
pub struct LinkHandle {
    commands: mpsc::Sender<Command>,
    upstream: Upstream,
}

impl LinkHandle {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, Refusal> {
        let (tx, rx) = oneshot::channel();
        let gone = || Refusal::new(codes::INTERNAL, texts::SHUTTING_DOWN);
        self.commands.send(make(tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Logs in; the welcome text on success.
    pub async fn login(
        &self,
        server: String,
        user: String,
        password: Secret,
        register: bool,
    ) -> Result<String, Refusal> {
        self.login_trusting(server, user, password, register, Trust::default())
            .await
    }

    /// Logs in, with what the user adds to the trust in a TLS server.
    pub async fn login_trusting(
        &self,
        server: String,
        user: String,
        password: Secret,
        register: bool,
        trust: Trust,
    ) -> Result<String, Refusal> {
        self.call(|reply| Command::Login {
            server,
            user,
            password,
            register,
            trust,
            reply,
        })
        .await
    }

    /// Ends the session; `revoke`: and forgets this device's token, here
    /// and on the server.
    pub async fn logout(&self, revoke: bool) -> Result<(), Refusal> {
        self.call(|reply| Command::Logout { revoke, reply }).await
    }

    /// The way for requests and notes to the server.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }
}

/// Starts the link task; the port of `peers` is advertised to the server at
/// login. With `tokens`, it keeps a device token there and, when one is
/// saved, logs in with it at once.
pub fn spawn(
    shared: Arc<Shared>,
    private: Arc<Private>,
    peers: Option<Arc<PeerListener>>,
    tokens: Option<DeviceTokens>,
) -> LinkHandle {
    let (commands, commands_rx) = mpsc::channel(QUEUE);
    let (upstream, upstream_rx) = Upstream::channel();
    shared.set_upstream(upstream.downgrade());
    let task = tokio::spawn(
        Link {
            shared: Arc::clone(&shared),
            private,
            commands: commands_rx,
            upstream: upstream_rx,
            next_id: RequestId::default(),
            peers,
            tokens,
        }
        .run(),
    );
    // Without its link the daemon could only lie about its state: a link
    // that died stops it.
    tokio::spawn(async move {
        if let Err(e) = task.await
            && e.is_panic()
        {
            shared.fail("the server link failed".to_owned());
        }
    });
    LinkHandle { commands, upstream }
}

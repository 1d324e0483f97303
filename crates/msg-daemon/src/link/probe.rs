//! `msg login`'s first question: what would a login as this user meet?
//! A connection of its own (the link may be logged in as nobody yet, or
//! reconnecting), `hello`, one `account` request, closed again. It goes
//! through the same dialer as a login, so an untrusted certificate or a
//! plain connection that would carry a password elsewhere is refused here,
//! before anyone types a password.

use futures::SinkExt;
use msg_proto::control::{Trust, codes};
use msg_proto::server::{ClientFrame, ServerFrame, UserRequest};
use msg_proto::{JsonLines, PROTOCOL_VERSION, Refusal};
use tokio::time::timeout;
use tokio_util::codec::Framed;

use crate::link::login::{REPLY_TIMEOUT, next_frame};
use crate::link::{Conn, lost, transport, unreachable};
use crate::texts;

/// What the server says of `user` before any password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    pub exists: bool,
    pub registration: bool,
    pub blocked_for: Option<u64>,
}

pub async fn account_info(server: &str, user: &str, trust: &Trust) -> Result<AccountInfo, Refusal> {
    let dialer = transport::dialer(server, trust)?;
    let (stream, _) = dialer.connect().await?;
    let server = &dialer.server();
    let mut conn: Conn = Framed::new(stream, JsonLines::new());
    let exchange = async {
        let hello = ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            agent: Some(format!("msgd {}", env!("CARGO_PKG_VERSION"))),
        };
        conn.send(hello).await.map_err(|_| lost())?;
        let request = ClientFrame::Account(UserRequest {
            id: 1,
            user: user.to_owned(),
        });
        conn.send(request).await.map_err(|_| lost())?;
        loop {
            match next_frame(&mut conn).await?.into_refusal()? {
                ServerFrame::Account {
                    exists,
                    registration,
                    blocked_for,
                    ..
                } => {
                    return Ok(AccountInfo {
                        exists,
                        registration,
                        blocked_for,
                    });
                }
                ServerFrame::Hello { .. } | ServerFrame::Pong => {}
                _ => {
                    return Err(Refusal::new(
                        codes::INVALID_COMMAND,
                        texts::NOT_A_MSG_SERVER,
                    ));
                }
            }
        }
    };
    timeout(REPLY_TIMEOUT, exchange)
        .await
        .map_err(|_| unreachable(server))?
}

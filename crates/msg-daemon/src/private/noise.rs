//! The Noise handshake of a peer connection,
//! `Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s`, with `snow`.
//!
//! The caller (initiator) knows the callee's static key from the server and
//! sends message 1 (`e, es, s, ss`), which only the holder of that key can
//! read and which proves the caller holds its own static key. The callee
//! (responder) learns the caller's key from it, looks up the session agreed
//! with that key, takes that session's token as the pre-shared key and
//! answers message 2 (`e, ee, se, psk`). The caller can open message 2 only
//! if the callee holds the brokered key *and* the same token; the callee
//! knows the caller has the token once the caller's first transport record
//! opens. Both messages carry empty payloads.
//!
//! Every failure is an error that closes the connection: nothing is ever
//! sent in the clear, and no detail of a key or token is in any error.

use msg_proto::peer::MAX_HANDSHAKE_LEN;
use snow::HandshakeState;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use crate::private::keys::{Identity, PublicKey, SecretKey, noise_params};
use crate::private::record::{RecordError, SecureLines, read_record, write_record};

/// Where the pre-shared key goes in IKpsk2: after message 2's tokens.
const PSK_LOCATION: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Message 1 was not for our key (the caller was told another one), or
    /// is not a Noise message at all.
    #[error("the caller's first message is not for this daemon's key")]
    NotForUs,
    /// Message 2 did not open: the callee does not hold the key the server
    /// vouched for, or not the same token.
    #[error("the other side did not prove the brokered key and token")]
    Unverified,
    #[error("noise: {0}")]
    Noise(#[from] snow::Error),
}

/// The caller's side: the whole handshake on `stream`, then the secure
/// channel. `theirs` is the key the server gave for the callee; `psk` the
/// session's token.
pub async fn initiate<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    ours: &Identity,
    theirs: &PublicKey,
    psk: &SecretKey,
) -> Result<Framed<S, SecureLines>, HandshakeError> {
    let mut handshake = snow::Builder::new(noise_params()?)
        .local_private_key(ours.private().expose())?
        .remote_public_key(theirs)?
        .psk(PSK_LOCATION, psk.expose())?
        .build_initiator()?;
    let mut message = [0u8; MAX_HANDSHAKE_LEN];
    let n = handshake.write_message(&[], &mut message)?;
    write_record(&mut stream, &message[..n]).await?;
    let answer = read_record(&mut stream, MAX_HANDSHAKE_LEN).await?;
    let mut payload = [0u8; MAX_HANDSHAKE_LEN];
    handshake
        .read_message(&answer, &mut payload)
        .map_err(|_| HandshakeError::Unverified)?;
    secure(stream, handshake)
}

/// The callee's side after message 1: who calls, and the state to answer.
pub struct Responding<S> {
    stream: S,
    handshake: HandshakeState,
    caller: PublicKey,
}

/// The callee's first step: reads message 1 and learns the caller's key.
pub async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    ours: &Identity,
) -> Result<Responding<S>, HandshakeError> {
    let mut handshake = snow::Builder::new(noise_params()?)
        .local_private_key(ours.private().expose())?
        .build_responder()?;
    let first = read_record(&mut stream, MAX_HANDSHAKE_LEN).await?;
    let mut payload = [0u8; MAX_HANDSHAKE_LEN];
    handshake
        .read_message(&first, &mut payload)
        .map_err(|_| HandshakeError::NotForUs)?;
    let caller = handshake
        .get_remote_static()
        .and_then(|key| PublicKey::try_from(key).ok())
        .ok_or(HandshakeError::NotForUs)?;
    Ok(Responding {
        stream,
        handshake,
        caller,
    })
}

impl<S: AsyncRead + AsyncWrite + Unpin> Responding<S> {
    /// The static key the caller proved it holds.
    pub fn caller(&self) -> &PublicKey {
        &self.caller
    }

    /// Answers with message 2 under the token of the caller's session. The
    /// channel is up, but the caller has the token only if its first
    /// record opens.
    pub async fn finish(self, psk: &SecretKey) -> Result<Framed<S, SecureLines>, HandshakeError> {
        let Self {
            mut stream,
            mut handshake,
            ..
        } = self;
        handshake.set_psk(usize::from(PSK_LOCATION), psk.expose())?;
        let mut message = [0u8; MAX_HANDSHAKE_LEN];
        let n = handshake.write_message(&[], &mut message)?;
        write_record(&mut stream, &message[..n]).await?;
        secure(stream, handshake)
    }
}

fn secure<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    handshake: HandshakeState,
) -> Result<Framed<S, SecureLines>, HandshakeError> {
    let transport = handshake.into_transport_mode()?;
    Ok(Framed::new(stream, SecureLines::new(transport)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};
    use msg_proto::peer::PeerFrame;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    struct Sides {
        caller: Identity,
        callee: Identity,
        token: SecretKey,
    }

    fn sides() -> Sides {
        Sides {
            caller: Identity::generate().unwrap(),
            callee: Identity::generate().unwrap(),
            token: SecretKey::new([3; 32]),
        }
    }

    /// Runs both sides: the caller dials with `(key it was told, token)`;
    /// the callee answers with `its token` if the caller's key is
    /// `expected`. Returns both ends (or their errors) and the callee's
    /// view of the caller's first frame.
    async fn run(
        caller: &Identity,
        told: &PublicKey,
        token: &SecretKey,
        callee: &Identity,
        expected: &PublicKey,
        callee_token: &SecretKey,
    ) -> (
        Result<Framed<DuplexStream, SecureLines>, HandshakeError>,
        Result<Option<PeerFrame>, HandshakeError>,
    ) {
        let (a, b) = duplex(4096);
        let calling = async {
            let mut conn = initiate(a, caller, told, token).await?;
            conn.send(PeerFrame::Hello {
                version: 2,
                from: "hans".into(),
            })
            .await?;
            Ok(conn)
        };
        let answering = async {
            let responding = respond(b, callee).await?;
            if responding.caller() != expected {
                return Ok(None);
            }
            let mut conn = responding.finish(callee_token).await?;
            match conn.next().await {
                Some(Ok(Ok(frame))) => Ok(Some(frame)),
                Some(Err(e)) => Err(e.into()),
                _ => Ok(None),
            }
        };
        tokio::join!(calling, answering)
    }

    #[tokio::test]
    async fn the_brokered_keys_and_token_open_a_channel_both_ways() {
        let s = sides();
        let (a, b) = duplex(4096);
        let callee = async {
            let responding = respond(b, &s.callee).await.unwrap();
            assert_eq!(responding.caller(), s.caller.public());
            responding.finish(&s.token).await.unwrap()
        };
        let caller = initiate(a, &s.caller, s.callee.public(), &s.token);
        let (caller, callee) = tokio::join!(caller, callee);
        let (mut caller, mut callee) = (caller.unwrap(), callee);
        caller.send(PeerFrame::Ping).await.unwrap();
        assert!(matches!(callee.next().await, Some(Ok(Ok(PeerFrame::Ping)))));
        callee.send(PeerFrame::Pong).await.unwrap();
        assert!(matches!(caller.next().await, Some(Ok(Ok(PeerFrame::Pong)))));
    }

    #[tokio::test]
    async fn a_caller_with_another_key_is_not_the_brokered_one() {
        let s = sides();
        let impostor = Identity::generate().unwrap();
        // It has the token and knows the callee's key, but its own key is
        // not the one the server gave the callee: no session matches.
        let (caller, first) = run(
            &impostor,
            s.callee.public(),
            &s.token,
            &s.callee,
            s.caller.public(),
            &s.token,
        )
        .await;
        assert!(matches!(first, Ok(None)));
        drop(caller);
    }

    #[tokio::test]
    async fn a_caller_without_the_token_is_found_out_by_both() {
        let s = sides();
        let wrong = SecretKey::new([4; 32]);
        let (caller, first) = run(
            &s.caller,
            s.callee.public(),
            &wrong,
            &s.callee,
            s.caller.public(),
            &s.token,
        )
        .await;
        assert!(matches!(caller, Err(HandshakeError::Unverified)));
        // Its first record never came, or did not open.
        assert!(matches!(
            first,
            Ok(None) | Err(HandshakeError::Record(RecordError::Decrypt))
        ));
    }

    #[tokio::test]
    async fn a_callee_without_the_brokered_key_cannot_answer() {
        let s = sides();
        let impostor = Identity::generate().unwrap();
        // The caller was told the real callee's key; someone else answers.
        let (caller, first) = run(
            &s.caller,
            s.callee.public(),
            &s.token,
            &impostor,
            s.caller.public(),
            &s.token,
        )
        .await;
        assert!(matches!(first, Err(HandshakeError::NotForUs)), "{first:?}");
        // The impostor closed: the caller never got an answer.
        assert!(matches!(
            caller,
            Err(HandshakeError::Record(RecordError::Closed))
        ));
    }

    #[tokio::test]
    async fn a_forged_answer_does_not_verify() {
        let s = sides();
        let (a, mut b) = duplex(4096);
        let caller = tokio::spawn(async move {
            initiate(a, &s.caller, s.callee.public(), &s.token)
                .await
                .err()
        });
        let first = read_record(&mut b, MAX_HANDSHAKE_LEN).await.unwrap();
        assert_eq!(first.len(), 96, "e, s and an empty payload, sealed");
        // 48 bytes of anything: the shape of message 2, not its proof.
        write_record(&mut b, &[0x5a; 48]).await.unwrap();
        assert!(matches!(
            caller.await.unwrap(),
            Some(HandshakeError::Unverified)
        ));
    }

    #[tokio::test]
    async fn garbage_and_oversized_first_messages_are_refused() {
        let callee = Identity::generate().unwrap();
        for garbage in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            &[0, 96][..],
            &[0, 4, 1, 2, 3, 4][..],
        ] {
            let (mut a, b) = duplex(4096);
            a.write_all(garbage).await.unwrap();
            drop(a.shutdown().await);
            let answer = respond(b, &callee).await;
            assert!(answer.is_err(), "{garbage:?}");
        }
        // 96 bytes of noise shaped like message 1.
        let (mut a, b) = duplex(4096);
        write_record(&mut a, &[7; 96]).await.unwrap();
        assert!(matches!(
            respond(b, &callee).await,
            Err(HandshakeError::NotForUs)
        ));
        // Nothing was written back in any case.
        let mut rest = Vec::new();
        drop(a.shutdown().await);
        let _ = a.read_to_end(&mut rest).await;
        assert!(rest.is_empty());
    }
}

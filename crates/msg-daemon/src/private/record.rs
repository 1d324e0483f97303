//! Records on a peer connection: each is a 2-byte big-endian length and that
//! many bytes, a Noise message. The handshake's two messages are read and
//! written with [`read_record`] and [`write_record`]; after it,
//! [`SecureLines`] seals the peer protocol's NDJSON into transport records
//! and opens them again.
//!
//! Everything is bounded: a record is at most [`MAX_RECORD_LEN`] bytes by
//! construction, a handshake record at most the caller's limit, and the
//! opened text at most one line limit plus one record. A record that does
//! not open (wrong key, tampered, replayed, reordered) or a connection that
//! ends inside one is an error that ends the connection: after that the
//! two sides' nonces no longer agree.

use std::io;

use msg_proto::JsonLines;
use msg_proto::peer::{MAX_RECORD_LEN, MAX_RECORD_PLAINTEXT, PeerFrame, TAG_LEN};
use snow::TransportState;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// What ends a peer connection at the record level.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("the connection closed")]
    Closed,
    #[error("the connection ended inside a record")]
    Truncated,
    #[error("a record of {len} bytes is over the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("a record too short to carry its tag")]
    TooShort,
    #[error("a record did not decrypt")]
    Decrypt,
    #[error("a record could not be sealed")]
    Seal,
}

/// Writes one handshake message as a record.
pub async fn write_record<S: AsyncWrite + Unpin>(
    stream: &mut S,
    message: &[u8],
) -> Result<(), RecordError> {
    let len = u16::try_from(message.len()).map_err(|_| RecordError::TooLong {
        len: message.len(),
        max: MAX_RECORD_LEN,
    })?;
    let mut record = Vec::with_capacity(2 + message.len());
    record.extend_from_slice(&len.to_be_bytes());
    record.extend_from_slice(message);
    stream.write_all(&record).await?;
    stream.flush().await?;
    Ok(())
}

/// Reads one handshake record of at most `max` bytes, and not a byte more
/// (what follows belongs to the transport).
pub async fn read_record<S: AsyncRead + Unpin>(
    stream: &mut S,
    max: usize,
) -> Result<Vec<u8>, RecordError> {
    let mut prefix = [0u8; 2];
    let first = stream.read(&mut prefix).await?;
    if first == 0 {
        return Err(RecordError::Closed);
    }
    if first == 1 {
        read_exactly(stream, &mut prefix[1..]).await?;
    }
    let len = usize::from(u16::from_be_bytes(prefix));
    if len > max {
        return Err(RecordError::TooLong { len, max });
    }
    let mut record = vec![0u8; len];
    read_exactly(stream, &mut record).await?;
    Ok(record)
}

async fn read_exactly<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
) -> Result<(), RecordError> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(RecordError::Truncated),
        Err(e) => Err(e.into()),
    }
}

/// The peer protocol inside Noise transport records: a line is sealed in
/// records of at most [`MAX_RECORD_PLAINTEXT`] bytes each; records are
/// opened in order and their text cut into lines by [`JsonLines`] (its
/// limit and its error items as on any other msg connection).
pub struct SecureLines {
    transport: TransportState,
    lines: JsonLines<PeerFrame, PeerFrame>,
    /// Opened text not yet cut into lines; `JsonLines` discards an
    /// oversized line as it grows, so this stays under one line limit plus
    /// one record.
    opened: BytesMut,
}

impl SecureLines {
    pub fn new(transport: TransportState) -> Self {
        Self {
            transport,
            lines: JsonLines::new(),
            opened: BytesMut::new(),
        }
    }

    /// Opens the next whole record in `src`, if there is one, appending its
    /// text to `opened`. `Ok(false)`: more bytes are needed.
    fn open_record(&mut self, src: &mut BytesMut) -> Result<bool, RecordError> {
        if src.len() < 2 {
            return Ok(false);
        }
        let len = usize::from(u16::from_be_bytes([src[0], src[1]]));
        if len < TAG_LEN {
            return Err(RecordError::TooShort);
        }
        if src.len() < 2 + len {
            src.reserve(2 + len - src.len());
            return Ok(false);
        }
        src.advance(2);
        let record = src.split_to(len);
        let start = self.opened.len();
        self.opened.resize(start + len, 0);
        match self
            .transport
            .read_message(&record, &mut self.opened[start..])
        {
            Ok(n) => {
                self.opened.truncate(start + n);
                Ok(true)
            }
            Err(_) => {
                self.opened.truncate(start);
                Err(RecordError::Decrypt)
            }
        }
    }
}

impl Decoder for SecureLines {
    type Item = Result<PeerFrame, msg_proto::FrameError>;
    type Error = RecordError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, RecordError> {
        loop {
            if let Some(item) = self.lines.decode(&mut self.opened)? {
                return Ok(Some(item));
            }
            if !self.open_record(src)? {
                return Ok(None);
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, RecordError> {
        if let Some(item) = self.decode(src)? {
            return Ok(Some(item));
        }
        if !src.is_empty() {
            return Err(RecordError::Truncated);
        }
        Ok(self.lines.decode_eof(&mut self.opened)?)
    }
}

impl Encoder<PeerFrame> for SecureLines {
    type Error = RecordError;

    fn encode(&mut self, frame: PeerFrame, dst: &mut BytesMut) -> Result<(), RecordError> {
        let mut line = BytesMut::new();
        self.lines.encode(frame, &mut line)?;
        for chunk in line.chunks(MAX_RECORD_PLAINTEXT) {
            // Sealed in place: the length, then room for the ciphertext.
            let start = dst.len();
            dst.put_u16(0);
            dst.resize(start + 2 + chunk.len() + TAG_LEN, 0);
            let sealed = self
                .transport
                .write_message(chunk, &mut dst[start + 2..])
                .map_err(|_| RecordError::Seal);
            let n = match sealed {
                Ok(n) => n,
                Err(e) => {
                    dst.truncate(start);
                    return Err(e);
                }
            };
            // At most MAX_RECORD_LEN by the chunk size.
            let len = u16::try_from(n).map_err(|_| RecordError::Seal)?;
            dst[start..start + 2].copy_from_slice(&len.to_be_bytes());
            dst.truncate(start + 2 + n);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::private::keys::{Identity, SecretKey, noise_params};
    use msg_proto::FrameError;

    /// Two transport states that talk to each other (a real handshake in
    /// memory).
    fn transports() -> (TransportState, TransportState) {
        let (a, b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let psk = SecretKey::new([7; 32]);
        let mut initiator = snow::Builder::new(noise_params().unwrap())
            .local_private_key(a.private().expose())
            .unwrap()
            .remote_public_key(b.public())
            .unwrap()
            .psk(2, psk.expose())
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut responder = snow::Builder::new(noise_params().unwrap())
            .local_private_key(b.private().expose())
            .unwrap()
            .psk(2, psk.expose())
            .unwrap()
            .build_responder()
            .unwrap();
        let (mut m, mut p) = ([0u8; 256], [0u8; 256]);
        let n = initiator.write_message(&[], &mut m).unwrap();
        responder.read_message(&m[..n], &mut p).unwrap();
        let n = responder.write_message(&[], &mut m).unwrap();
        initiator.read_message(&m[..n], &mut p).unwrap();
        (
            initiator.into_transport_mode().unwrap(),
            responder.into_transport_mode().unwrap(),
        )
    }

    fn pair() -> (SecureLines, SecureLines) {
        let (a, b) = transports();
        (SecureLines::new(a), SecureLines::new(b))
    }

    fn sealed(codec: &mut SecureLines, frame: PeerFrame) -> BytesMut {
        let mut wire = BytesMut::new();
        codec.encode(frame, &mut wire).unwrap();
        wire
    }

    fn text(len: usize) -> PeerFrame {
        PeerFrame::Message {
            id: 1,
            text: "x".repeat(len),
        }
    }

    #[test]
    fn frames_go_through_sealed_and_unreadable() {
        let (mut a, mut b) = pair();
        let mut wire = sealed(&mut a, PeerFrame::Ping);
        wire.extend_from_slice(&sealed(&mut a, text(20)));
        assert!(!wire.windows(4).any(|w| w == b"ping"));
        assert!(!wire.windows(5).any(|w| w == b"xxxxx"));
        let first = usize::from(u16::from_be_bytes([wire[0], wire[1]]));
        // `{"type":"ping"}` and its newline, and the tag.
        assert_eq!(first, 16 + TAG_LEN);
        assert!(matches!(b.decode(&mut wire), Ok(Some(Ok(PeerFrame::Ping)))));
        assert_eq!(b.decode(&mut wire).unwrap().unwrap().unwrap(), text(20));
        assert!(wire.is_empty());
        assert!(b.decode(&mut wire).unwrap().is_none());
    }

    #[test]
    fn records_arrive_in_any_slices() {
        let (mut a, mut b) = pair();
        let wire = sealed(&mut a, text(3000));
        let mut src = BytesMut::new();
        let mut got = Vec::new();
        for byte in wire.iter() {
            src.put_u8(*byte);
            if let Some(item) = b.decode(&mut src).unwrap() {
                got.push(item.unwrap());
            }
        }
        assert_eq!(got, [text(3000)]);
    }

    #[test]
    fn a_long_line_takes_several_records_and_the_line_limit_still_holds() {
        let (mut a, mut b) = pair();
        // Over one record, under the line limit.
        let long = text(MAX_RECORD_PLAINTEXT - 20);
        let mut wire = sealed(&mut a, long.clone());
        let first = usize::from(u16::from_be_bytes([wire[0], wire[1]]));
        assert_eq!(first, MAX_RECORD_LEN, "a full first record");
        assert_eq!(b.decode(&mut wire).unwrap().unwrap().unwrap(), long);
        // Over the line limit: reported, skipped, and the next one is read.
        let mut wire = sealed(&mut a, text(msg_proto::MAX_FRAME_LEN + 10));
        wire.extend_from_slice(&sealed(&mut a, PeerFrame::Pong));
        assert!(matches!(
            b.decode(&mut wire),
            Ok(Some(Err(FrameError::TooLong { .. })))
        ));
        assert!(matches!(b.decode(&mut wire), Ok(Some(Ok(PeerFrame::Pong)))));
        assert!(b.opened.capacity() <= msg_proto::MAX_FRAME_LEN + 2 * MAX_RECORD_LEN);
    }

    #[test]
    fn a_tampered_record_ends_the_connection() {
        let (mut a, mut b) = pair();
        let mut wire = sealed(&mut a, PeerFrame::Ping);
        let last = wire.len() - 1;
        wire[last] ^= 1;
        assert!(matches!(b.decode(&mut wire), Err(RecordError::Decrypt)));
    }

    #[test]
    fn a_record_from_another_session_or_replayed_ends_the_connection() {
        let (mut a, mut b) = pair();
        let (mut stranger, _) = pair();
        let mut wire = sealed(&mut stranger, PeerFrame::Ping);
        assert!(matches!(b.decode(&mut wire), Err(RecordError::Decrypt)));

        let (mut a2, mut b2) = pair();
        let once = sealed(&mut a2, PeerFrame::Ping);
        let mut wire = once.clone();
        assert!(b2.decode(&mut wire).unwrap().is_some());
        let mut replayed = once;
        assert!(matches!(
            b2.decode(&mut replayed),
            Err(RecordError::Decrypt)
        ));
        // Nor can a side read its own records back.
        let mut own = sealed(&mut a, PeerFrame::Ping);
        assert!(matches!(a.decode(&mut own), Err(RecordError::Decrypt)));
        let _ = &mut b;
    }

    #[test]
    fn short_truncated_and_garbage_records() {
        let (_, mut b) = pair();
        // Shorter than a tag.
        let mut wire = BytesMut::from(&[0u8, 5, 1, 2, 3, 4, 5][..]);
        assert!(matches!(b.decode(&mut wire), Err(RecordError::TooShort)));
        // A cleartext line, read as a record's length: waits for the rest,
        // then fails to open.
        let (_, mut b) = pair();
        let mut wire = BytesMut::from(&b"{\"type\":\"hello\"}\n"[..]);
        assert!(b.decode(&mut wire).unwrap().is_none());
        assert!(matches!(
            b.decode_eof(&mut wire),
            Err(RecordError::Truncated)
        ));
        let (mut a, mut b) = pair();
        let mut wire = sealed(&mut a, PeerFrame::Ping);
        wire.truncate(wire.len() - 1);
        assert!(b.decode(&mut wire).unwrap().is_none());
        assert!(matches!(
            b.decode_eof(&mut wire),
            Err(RecordError::Truncated)
        ));
        // A clean end between records is no error.
        let (_, mut b) = pair();
        assert!(b.decode_eof(&mut BytesMut::new()).unwrap().is_none());
    }

    #[tokio::test]
    async fn handshake_records_are_bounded() {
        let (mut ours, mut theirs) = tokio::io::duplex(1024);
        write_record(&mut theirs, &[1; 96]).await.unwrap();
        assert_eq!(read_record(&mut ours, 256).await.unwrap(), [1; 96]);
        write_record(&mut theirs, &[1; 257]).await.unwrap();
        assert!(matches!(
            read_record(&mut ours, 256).await,
            Err(RecordError::TooLong { len: 257, max: 256 })
        ));
        let (mut ours, mut theirs) = tokio::io::duplex(1024);
        theirs.write_all(&[0, 96, 1, 2]).await.unwrap();
        drop(theirs);
        assert!(matches!(
            read_record(&mut ours, 256).await,
            Err(RecordError::Truncated)
        ));
        let (mut ours, theirs) = tokio::io::duplex(1024);
        drop(theirs);
        assert!(matches!(
            read_record(&mut ours, 256).await,
            Err(RecordError::Closed)
        ));
    }
}

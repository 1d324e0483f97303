//! Newline-delimited JSON framing with a frame-size limit.
//!
//! Unlike `tokio_util::codec::LinesCodec`, a bad frame is not a stream error:
//! the decoder yields `Ok(Some(Err(FrameError)))` and carries on with the next
//! line, so a connection can answer a malformed frame with an error frame and
//! keep serving. Only I/O errors end the stream. Memory stays bounded: an
//! oversized line is reported as soon as it passes the limit and the rest of
//! it is discarded up to its newline without being buffered.
//!
//! A JSON object that does not make a frame still tells its `id`, when it
//! has a valid one, so that the error reply can carry it and a client that
//! matches replies by id is not left waiting.

use std::io;
use std::marker::PhantomData;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Decoder, Encoder};

use crate::{MAX_FRAME_LEN, RequestId};

/// A frame that could not be decoded. The connection can go on after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame longer than {max} bytes")]
    TooLong { max: usize },
    #[error("frame is not valid UTF-8")]
    InvalidUtf8,
    #[error("frame is not valid JSON: {0}")]
    InvalidJson(String),
    /// Valid JSON, but not a frame this side understands (unknown `type`,
    /// missing or mistyped fields). `id` is the object's `"id"` when it is
    /// an unsigned 64-bit integer, whatever else is wrong with the frame.
    #[error("unknown or malformed frame: {reason}")]
    InvalidFrame {
        reason: String,
        id: Option<RequestId>,
    },
}

impl FrameError {
    /// The request id the bad frame carried, if it could still be read:
    /// the error reply to it echoes this.
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            Self::InvalidFrame { id, .. } => *id,
            _ => None,
        }
    }
}

/// Decodes lines into `In` and encodes `Out` as lines.
///
/// The two type parameters let each side name what it reads and writes, e.g.
/// the server uses `JsonLines<ClientFrame, ServerFrame>`.
pub struct JsonLines<In, Out> {
    max_len: usize,
    /// Where to resume the newline search, so a slowly arriving line is
    /// scanned once, not once per read.
    scanned: usize,
    /// Inside an oversized line whose error was already reported.
    discarding: bool,
    _types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> JsonLines<In, Out> {
    pub fn new() -> Self {
        Self::with_max_len(MAX_FRAME_LEN)
    }

    pub fn with_max_len(max_len: usize) -> Self {
        Self {
            max_len,
            scanned: 0,
            discarding: false,
            _types: PhantomData,
        }
    }
}

impl<In, Out> Default for JsonLines<In, Out> {
    fn default() -> Self {
        Self::new()
    }
}

impl<In, Out> std::fmt::Debug for JsonLines<In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLines")
            .field("max_len", &self.max_len)
            .field("discarding", &self.discarding)
            .finish()
    }
}

fn parse<In: DeserializeOwned>(line: &[u8]) -> Result<In, FrameError> {
    let text = std::str::from_utf8(line).map_err(|_| FrameError::InvalidUtf8)?;
    serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => FrameError::InvalidFrame {
            reason: e.to_string(),
            id: request_id_of(text),
        },
        _ => FrameError::InvalidJson(e.to_string()),
    })
}

/// The `"id"` of a JSON object that did not make a frame, if it is a valid
/// request id. Only the error path pays for this second, shallow parse.
fn request_id_of(text: &str) -> Option<RequestId> {
    /// Every other field is skipped; a mistyped `id` fails the parse.
    #[derive(Deserialize)]
    struct IdOnly {
        #[serde(default)]
        id: Option<RequestId>,
    }
    // serde would also read the struct from an array (`[14]`), which has
    // no `id` field at all.
    if !text.starts_with('{') {
        return None;
    }
    serde_json::from_str::<IdOnly>(text).ok()?.id
}

impl<In: DeserializeOwned, Out> Decoder for JsonLines<In, Out> {
    type Item = Result<In, FrameError>;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Self::Item>> {
        loop {
            let newline = buf[self.scanned..].iter().position(|&b| b == b'\n');
            let Some(offset) = newline else {
                if self.discarding {
                    buf.clear();
                    self.scanned = 0;
                    return Ok(None);
                }
                if buf.len() > self.max_len {
                    buf.clear();
                    self.scanned = 0;
                    self.discarding = true;
                    return Ok(Some(Err(FrameError::TooLong { max: self.max_len })));
                }
                self.scanned = buf.len();
                return Ok(None);
            };
            let end = self.scanned + offset;
            self.scanned = 0;
            if self.discarding {
                buf.advance(end + 1);
                self.discarding = false;
                continue;
            }
            let line = buf.split_to(end + 1);
            let line = trim_line(&line[..end]);
            if line.is_empty() {
                // Blank lines are keep-alive noise, not frames.
                continue;
            }
            if line.len() > self.max_len {
                return Ok(Some(Err(FrameError::TooLong { max: self.max_len })));
            }
            return Ok(Some(parse(line)));
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Self::Item>> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        // A last frame without its newline still counts.
        let rest = buf.split();
        self.scanned = 0;
        if self.discarding {
            self.discarding = false;
            return Ok(None);
        }
        let line = trim_line(&rest);
        if line.is_empty() {
            Ok(None)
        } else {
            Ok(Some(parse(line)))
        }
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let start = line
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &line[start..end]
}

impl<In, Out: Serialize> Encoder<Out> for JsonLines<In, Out> {
    type Error = io::Error;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> io::Result<()> {
        write_line(&item, dst)
    }
}

fn write_line<T: Serialize + ?Sized>(item: &T, dst: &mut BytesMut) -> io::Result<()> {
    serde_json::to_writer(dst.writer(), item).map_err(io::Error::other)?;
    dst.put_u8(b'\n');
    Ok(())
}

/// Serializes one frame into a ready-to-write line, for senders that encode
/// once and write the same bytes to many connections (broadcast).
pub fn encode_line<T: Serialize + ?Sized>(item: &T) -> io::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(128);
    write_line(item, &mut buf)?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Frame {
        Ping,
        Say { text: String },
    }

    type Codec = JsonLines<Frame, Frame>;

    fn decode_all(codec: &mut Codec, buf: &mut BytesMut) -> Vec<Result<Frame, FrameError>> {
        let mut out = Vec::new();
        while let Some(item) = codec.decode(buf).unwrap() {
            out.push(item);
        }
        out
    }

    #[test]
    fn round_trip() {
        let mut codec = Codec::new();
        let mut buf = BytesMut::new();
        codec
            .encode(
                Frame::Say {
                    text: "hi\nthere".into(),
                },
                &mut buf,
            )
            .unwrap();
        codec.encode(Frame::Ping, &mut buf).unwrap();
        assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 2);
        let frames = decode_all(&mut codec, &mut buf);
        assert_eq!(
            frames,
            vec![
                Ok(Frame::Say {
                    text: "hi\nthere".into()
                }),
                Ok(Frame::Ping)
            ]
        );
    }

    #[test]
    fn partial_lines_wait_for_the_newline() {
        let mut codec = Codec::new();
        let mut buf = BytesMut::from(&b"{\"type\":"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"\"ping\"}\r\n\n   \n");
        assert_eq!(decode_all(&mut codec, &mut buf), vec![Ok(Frame::Ping)]);
        assert!(buf.is_empty());
    }

    #[test]
    fn bad_frames_are_items_not_stream_errors() {
        let mut codec = Codec::new();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"not json\n");
        buf.extend_from_slice(b"{\"type\":\"dance\"}\n");
        buf.extend_from_slice(b"{\"type\":\"say\"}\n");
        buf.extend_from_slice(b"\xff\xfe\n");
        buf.extend_from_slice(b"{\"type\":\"ping\"}\n");
        let frames = decode_all(&mut codec, &mut buf);
        assert!(matches!(frames[0], Err(FrameError::InvalidJson(_))));
        assert!(matches!(frames[1], Err(FrameError::InvalidFrame { .. })));
        assert!(matches!(frames[2], Err(FrameError::InvalidFrame { .. })));
        assert_eq!(frames[3], Err(FrameError::InvalidUtf8));
        assert_eq!(frames[4], Ok(Frame::Ping));
    }

    #[test]
    fn a_bad_frame_tells_its_id_when_it_has_a_valid_one() {
        let mut codec = Codec::new();
        let mut buf = BytesMut::new();
        for line in [
            &b"{\"type\":\"say\",\"id\":14}\n"[..],
            b"{\"type\":\"dance\",\"id\":18446744073709551615,\"x\":[1]}\n",
            b"{\"type\":\"say\",\"id\":\"14\"}\n",
            b"{\"type\":\"say\",\"id\":-1}\n",
            b"{\"type\":\"say\",\"id\":1.5}\n",
            b"{\"type\":\"say\"}\n",
            b"[14]\n",
            b"{\"type\":\"say\",\"id\":14\n",
        ] {
            buf.extend_from_slice(line);
        }
        let ids: Vec<Option<RequestId>> = decode_all(&mut codec, &mut buf)
            .iter()
            .map(|frame| frame.as_ref().expect_err("bad frames").request_id())
            .collect();
        assert_eq!(
            ids,
            [Some(14), Some(u64::MAX), None, None, None, None, None, None]
        );
    }

    #[test]
    fn oversized_line_is_reported_once_and_skipped_without_buffering() {
        let mut codec = Codec::with_max_len(16);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[b'x'; 20]);
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Err(FrameError::TooLong { max: 16 }))
        );
        assert!(buf.is_empty(), "the oversized prefix is dropped at once");
        buf.extend_from_slice(&[b'y'; 100]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(buf.is_empty());
        buf.extend_from_slice(b"zz\n{\"type\":\"ping\"}\n");
        assert_eq!(decode_all(&mut codec, &mut buf), vec![Ok(Frame::Ping)]);
    }

    #[test]
    fn oversized_line_arriving_whole_is_reported() {
        let mut codec = Codec::with_max_len(16);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"{\"type\":\"say\",\"text\":\"0123456789\"}\n{\"type\":\"ping\"}\n");
        let frames = decode_all(&mut codec, &mut buf);
        assert_eq!(
            frames,
            vec![Err(FrameError::TooLong { max: 16 }), Ok(Frame::Ping)]
        );
    }

    #[test]
    fn last_frame_without_newline_at_eof() {
        let mut codec = Codec::new();
        let mut buf = BytesMut::from(&b"{\"type\":\"ping\"}"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), Some(Ok(Frame::Ping)));
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
    }

    #[tokio::test]
    async fn works_with_framed_over_a_real_stream() {
        use futures::{SinkExt, StreamExt};
        use tokio_util::codec::Framed;
        let (a, b) = tokio::io::duplex(64);
        let mut left = Framed::new(a, Codec::new());
        let mut right = Framed::new(b, Codec::new());
        let text = "x".repeat(1000);
        let sent = Frame::Say { text: text.clone() };
        let writer = tokio::spawn(async move {
            left.send(sent).await.unwrap();
            left.send(Frame::Ping).await.unwrap();
        });
        assert_eq!(
            right.next().await.unwrap().unwrap(),
            Ok(Frame::Say { text })
        );
        assert_eq!(right.next().await.unwrap().unwrap(), Ok(Frame::Ping));
        writer.await.unwrap();
    }
}

//! The socket side of one connection, driven by the connection's single
//! task: frames are decoded from a read buffer that exists only while part
//! of a frame is pending, and queued lines are written with vectored writes
//! straight from the outbox, without a batch buffer. An idle session holds
//! no buffer at all: that is most of what a session used to cost.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use msg_proto::server::{ClientFrame, ServerFrame};
use msg_proto::{FrameError, JsonLines};
use tokio::io::Ready;
use tokio_util::codec::Decoder;

use crate::hub::presence_log::{PresenceLog, Read, Reader};
use crate::outbox::{Line, LineKind, Outbox};
use crate::stream::Stream;

/// Bytes read per readiness event; on the stack, so it costs an idle
/// session nothing.
const READ_CHUNK: usize = 16 * 1024;
/// Lines gathered into one write.
const MAX_IOVECS: usize = 256;

pub type Decoded = Result<ClientFrame, FrameError>;

/// A logged-in session's presence notices: the shared log and its place
/// in it.
pub struct Notices<'a> {
    pub log: &'a PresenceLog,
    pub reader: Reader<'a>,
}

/// The session missed presence notices: the log moved past its cursor.
#[derive(Debug, thiserror::Error)]
#[error("the client fell behind the presence notices")]
pub struct FellBehind;

pub struct Wire {
    stream: Stream,
    codec: JsonLines<ClientFrame, ServerFrame>,
    /// Present only while part of a frame is pending (boxed: an idle
    /// session carries 8 bytes for it, not 32).
    read_buf: Option<Box<BytesMut>>,
    /// Lines taken from the outbox (and presence frames), the first maybe
    /// partly written; present only while writing (boxed, like `read_buf`).
    #[allow(clippy::box_collection)] // 8 bytes per idle session, not 32
    unsent: Option<Box<VecDeque<Line>>>,
    /// How many lines at the front of `unsent` may be written; the others
    /// wait for presence notices due before them.
    writable: usize,
    eof: bool,
}

impl Wire {
    pub fn new(stream: Stream) -> Self {
        Self {
            stream,
            codec: JsonLines::new(),
            read_buf: None,
            unsent: None,
            writable: 0,
            eof: false,
        }
    }

    /// The next frame already received, if any, with the bytes it took.
    /// After end of stream a last line without its newline counts too.
    pub fn next_frame(&mut self) -> Option<(Decoded, usize)> {
        let buf = self.read_buf.as_deref_mut()?;
        let buffered = buf.len();
        let decoded = if self.eof {
            self.codec.decode_eof(buf)
        } else {
            self.codec.decode(buf)
        };
        let left = buf.len();
        if left == 0 {
            self.read_buf = None;
        }
        let taken = buffered - left;
        // The codec reports bad frames as items; it has no error of its own.
        Some((decoded.ok().flatten()?, taken))
    }

    /// The peer has closed its sending side.
    pub fn at_eof(&self) -> bool {
        self.eof
    }

    /// The peer closed its side and every frame has been taken.
    pub fn finished(&self) -> bool {
        self.eof && self.read_buf.is_none()
    }

    /// Reads what the socket has, without waiting.
    pub fn try_read(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; READ_CHUNK];
        match self.stream.try_read(&mut chunk) {
            Ok(0) => self.eof = true,
            Ok(n) => self
                .read_buf
                .get_or_insert_with(Box::default)
                .extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Writes queued lines, and the presence notices due before and after
    /// them, until the socket would block. `Ok(true)` when nothing is left
    /// to write. A reader that fell behind the presence log is an error
    /// ([`FellBehind`]).
    pub fn try_flush(
        &mut self,
        out: &Outbox,
        mut notices: Option<Notices<'_>>,
    ) -> io::Result<bool> {
        loop {
            if self.writable == 0 && !self.refill(out, notices.as_mut())? {
                // Keep no storage while quiet.
                self.unsent = None;
                return self.stream.try_flush();
            }
            let Some(unsent) = self.unsent.as_deref() else {
                return self.stream.try_flush();
            };
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (slot, line) in slices.iter_mut().zip(unsent.range(..self.writable)) {
                *slot = IoSlice::new(&line.bytes);
                count += 1;
            }
            let written = match self.stream.try_write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            };
            let (lines, events, bytes) = self.consume(written);
            out.written(lines, events, bytes);
        }
    }

    /// Makes lines writable when none are: queued ones, with at most one
    /// frame of presence notices before them (those announced before the
    /// first was queued) or, when none is queued, one frame of the latest
    /// notices. `Ok(false)` when there is nothing to write.
    fn refill(&mut self, out: &Outbox, notices: Option<&mut Notices<'_>>) -> io::Result<bool> {
        let unsent = self.unsent.get_or_insert_with(Box::default);
        if unsent.is_empty() {
            out.take_into(unsent);
        }
        let Some(notices) = notices else {
            self.writable = unsent.len();
            return Ok(self.writable > 0);
        };
        let upto = unsent.front().map_or(u64::MAX, |line| line.mark);
        while *notices.reader.cursor < upto.min(notices.log.end()) {
            match notices.log.read_upto(&mut notices.reader, upto) {
                Read::Frame(bytes) => {
                    unsent.push_front(Line {
                        bytes,
                        kind: LineKind::Presence,
                        mark: 0,
                    });
                    self.writable = 1;
                    return Ok(true);
                }
                // Skipped notices not for this reader: look further.
                Read::Nothing => {}
                Read::FellBehind => return Err(io::Error::other(FellBehind)),
            }
        }
        // Every notice due before them is out: the lines up to the first
        // one queued after later notices can go.
        let cursor = *notices.reader.cursor;
        self.writable = unsent
            .iter()
            .position(|line| line.mark > cursor)
            .unwrap_or(unsent.len())
            .max(usize::from(!unsent.is_empty()));
        Ok(self.writable > 0)
    }

    /// Drops `written` bytes from the front of `unsent`; returns how many
    /// queued lines were completed, how many of those were events, and
    /// how many of the bytes were queued ones (not presence notices).
    fn consume(&mut self, mut written: usize) -> (usize, usize, usize) {
        let (mut lines, mut events, mut queued_bytes) = (0, 0, 0);
        let Some(unsent) = self.unsent.as_deref_mut() else {
            return (lines, events, queued_bytes);
        };
        while let Some(front) = unsent.front_mut() {
            let queued = front.kind != LineKind::Presence;
            if written < front.bytes.len() {
                front.bytes.advance(written);
                if queued {
                    queued_bytes += written;
                }
                break;
            }
            written -= front.bytes.len();
            if queued {
                queued_bytes += front.bytes.len();
                lines += 1;
            }
            events += usize::from(front.kind == LineKind::Event);
            unsent.pop_front();
            self.writable -= 1;
        }
        (lines, events, queued_bytes)
    }

    /// Whether the socket is readable (if `read`) or writable (if
    /// `write`); pending when neither. Polled rather than awaited so the
    /// connection task stores no readiness future: the socket keeps the
    /// task's waker itself.
    pub fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        read: bool,
        write: bool,
    ) -> Poll<io::Result<Ready>> {
        let mut ready = Ready::EMPTY;
        if read {
            match self.stream.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => ready |= Ready::READABLE,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        if write {
            match self.stream.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => ready |= Ready::WRITABLE,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        if ready.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(Ok(ready))
        }
    }

    /// Writes everything queued (not the presence notices: the connection
    /// is ending), waiting for the socket as needed.
    pub async fn flush(&mut self, out: &Outbox) -> io::Result<()> {
        while !self.try_flush(out, None)? {
            self.stream.writable().await?;
        }
        Ok(())
    }

    /// Ends the sending direction (the client reads end of stream).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.stream.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use msg_proto::server::BroadcastRequest;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    async fn pair() -> (Wire, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (Wire::new(Stream::Plain(server)), client)
    }

    /// Reads until a frame is complete (or the deadline passes).
    async fn read_frame(wire: &mut Wire) -> (Decoded, usize) {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(frame) = wire.next_frame() {
                    return frame;
                }
                std::future::poll_fn(|cx| wire.poll_ready(cx, true, false))
                    .await
                    .expect("readable");
                wire.try_read().expect("read");
            }
        })
        .await
        .expect("a frame in time")
    }

    #[tokio::test]
    async fn frames_come_with_their_length_and_the_buffer_goes_when_empty() {
        let (mut wire, mut client) = pair().await;
        let big = format!(
            "{{\"type\":\"broadcast\",\"id\":1,\"text\":\"{}\"}}\n",
            "x".repeat(5000)
        );
        client
            .write_all(b"{\"type\":\"ping\"}\n")
            .await
            .expect("write");
        client.write_all(big.as_bytes()).await.expect("write");
        let (frame, len) = read_frame(&mut wire).await;
        assert!(matches!(frame, Ok(ClientFrame::Ping)));
        assert_eq!(len, 16);
        let (frame, len) = read_frame(&mut wire).await;
        assert!(matches!(
            frame,
            Ok(ClientFrame::Broadcast(BroadcastRequest { .. }))
        ));
        assert_eq!(len, big.len());
        assert!(wire.read_buf.is_none(), "no buffer kept while idle");
        drop(client);
        std::future::poll_fn(|cx| wire.poll_ready(cx, true, false))
            .await
            .expect("readable");
        wire.try_read().expect("read");
        assert!(wire.finished());
    }

    #[tokio::test]
    async fn queued_lines_are_written_and_counted() {
        let (mut wire, mut client) = pair().await;
        let out = Outbox::new(8, 1 << 20, 1, Default::default());
        out.push(&ServerFrame::Pong);
        out.reply(&ServerFrame::Pong);
        assert_eq!(out.queued(), 2);
        wire.flush(&out).await.expect("flush");
        assert_eq!(out.queued(), 0);
        assert!(wire.unsent.is_none(), "no storage kept while idle");
        let mut got = vec![0u8; 32];
        let mut read = 0;
        while read < 32 {
            use tokio::io::AsyncReadExt;
            read += client.read(&mut got[read..]).await.expect("read");
        }
        assert_eq!(&got, b"{\"type\":\"pong\"}\n{\"type\":\"pong\"}\n");
    }

    #[tokio::test]
    async fn presence_notices_go_between_the_lines_queued_before_and_after_them() {
        use tokio::io::AsyncReadExt;
        let (mut wire, mut client) = pair().await;
        let log = PresenceLog::new(100, 1 << 20);
        let out = Outbox::new(8, 1 << 20, 4, log.end_counter());
        let mut cursor = log.end();
        out.push(&ServerFrame::Broadcast {
            from: "a".into(),
            text: "first".into(),
            at: 0,
        });
        log.append("luke", true, 1, None);
        out.push(&ServerFrame::Broadcast {
            from: "a".into(),
            text: "second".into(),
            at: 0,
        });
        log.append("leia", true, 2, None);
        log.append("me", true, 3, None);
        log.append("luke", false, 4, None);
        let notices = Notices {
            log: &log,
            reader: Reader {
                user: "me",
                batched: true,
                cursor: &mut cursor,
            },
        };
        assert!(wire.try_flush(&out, Some(notices)).expect("flush"));
        assert_eq!(out.queued(), 0);
        assert_eq!(out.queued_bytes(), 0, "notices are not counted as queued");
        let expected = concat!(
            "{\"type\":\"broadcast\",\"from\":\"a\",\"text\":\"first\",\"at\":0}\n",
            "{\"type\":\"presence_batch\",\"events\":[[\"luke\",true,1]]}\n",
            "{\"type\":\"broadcast\",\"from\":\"a\",\"text\":\"second\",\"at\":0}\n",
            "{\"type\":\"presence_batch\",\"events\":[[\"leia\",true,2],[\"luke\",false,4]]}\n",
        );
        let mut got = vec![0u8; expected.len()];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(String::from_utf8_lossy(&got), expected);
        assert_eq!(cursor, 4);
    }
}

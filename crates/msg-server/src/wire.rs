//! The socket side of one connection, driven by the connection's single
//! task: frames are decoded from a read buffer that exists only while part
//! of a frame is pending, and queued lines are written with vectored writes
//! straight from the outbox, without a batch buffer. An idle session holds
//! no buffer at all: that is most of what a session used to cost.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use msg_proto::server::{ClientFrame, ServerFrame};
use msg_proto::{FrameError, JsonLines};
use tokio::io::{AsyncWriteExt, Ready};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

use crate::outbox::Outbox;

/// Bytes read per readiness event; on the stack, so it costs an idle
/// session nothing.
const READ_CHUNK: usize = 16 * 1024;
/// Lines gathered into one write.
const MAX_IOVECS: usize = 256;

pub type Decoded = Result<ClientFrame, FrameError>;

pub struct Wire {
    stream: TcpStream,
    codec: JsonLines<ClientFrame, ServerFrame>,
    read_buf: BytesMut,
    /// Lines taken from the outbox, the first maybe partly written.
    unsent: VecDeque<Bytes>,
    eof: bool,
}

impl Wire {
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            codec: JsonLines::new(),
            read_buf: BytesMut::new(),
            unsent: VecDeque::new(),
            eof: false,
        }
    }

    /// The next frame already received, if any. After end of stream a last
    /// line without its newline counts too.
    pub fn next_frame(&mut self) -> Option<Decoded> {
        let decoded = if self.eof {
            self.codec.decode_eof(&mut self.read_buf)
        } else {
            self.codec.decode(&mut self.read_buf)
        };
        if self.read_buf.is_empty() && self.read_buf.capacity() > 0 {
            self.read_buf = BytesMut::new();
        }
        // The codec reports bad frames as items; it has no error of its own.
        decoded.ok().flatten()
    }

    /// The peer closed its side and every frame has been taken.
    pub fn finished(&self) -> bool {
        self.eof && self.read_buf.is_empty()
    }

    /// Reads what the socket has, without waiting.
    pub fn try_read(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; READ_CHUNK];
        match self.stream.try_read(&mut chunk) {
            Ok(0) => self.eof = true,
            Ok(n) => self.read_buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Writes queued lines until the socket would block. `Ok(true)` when
    /// nothing is left to write.
    pub fn try_flush(&mut self, out: &Outbox) -> io::Result<bool> {
        loop {
            if self.unsent.is_empty() {
                out.take_into(&mut self.unsent);
                if self.unsent.is_empty() {
                    // Keep no storage while quiet.
                    self.unsent = VecDeque::new();
                    return Ok(true);
                }
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (slot, line) in slices.iter_mut().zip(&self.unsent) {
                *slot = IoSlice::new(line);
                count += 1;
            }
            let written = match self.stream.try_write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            };
            out.written(self.consume(written));
        }
    }

    /// Drops `written` bytes from the front of `unsent`; returns how many
    /// lines were completed.
    fn consume(&mut self, mut written: usize) -> usize {
        let mut lines = 0;
        while let Some(front) = self.unsent.front_mut() {
            if written < front.len() {
                front.advance(written);
                break;
            }
            written -= front.len();
            self.unsent.pop_front();
            lines += 1;
        }
        lines
    }

    /// Whether the socket is readable (if `read`) or writable (if
    /// `write`); pending when neither. Polled rather than awaited so the
    /// connection task stores no readiness future: the socket keeps the
    /// task's waker itself.
    pub fn poll_ready(
        &self,
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

    /// Writes everything queued, waiting for the socket as needed.
    pub async fn flush(&mut self, out: &Outbox) -> io::Result<()> {
        while !self.try_flush(out)? {
            self.stream.writable().await?;
        }
        Ok(())
    }

    /// Writes until at most `mark` lines are queued.
    pub async fn flush_down_to(&mut self, out: &Outbox, mark: usize) -> io::Result<()> {
        while !self.try_flush(out)? && out.queued() > mark {
            self.stream.writable().await?;
        }
        Ok(())
    }

    /// Ends the sending direction (the client reads end of stream).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.stream.shutdown().await
    }
}

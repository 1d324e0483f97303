//! A connection's byte stream: plain TCP, or TLS over it. [`crate::wire`]
//! drives it without awaiting (it polls readiness, then reads or writes
//! what is there), so TLS is driven the same way: its reads and writes are
//! polled with a no-op waker, and readiness comes from the TCP socket,
//! except that plaintext rustls already decrypted counts as readable.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

pub enum Stream {
    Plain(TcpStream),
    /// Boxed: a TLS session is large and only some connections have one.
    Tls(Box<TlsStream<TcpStream>>),
}

/// A poll that must not register anything: readiness is polled separately
/// with the task's own waker (see [`Stream::poll_read_ready`]).
fn polled<T>(poll: impl FnOnce(&mut Context<'_>) -> Poll<io::Result<T>>) -> io::Result<T> {
    let mut cx = Context::from_waker(Waker::noop());
    match poll(&mut cx) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref().0,
        }
    }

    /// Reads what is there without waiting (`WouldBlock` when nothing is).
    pub fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.try_read(buf),
            Stream::Tls(tls) => polled(|cx| {
                let mut buf = ReadBuf::new(buf);
                Pin::new(tls.as_mut())
                    .poll_read(cx, &mut buf)
                    .map_ok(|()| buf.filled().len())
            }),
        }
    }

    /// Writes what the socket takes now (`WouldBlock` when nothing).
    pub fn try_write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.try_write_vectored(slices),
            Stream::Tls(tls) => polled(|cx| Pin::new(tls.as_mut()).poll_write_vectored(cx, slices)),
        }
    }

    /// Sends what TLS still holds encrypted; `Ok(true)` when nothing is
    /// left (always, for plain TCP, which holds nothing).
    pub fn try_flush(&mut self) -> io::Result<bool> {
        match self {
            Stream::Plain(_) => Ok(true),
            Stream::Tls(tls) => match polled(|cx| Pin::new(tls.as_mut()).poll_flush(cx)) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
                Err(e) => Err(e),
            },
        }
    }

    /// Ready when a read would find something; registers the task's waker
    /// with the socket otherwise.
    pub fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Stream::Tls(tls) = self {
            // Decrypted but not yet taken: the socket will not say so.
            match tls.get_mut().1.process_new_packets() {
                Ok(state) if state.plaintext_bytes_to_read() == 0 && !state.peer_has_closed() => {}
                // An error is for the next read to report.
                _ => return Poll::Ready(Ok(())),
            }
        }
        self.tcp().poll_read_ready(cx)
    }

    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp().poll_write_ready(cx)
    }

    pub async fn writable(&self) -> io::Result<()> {
        self.tcp().writable().await
    }

    /// Ends the sending direction (TLS: `close_notify` first).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.shutdown().await,
            Stream::Tls(tls) => tls.shutdown().await,
        }
    }
}

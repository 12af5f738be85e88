//! A bound on how long writing an answer may wait for the client to read.
//!
//! A client that sends requests (several, pipelined, or one for a large
//! answer such as `/openapi.json`) and never reads the answers fills its
//! receive window and the gateway's send buffer; hyper's write then waits
//! for ever, holding the connection, its task and its buffers. Writes are
//! the server's own doing, so a write waits only on the client: past
//! [`AdminTimeouts::send_idle_ms`](super::AdminTimeouts::send_idle_ms) without
//! progress it fails and the connection ends. A handler that runs long writes
//! nothing meanwhile and is not affected.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// A stream whose writes fail once they waited `idle` without progress.
pub(crate) struct SendBound<S> {
    inner: S,
    idle: Duration,
    /// While a write waits: the end of the bound.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl<S> SendBound<S> {
    pub(crate) fn new(inner: S, idle: Duration) -> Self {
        SendBound {
            inner,
            idle,
            waiting: None,
        }
    }

    /// What a write that returned `poll` answers: its result once it made
    /// progress, an error once it waited past the bound.
    fn bound<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.waiting = None;
            return poll;
        }
        let idle = self.idle;
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        match waiting.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing of the answer in time",
            ))),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendBound<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendBound<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.bound(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.bound(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.bound(cx, poll)
    }

    /// Not bounded here: the lingering close bounds itself (`linger`).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

//! Lingering close of the admin API's connections (RFC 9112 §9.6). When the
//! server ends a connection it sends its FIN first, then reads and discards
//! what the client is still sending until the client closes too, for at most
//! [`Linger::time`] and [`Linger::bytes`], and only then closes the socket.
//!
//! Why: the admin API answers some requests before reading their whole body
//! (401 from the token check, 413 over the 2 MiB body limit, 405, ...) and
//! then closes the connection (saying so: `unread`). hyper closes the socket as soon as the answer
//! is written (hyperium/hyper#2384), so the rest of the upload reaches a
//! closed socket and the kernel answers it with a reset: a client that writes
//! the whole body before reading (ureq, hence `outpost-admin`, and most
//! blocking clients) fails with `Broken pipe` or `Connection reset` and never
//! sees the answer, depending on whether its upload fit in the socket buffers
//! in time. Both bounds keep a client that never stops sending from holding
//! the connection: past them the socket closes as before.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

/// How long and how much a closing connection keeps reading.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Linger {
    /// Longest time between the server's FIN and the close.
    pub time: Duration,
    /// Most bytes read and discarded after the server's FIN.
    pub bytes: u64,
}

impl Linger {
    /// The admin API's bounds: a few seconds lets a client on a slow link
    /// finish its upload; 8 MiB lets a refused body of up to four times the
    /// 2 MiB body limit finish (more past a 413, which read 2 MiB first).
    pub(crate) const ADMIN: Linger = Linger {
        time: Duration::from_secs(5),
        bytes: 8 << 20,
    };
}

/// A TCP listener whose connections linger on close.
pub(crate) struct LingeringListener {
    listener: TcpListener,
    linger: Linger,
}

impl LingeringListener {
    pub(crate) fn new(listener: TcpListener, linger: Linger) -> Self {
        LingeringListener { listener, linger }
    }
}

impl axum::serve::Listener for LingeringListener {
    type Io = LingeringStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // axum's own accept loop (it retries, and backs off on errors such as
        // too many open files).
        let (stream, addr) = axum::serve::Listener::accept(&mut self.listener).await;
        (LingeringStream::new(stream, self.linger), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// A TCP stream whose `poll_shutdown` (hyper's last call on a connection it
/// ends) sends the FIN, then drains the peer within the [`Linger`] bounds.
pub(crate) struct LingeringStream {
    stream: TcpStream,
    linger: Linger,
    close: Close,
    /// Set: the close sends the FIN and does not linger ([`LingerSkip`]).
    skip: Arc<AtomicBool>,
}

/// Makes a [`LingeringStream`]'s close skip the linger, for a connection
/// closed with no request in progress: no answer is being sent, so there is
/// none for a client still uploading to miss, while a client that keeps an
/// idle connection open without reading would hold the close for the whole
/// [`Linger::time`] (the gateway's exit waits for it: `conn`).
#[derive(Clone)]
pub(crate) struct LingerSkip(Arc<AtomicBool>);

impl LingerSkip {
    pub(crate) fn skip(&self) {
        self.0.store(true, Ordering::Release);
    }
}

enum Close {
    Open,
    Draining {
        deadline: Pin<Box<Sleep>>,
        left: u64,
        scratch: Box<[u8]>,
    },
    Done,
}

/// Bytes read per call while draining.
const SCRATCH_BYTES: usize = 16 * 1024;

impl LingeringStream {
    pub(crate) fn new(stream: TcpStream, linger: Linger) -> Self {
        LingeringStream {
            stream,
            linger,
            close: Close::Open,
            skip: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The switch that makes this stream's close skip the linger.
    pub(crate) fn linger_skip(&self) -> LingerSkip {
        LingerSkip(Arc::clone(&self.skip))
    }
}

impl AsyncRead for LingeringStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LingeringStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.close {
                Close::Open => {
                    // The FIN follows the answer: the client reads it whole.
                    if let Err(e) = ready!(Pin::new(&mut this.stream).poll_shutdown(cx)) {
                        this.close = Close::Done;
                        return Poll::Ready(Err(e));
                    }
                    if this.skip.load(Ordering::Acquire) {
                        this.close = Close::Done;
                        continue;
                    }
                    this.close = Close::Draining {
                        deadline: Box::pin(tokio::time::sleep(this.linger.time)),
                        left: this.linger.bytes,
                        scratch: vec![0; SCRATCH_BYTES].into_boxed_slice(),
                    };
                }
                Close::Draining {
                    deadline,
                    left,
                    scratch,
                } => {
                    if deadline.as_mut().poll(cx).is_ready() {
                        this.close = Close::Done;
                        continue;
                    }
                    let mut buf = ReadBuf::new(scratch);
                    // tokio's cooperative budget makes a fast sender yield here.
                    match ready!(Pin::new(&mut this.stream).poll_read(cx, &mut buf)) {
                        Ok(()) if !buf.filled().is_empty() => {
                            *left = left.saturating_sub(buf.filled().len() as u64);
                            if *left == 0 {
                                this.close = Close::Done;
                            }
                        }
                        // The client's close (or a reset): nothing more to wait for.
                        Ok(()) | Err(_) => this.close = Close::Done,
                    }
                }
                Close::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A lingering stream on the server side of a loopback connection, and the client side.
    async fn pair(linger: Linger) -> (LingeringStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (LingeringStream::new(server, linger), client)
    }

    #[tokio::test]
    async fn the_close_waits_for_the_client_to_finish_sending() {
        let (mut server, mut client) = pair(Linger::ADMIN).await;
        server.write_all(b"answer").await.unwrap();
        let closing = tokio::spawn(async move { server.shutdown().await });
        // The answer and the FIN arrive while the server still reads.
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"answer");
        for _ in 0..8 {
            client.write_all(&[b'x'; 64 * 1024]).await.unwrap();
        }
        assert!(
            !closing.is_finished(),
            "the server lingers until the client closes"
        );
        client.shutdown().await.unwrap();
        closing.await.unwrap().unwrap();
        assert!(client.take_error().unwrap().is_none(), "no reset");
    }

    #[tokio::test]
    async fn the_byte_bound_ends_the_linger() {
        let linger = Linger {
            time: Duration::from_secs(3600),
            bytes: 256 * 1024,
        };
        let (mut server, mut client) = pair(linger).await;
        // A client that never stops sending.
        tokio::spawn(async move { while client.write_all(&[b'x'; 16 * 1024]).await.is_ok() {} });
        tokio::time::timeout(Duration::from_secs(30), server.shutdown())
            .await
            .expect("the close ends once the bytes are spent")
            .unwrap();
    }

    #[tokio::test]
    async fn a_skipped_linger_closes_after_the_fin() {
        // A client that neither sends nor closes: only the skip ends the close early.
        let (mut server, mut client) = pair(Linger::ADMIN).await;
        server.linger_skip().skip();
        tokio::time::timeout(Duration::from_secs(1), server.shutdown())
            .await
            .expect("no linger")
            .unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn the_time_bound_ends_the_linger() {
        let linger = Linger {
            time: Duration::from_millis(200),
            bytes: u64::MAX,
        };
        // A client that neither sends nor closes.
        let (mut server, _client) = pair(linger).await;
        let start = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(30), server.shutdown())
            .await
            .expect("the close ends once the time is spent")
            .unwrap();
        assert!(start.elapsed() >= linger.time, "{:?}", start.elapsed());
    }
}

//! A UDP socket wrapper with a kill switch, so that a test can simulate real
//! network loss: once killed, nothing leaves the socket any more (not even
//! CONNECTION_CLOSE or stateless resets), exactly as if the network vanished.

use std::fmt;
use std::io;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

pub(crate) struct KillSwitchSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    dead: AtomicBool,
}

impl KillSwitchSocket {
    /// Binds a fresh UDP socket on the wildcard address of `family_of`'s family.
    pub(crate) fn bind(family_of: SocketAddr) -> io::Result<Arc<Self>> {
        let bind: SocketAddr = if family_of.is_ipv6() {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let std_sock = std::net::UdpSocket::bind(bind)?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| io::Error::other("no async runtime (call from inside tokio)"))?;
        Ok(Arc::new(Self {
            inner: runtime.wrap_udp_socket(std_sock)?,
            dead: AtomicBool::new(false),
        }))
    }

    /// From now on every outgoing datagram is silently dropped.
    pub(crate) fn kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
    }
}

impl fmt::Debug for KillSwitchSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KillSwitchSocket")
            .field("dead", &self.dead.load(Ordering::Relaxed))
            .finish()
    }
}

impl AsyncUdpSocket for KillSwitchSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        if self.dead.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

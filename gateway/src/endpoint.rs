//! The UDP socket and the QUIC endpoint: buffer sizing and transport limits.

use std::net::UdpSocket;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tracing::{info, warn};

use crate::config::GatewayConfig;

/// Socket buffer sizes the kernel actually granted (it caps requests at
/// `net.core.rmem_max` / `wmem_max`; Linux reports double the usable size).
#[derive(Debug, Clone, Copy)]
pub struct SocketBuffers {
    pub recv_bytes: usize,
    pub send_bytes: usize,
}

/// Binds the UDP socket with the configured buffer sizes.
pub fn bind_udp(cfg: &GatewayConfig) -> std::io::Result<(UdpSocket, SocketBuffers)> {
    let addr = cfg.listen;
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Accept IPv4-mapped traffic too when bound to [::].
        let _ = socket.set_only_v6(false);
    }
    let t = &cfg.transport;
    if let Err(e) = socket.set_recv_buffer_size(t.udp_recv_buffer_bytes) {
        warn!(error = %e, "could not set UDP receive buffer size");
    }
    if let Err(e) = socket.set_send_buffer_size(t.udp_send_buffer_bytes) {
        warn!(error = %e, "could not set UDP send buffer size");
    }
    socket.bind(&addr.into())?;
    let buffers = SocketBuffers {
        recv_bytes: socket.recv_buffer_size()?,
        send_bytes: socket.send_buffer_size()?,
    };
    // Linux doubles the requested value for bookkeeping; compare against that.
    if buffers.recv_bytes < t.udp_recv_buffer_bytes {
        warn!(
            requested = t.udp_recv_buffer_bytes,
            granted = buffers.recv_bytes,
            "UDP receive buffer smaller than configured; raise net.core.rmem_max or login bursts will drop packets"
        );
    }
    info!(
        recv = buffers.recv_bytes,
        send = buffers.send_bytes,
        "UDP socket buffers"
    );
    Ok((socket.into(), buffers))
}

/// The QUIC transport parameters of every session.
pub fn transport_config(cfg: &GatewayConfig) -> quinn::TransportConfig {
    let t = &cfg.transport;
    let mut tc = quinn::TransportConfig::default();
    // The control stream plus the channels; no unidirectional streams in outpost/1.
    tc.max_concurrent_bidi_streams((1 + cfg.limits.max_channels).into());
    tc.max_concurrent_uni_streams(0u32.into());
    tc.stream_receive_window(t.stream_receive_window.into());
    tc.receive_window(t.receive_window.into());
    tc.send_window(t.send_window);
    tc.datagram_receive_buffer_size(None);
    let idle = Duration::from_millis(t.max_idle_timeout_ms);
    tc.max_idle_timeout(Some(idle.try_into().expect("idle timeout validated at startup")));
    if !t.mtu_discovery {
        tc.mtu_discovery_config(None);
    }
    tc.enable_segmentation_offload(t.segmentation_offload);
    tc.max_issued_cids(t.issued_connection_ids.into());
    tc.min_probe_timeout(Duration::from_millis(t.min_probe_timeout_ms));
    tc
}

/// The key QUIC stateless-reset tokens are derived from, kept in
/// `data_dir/quic_reset_key` so it survives restarts. After a crash or a restart,
/// the new process answers packets of the old process's connections with a
/// stateless reset the clients recognise, so they reconnect at once instead of
/// waiting for their idle timeout (quinn's default is a fresh random key per
/// process, which clients of the old process cannot verify).
pub fn reset_key(data_dir: &Path) -> std::io::Result<ring::hmac::Key> {
    let path = data_dir.join("quic_reset_key");
    let secret = match std::fs::read(&path) {
        Ok(bytes) if bytes.len() == 32 => bytes,
        _ => {
            std::fs::create_dir_all(data_dir)?;
            let mut bytes = vec![0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
                .map_err(|_| std::io::Error::other("no system randomness"))?;
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, &bytes)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
            }
            std::fs::rename(&tmp, &path)?;
            bytes
        }
    };
    Ok(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret))
}

/// The QUIC side of the TLS configuration `tls`, as every session uses it (at
/// startup and after a TLS reload).
///
/// Each connection drops its rustls server connection once the handshake is
/// complete (`set_release_after_handshake`, from the vendored quinn-proto's
/// patch, third_party/README.md): ≈ 3.5 KiB per idle session. The gateway loses
/// nothing by it: it sends no session tickets (`ServerIdentity::rustls_config`),
/// uses no TLS exporter, and reads nothing of the TLS session after the
/// handshake that quinn does not keep.
pub fn quic_crypto(
    tls: Arc<rustls::ServerConfig>,
) -> Result<quinn::crypto::rustls::QuicServerConfig, quinn::crypto::rustls::NoInitialCipherSuite> {
    let mut crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    crypto.set_release_after_handshake(true);
    Ok(crypto)
}

/// The QUIC server config: `tls` plus the session transport parameters and the
/// incoming-connection bound. A TLS reload clones it and swaps only `crypto`, so
/// everything else (and the retry-token key) stays as it was.
pub fn server_config(
    cfg: &GatewayConfig,
    tls: Arc<rustls::ServerConfig>,
) -> std::io::Result<quinn::ServerConfig> {
    let crypto =
        quic_crypto(tls).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport_config(cfg)));
    // A client may not keep more than this many Initial packets waiting for us.
    server.max_incoming(
        cfg.limits
            .max_sessions
            .saturating_add(cfg.admission.retry_above_handshakes)
            .max(1024),
    );
    Ok(server)
}

/// Builds the QUIC endpoint on `socket`, serving `server` (see [`server_config`]).
pub fn endpoint(
    cfg: &GatewayConfig,
    server: quinn::ServerConfig,
    socket: UdpSocket,
) -> std::io::Result<quinn::Endpoint> {
    quinn::Endpoint::new(
        quinn::EndpointConfig::new(Arc::new(reset_key(&cfg.data_dir)?)),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

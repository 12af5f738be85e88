//! TLS and QUIC client configuration: rustls 0.23 with the ring provider,
//! TLS 1.3 only, ALPN `outpost/1`, trusting exactly the configured CAs.

use std::sync::Arc;
use std::time::Duration;

use outpost_schema::ALPN;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::config::Trust;
use crate::error::ClientError;

/// QUIC idle timeout the client proposes; the effective value is the smaller
/// of both peers' proposals (the gateway announces 30 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds the quinn client configuration for a trust setting.
pub(crate) fn quinn_client_config(
    trust: &Trust,
    mtu_discovery: bool,
) -> Result<quinn::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(trust.pem()) {
        let cert = cert.map_err(|e| ClientError::Config(format!("bad CA PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ClientError::Config(format!("unusable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ClientError::Config("the CA PEM holds no certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Config(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| ClientError::Config(format!("QUIC TLS setup: {e}")))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(Arc::new(quic_transport_config(mtu_discovery)));
    Ok(cfg)
}

/// The QUIC transport settings the SDK connects with. Public so that load
/// generators speaking the protocol with raw quinn (the gateway bench) put the
/// same datagrams on the wire as a game client does.
///
/// `mtu_discovery`: see [`crate::ClientConfig::mtu_discovery`].
pub fn quic_transport_config(mtu_discovery: bool) -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    // The gateway never opens streams towards the client.
    transport
        .max_concurrent_bidi_streams(0u32.into())
        .max_concurrent_uni_streams(0u32.into())
        .max_idle_timeout(Some(
            IDLE_TIMEOUT.try_into().expect("30 s is a valid idle timeout"),
        ));
    if !mtu_discovery {
        transport.mtu_discovery_config(None);
    }
    transport
}

/// Whether the server selected our ALPN (PROTOCOL.md 1: a client MUST refuse
/// a server that did not).
pub(crate) fn alpn_ok(conn: &quinn::Connection) -> bool {
    conn.handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .is_some_and(|p| p == ALPN)
}

//! TLS and QUIC client configuration: rustls 0.23 with the ring provider,
//! TLS 1.3 only, ALPN `outpost/1`, trusting exactly the configured CAs.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use outpost_schema::ALPN;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::config::Trust;
use crate::error::ClientError;

/// QUIC idle timeout the client proposes; the effective value is the smaller
/// of both peers' proposals (the gateway announces 30 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The least time a client waits for an acknowledgement before it probes the
/// gateway (QUIC's probe timeout, PTO, before the gateway's 25 ms ack delay
/// and the backoff), as the gateway's `transport.min_probe_timeout_ms`
/// (default the same 200 ms) does towards its clients: without it a client a
/// few milliseconds from its gateway probes after ≈ 30 ms, so a pause of the
/// gateway makes all its clients probe at once while it is behind
/// (docs/PERFORMANCE.md, "Session 25"). Where `smoothed_rtt + 4 × rttvar` is
/// under 200 ms (most paths), a lost last packet (nothing sent after it to
/// reveal the loss) is resent after ≈ 225 ms instead of the path's own PTO
/// (≈ 95 ms at a 50 ms round trip); losses followed by later packets are
/// still detected at once.
pub const MIN_PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// Most distinct trust settings whose QUIC client configuration the process
/// keeps ([`quinn_client_config`]); a game uses one.
const SHARED_ENTRIES: usize = 8;

/// The process-wide QUIC client configurations, by CA PEM (see [`Configs`]).
/// Everything in them is shared by every client that trusts the same CAs:
/// the parsed root store, the certificate verifier, the crypto provider, the
/// transport settings and rustls's session store. That store
/// holds only the key-exchange group a gateway chose (which saves a
/// HelloRetryRequest on the next handshake): a client's connection drops its
/// TLS state once the handshake is complete, so the tickets a server sends
/// after it are never stored, and no client can resume another's session.
/// Until session 20 each client had its own copy of rustls's configuration
/// and its own store (≈ 0.7 KB per client; the load simulator holds
/// thousands, issue 21).
static SHARED: Mutex<Vec<(Vec<u8>, Configs)>> = Mutex::new(Vec::new());

/// One trust setting's quinn client configurations, indexed by `mtu_discovery`.
type Configs = Arc<[quinn::ClientConfig; 2]>;

/// Server names whose key-exchange hint the shared session store keeps: a
/// client talks to one region's gateways, which share one certificate name.
const SHARED_SESSION_NAMES: usize = 16;

/// The shared QUIC transport settings, without and with MTU discovery.
static TRANSPORT: OnceLock<[Arc<quinn::TransportConfig>; 2]> = OnceLock::new();

/// The quinn client configuration for a trust setting: built on the first
/// use of `trust` in this process, shared afterwards (see [`SHARED`]).
pub(crate) fn quinn_client_config(
    trust: &Trust,
    mtu_discovery: bool,
) -> Result<quinn::ClientConfig, ClientError> {
    Ok(shared(trust.pem())?[usize::from(mtu_discovery)].clone())
}

/// The shared configurations for CAs `pem` (built on first use).
fn shared(pem: &[u8]) -> Result<Configs, ClientError> {
    let mut cache = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, shared)) = cache.iter().find(|(k, _)| k == pem) {
        return Ok(shared.clone());
    }
    let mut quic = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(build_tls(pem)?))
        .map_err(|e| ClientError::Config(format!("QUIC TLS setup: {e}")))?;
    // Drop rustls's connection once the handshake is complete (the vendored
    // quinn-proto's patch, third_party/README.md): ≈ 4 KiB per client. It loses
    // the tickets a server sends after the handshake, and the gateway sends none
    // (`send_tls13_tickets = 0`, gateway/src/tls); the key-exchange hint that
    // saves a round trip on reconnect is stored during the handshake, as before.
    quic.set_release_after_handshake(true);
    let quic = Arc::new(quic);
    let transport = TRANSPORT.get_or_init(|| [false, true].map(|mtu| Arc::new(quic_transport_config(mtu))));
    let shared = Arc::new([0, 1].map(|mtu| {
        let mut cfg = quinn::ClientConfig::new(quic.clone());
        cfg.transport_config(transport[mtu].clone());
        cfg
    }));
    if cache.len() >= SHARED_ENTRIES {
        cache.remove(0);
    }
    cache.push((pem.to_vec(), shared.clone()));
    Ok(shared)
}

/// Parses `pem` into a root store and builds the TLS 1.3 client configuration.
fn build_tls(pem: &[u8]) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
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
    // Shared by every client of the process that trusts these CAs, and it
    // holds key-exchange hints only (see `SHARED`); rustls allocates an entry
    // per server name as it is used.
    tls.resumption = rustls::client::Resumption::in_memory_sessions(SHARED_SESSION_NAMES);
    Ok(tls)
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
        ))
        .min_probe_timeout(MIN_PROBE_TIMEOUT);
    if !mtu_discovery {
        transport.mtu_discovery_config(None);
    }
    transport
}

/// The QUIC endpoint settings of a client's own endpoint (one UDP socket per
/// client, the SDK's default): **zero-length connection ids** for the packets
/// the gateway sends to the client. Public, like [`quic_transport_config`], so
/// that load generators put the same datagrams on the wire as a game client.
///
/// Why: with connection ids of its own, each side of a QUIC connection hands
/// the other `active_connection_id_limit − 1` spare ids right after the
/// handshake (quinn: 5 − 1 = 4 `NEW_CONNECTION_ID` frames each way, plus a
/// `RETIRE_CONNECTION_ID`); a client with zero-length ids issues none and
/// announces the limit's default of 2, so the gateway issues one. That is
/// seven frames less per login for the gateway to send, receive, encrypt and
/// acknowledge (measured in the gateway bench, docs/PERFORMANCE.md).
///
/// Trade-offs: quinn tells a zero-length-id client's connections apart by the
/// server's address alone, so an endpoint built with this config must have at
/// most one connection (live or draining) per server address. The SDK's own
/// endpoint serves one dial, whose gateways it checks are distinct
/// (`endpoint_config_for`); a shared endpoint (`ClientConfig::endpoint`) is
/// the caller's and keeps its own settings. A client's own address changing
/// (NAT rebinding, Wi-Fi to cellular) still works: the gateway, whose ids are
/// not zero-length, recognises the connection on the new path.
pub fn quic_endpoint_config() -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::default();
    config.cid_generator(|| Box::new(ZeroLengthCids));
    config
}

/// The endpoint settings for a client's own endpoint dialling `gateways`:
/// [`quic_endpoint_config`] when every address is distinct, quinn's defaults
/// otherwise (a list naming one gateway twice would give one endpoint two
/// connections to the same address, which zero-length ids cannot tell apart).
pub(crate) fn endpoint_config_for(gateways: &[std::net::SocketAddr]) -> quinn::EndpointConfig {
    let distinct = gateways
        .iter()
        .enumerate()
        .all(|(i, a)| !gateways[..i].contains(a));
    if distinct {
        quic_endpoint_config()
    } else {
        quinn::EndpointConfig::default()
    }
}

/// Connection ids of length zero (see [`quic_endpoint_config`]).
struct ZeroLengthCids;

impl quinn::ConnectionIdGenerator for ZeroLengthCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        quinn::ConnectionId::new(&[])
    }

    fn cid_len(&self) -> usize {
        0
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// Whether the server selected our ALPN (PROTOCOL.md 1: a client MUST refuse
/// a server that did not).
pub(crate) fn alpn_ok(conn: &quinn::Connection) -> bool {
    conn.handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .is_some_and(|p| p == ALPN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> Vec<u8> {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a test CA");
        ck.cert.pem().into_bytes()
    }

    #[test]
    fn clients_trusting_the_same_cas_share_one_tls_config() {
        let pem = ca_pem();
        let a = shared(&pem).expect("valid PEM");
        let b = shared(&pem).expect("valid PEM");
        assert!(Arc::ptr_eq(&a, &b), "the same CAs must not be parsed twice");
        let other = shared(&ca_pem()).expect("valid PEM");
        assert!(!Arc::ptr_eq(&a, &other), "other CAs get their own config");
        // Both transport settings build.
        let trust = Trust::DevCa { pem };
        quinn_client_config(&trust, false).expect("client config");
        quinn_client_config(&trust, true).expect("client config with MTU discovery");
    }

    /// A client's connection drops rustls's connection once the handshake is
    /// complete (`quinn_client_config`): its TLS exporter is gone, the
    /// server's (not released) still works, and the ALPN check that runs
    /// after the handshake still sees the gateway's choice.
    #[tokio::test]
    async fn a_client_connection_releases_tls_after_the_handshake() {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a test CA");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        let mut tls =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("TLS 1.3")
                .with_no_client_auth()
                .with_single_cert(vec![ck.cert.der().clone()], key)
                .expect("server certificate");
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).expect("QUIC TLS");
        let server = quinn::Endpoint::server(
            quinn::ServerConfig::with_crypto(Arc::new(crypto)),
            "127.0.0.1:0".parse().expect("address"),
        )
        .expect("server endpoint");
        let addr = server.local_addr().expect("server address");
        let trust = Trust::DevCa {
            pem: ck.cert.pem().into_bytes(),
        };
        let client =
            quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")).expect("client endpoint");
        let connecting = client
            .connect_with(
                quinn_client_config(&trust, false).expect("client config"),
                addr,
                "localhost",
            )
            .expect("connect");
        let (client_conn, server_conn) = tokio::join!(connecting, async {
            server.accept().await.expect("incoming").await
        });
        let (client_conn, server_conn) = (
            client_conn.expect("client handshake"),
            server_conn.expect("server handshake"),
        );

        let mut key = [0u8; 32];
        server_conn
            .export_keying_material(&mut key, b"outpost test", b"")
            .expect("the server keeps its TLS session");
        assert!(
            client_conn
                .export_keying_material(&mut key, b"outpost test", b"")
                .is_err(),
            "the client's connection must have released its TLS session"
        );
        assert!(alpn_ok(&client_conn), "the negotiated ALPN is kept");
    }

    #[test]
    fn a_pem_without_certificates_is_refused() {
        let cases: [&[u8]; 2] = [b"", b"not a certificate"];
        for pem in cases {
            let trust = Trust::DevCa { pem: pem.to_vec() };
            let err = quinn_client_config(&trust, false).expect_err("no CA in it");
            assert!(matches!(err, ClientError::Config(_)), "{err:?}");
        }
    }
}

use std::{any::Any, io, str, sync::Arc};

#[cfg(all(feature = "aws-lc-rs", not(feature = "ring")))]
use aws_lc_rs::aead;
use bytes::BytesMut;
#[cfg(feature = "ring")]
use ring::aead;
pub use rustls::Error;
#[cfg(feature = "__rustls-post-quantum-test")]
use rustls::NamedGroup;
use rustls::{
    self, CipherSuite,
    client::danger::ServerCertVerifier,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName},
    quic::{Connection, HeaderProtectionKey, KeyChange, PacketKey, Secrets, Suite, Version},
};
#[cfg(feature = "platform-verifier")]
use rustls_platform_verifier::BuilderVerifierExt;

use crate::{
    ConnectError, ConnectionId, Side, TransportError, TransportErrorCode,
    crypto::{
        self, CryptoError, ExportKeyingMaterialError, HeaderKey, KeyPair, Keys, UnsupportedVersion,
    },
    transport_parameters::TransportParameters,
};

impl From<Side> for rustls::Side {
    fn from(s: Side) -> Self {
        match s {
            Side::Client => Self::Client,
            Side::Server => Self::Server,
        }
    }
}

/// A rustls TLS session
pub struct TlsSession {
    version: Version,
    got_handshake_data: bool,
    next_secrets: Option<Secrets>,
    inner: Tls,
    suite: Suite,
    /// PATCH(outpost): see [`QuicServerConfig::set_release_after_handshake`]
    release_after_handshake: bool,
}

/// PATCH(outpost): the rustls connection while it is needed, then what is kept of it.
enum Tls {
    /// Boxed, so that releasing it frees its ≈ 1.1 KiB (the session itself is one allocation).
    Live(Box<Connection>),
    /// The handshake is complete and rustls had nothing more to send
    /// ([`QuicServerConfig::set_release_after_handshake`],
    /// [`QuicClientConfig::set_release_after_handshake`]).
    Released(Box<Released>),
}

/// PATCH(outpost): what a released session still answers.
struct Released {
    side: Side,
    alpn: Option<Vec<u8>>,
    /// The server name the client asked for (servers only)
    server_name: Option<String>,
    peer_certificates: Option<Vec<CertificateDer<'static>>>,
    /// The server's transport parameters, as sent (clients only: quinn reads them right after the
    /// handshake completes, which is after the release)
    transport_parameters: Option<Vec<u8>>,
    /// Clients only
    early_data_accepted: Option<bool>,
    #[cfg(feature = "__rustls-post-quantum-test")]
    negotiated_key_exchange_group: NamedGroup,
}

impl TlsSession {
    fn side(&self) -> Side {
        match &self.inner {
            Tls::Live(conn) => match **conn {
                Connection::Client(_) => Side::Client,
                Connection::Server(_) => Side::Server,
            },
            Tls::Released(r) => r.side,
        }
    }

    /// PATCH(outpost): drops the rustls connection once the handshake is complete and rustls has
    /// nothing more to write, if this session was configured to. TLS over QUIC has no work after
    /// that but tickets: QUIC has no TLS KeyUpdate (key updates use `next_secrets`, kept here), a
    /// client sends no TLS message after its Finished, and a server writes its tickets, if any,
    /// in the call that saw the client's Finished. A released client ignores tickets.
    fn release_if_done(&mut self) {
        let Tls::Live(conn) = &self.inner else {
            return;
        };
        if !self.release_after_handshake || conn.is_handshaking() {
            return;
        }
        let (side, server_name, transport_parameters, early_data_accepted) = match &**conn {
            Connection::Server(server) => (
                Side::Server,
                server.server_name().map(|x| x.into()),
                None,
                None,
            ),
            Connection::Client(client) => (
                Side::Client,
                None,
                conn.quic_transport_parameters().map(|x| x.to_vec()),
                Some(client.is_early_data_accepted()),
            ),
        };
        let released = Released {
            side,
            alpn: conn.alpn_protocol().map(|x| x.into()),
            server_name,
            peer_certificates: conn
                .peer_certificates()
                .map(|v| v.iter().map(|c| c.clone().into_owned()).collect()),
            transport_parameters,
            early_data_accepted,
            #[cfg(feature = "__rustls-post-quantum-test")]
            negotiated_key_exchange_group: conn
                .negotiated_key_exchange_group()
                .expect("key exchange group is negotiated")
                .name(),
        };
        self.inner = Tls::Released(Box::new(released));
    }
}

impl crypto::Session for TlsSession {
    fn initial_keys(&self, dst_cid: &ConnectionId, side: Side) -> Keys {
        initial_keys(self.version, *dst_cid, side, &self.suite)
    }

    fn handshake_data(&self) -> Option<Box<dyn Any>> {
        if !self.got_handshake_data {
            return None;
        }
        let conn = match &self.inner {
            Tls::Live(conn) => conn,
            Tls::Released(r) => {
                return Some(Box::new(HandshakeData {
                    protocol: r.alpn.clone(),
                    server_name: r.server_name.clone(),
                    #[cfg(feature = "__rustls-post-quantum-test")]
                    negotiated_key_exchange_group: r.negotiated_key_exchange_group,
                }));
            }
        };
        Some(Box::new(HandshakeData {
            protocol: conn.alpn_protocol().map(|x| x.into()),
            server_name: match **conn {
                Connection::Client(_) => None,
                Connection::Server(ref session) => session.server_name().map(|x| x.into()),
            },
            #[cfg(feature = "__rustls-post-quantum-test")]
            negotiated_key_exchange_group: conn
                .negotiated_key_exchange_group()
                .expect("key exchange group is negotiated")
                .name(),
        }))
    }

    /// For the rustls `TlsSession`, the `Any` type is `Vec<rustls::pki_types::CertificateDer>`
    fn peer_identity(&self) -> Option<Box<dyn Any>> {
        let conn = match &self.inner {
            Tls::Live(conn) => conn,
            Tls::Released(r) => {
                return r
                    .peer_certificates
                    .clone()
                    .map(|v| -> Box<dyn Any> { Box::new(v) });
            }
        };
        conn.peer_certificates().map(|v| -> Box<dyn Any> {
            Box::new(
                v.iter()
                    .map(|v| v.clone().into_owned())
                    .collect::<Vec<CertificateDer<'static>>>(),
            )
        })
    }

    fn early_crypto(&self) -> Option<(Box<dyn HeaderKey>, Box<dyn crypto::PacketKey>)> {
        let Tls::Live(conn) = &self.inner else {
            return None;
        };
        let keys = conn.zero_rtt_keys()?;
        Some((Box::new(keys.header), Box::new(keys.packet)))
    }

    fn early_data_accepted(&self) -> Option<bool> {
        match &self.inner {
            Tls::Live(conn) => match **conn {
                Connection::Client(ref session) => Some(session.is_early_data_accepted()),
                _ => None,
            },
            Tls::Released(r) => r.early_data_accepted,
        }
    }

    fn is_handshaking(&self) -> bool {
        match &self.inner {
            Tls::Live(conn) => conn.is_handshaking(),
            Tls::Released(_) => false,
        }
    }

    fn read_handshake(&mut self, buf: &[u8]) -> Result<bool, TransportError> {
        let conn = match &mut self.inner {
            Tls::Live(conn) => conn,
            Tls::Released(_) if buf.is_empty() => return Ok(false),
            // A server may send tickets after the handshake; a released client does not use them.
            Tls::Released(r) if r.side == Side::Client => return Ok(false),
            // A client sends no TLS message after its Finished; rustls answers one with this
            // alert.
            Tls::Released(_) => {
                return Err(TransportError {
                    code: TransportErrorCode::crypto(
                        rustls::AlertDescription::UnexpectedMessage.into(),
                    ),
                    frame: None,
                    reason: "TLS handshake data after the handshake".into(),
                });
            }
        };
        conn.read_hs(buf).map_err(|e| {
            if let Some(alert) = conn.alert() {
                TransportError {
                    code: TransportErrorCode::crypto(alert.into()),
                    frame: None,
                    reason: e.to_string(),
                }
            } else {
                TransportError::PROTOCOL_VIOLATION(format!("TLS error: {e}"))
            }
        })?;
        if !self.got_handshake_data {
            // Hack around the lack of an explicit signal from rustls to reflect ClientHello being
            // ready on incoming connections, or ALPN negotiation completing on outgoing
            // connections.
            let have_server_name = match **conn {
                Connection::Client(_) => false,
                Connection::Server(ref session) => session.server_name().is_some(),
            };
            if conn.alpn_protocol().is_some() || have_server_name || !conn.is_handshaking() {
                self.got_handshake_data = true;
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn transport_parameters(&self) -> Result<Option<TransportParameters>, TransportError> {
        let buf = match &self.inner {
            Tls::Live(conn) => conn.quic_transport_parameters(),
            // A server reads them from the ClientHello, long before its session can be released,
            // so a released server session does not keep them.
            Tls::Released(r) => r.transport_parameters.as_deref(),
        };
        match buf {
            None => Ok(None),
            Some(buf) => match TransportParameters::read(self.side(), &mut io::Cursor::new(buf)) {
                Ok(params) => Ok(Some(params)),
                Err(e) => Err(e.into()),
            },
        }
    }

    fn write_handshake(&mut self, buf: &mut Vec<u8>) -> Option<Keys> {
        let Tls::Live(conn) = &mut self.inner else {
            return None;
        };
        let written = buf.len();
        let Some(change) = conn.write_hs(buf) else {
            if buf.len() == written {
                self.release_if_done();
            }
            return None;
        };
        let keys = match change {
            KeyChange::Handshake { keys } => keys,
            KeyChange::OneRtt { keys, next } => {
                self.next_secrets = Some(next);
                keys
            }
        };

        Some(Keys {
            header: KeyPair {
                local: Box::new(keys.local.header),
                remote: Box::new(keys.remote.header),
            },
            packet: KeyPair {
                local: Box::new(keys.local.packet),
                remote: Box::new(keys.remote.packet),
            },
        })
    }

    fn next_1rtt_keys(&mut self) -> Option<KeyPair<Box<dyn crypto::PacketKey>>> {
        let secrets = self.next_secrets.as_mut()?;
        let keys = secrets.next_packet_keys();
        Some(KeyPair {
            local: Box::new(keys.local),
            remote: Box::new(keys.remote),
        })
    }

    fn is_valid_retry(&self, orig_dst_cid: &ConnectionId, header: &[u8], payload: &[u8]) -> bool {
        let tag_start = match payload.len().checked_sub(16) {
            Some(x) => x,
            None => return false,
        };

        let mut pseudo_packet =
            Vec::with_capacity(header.len() + payload.len() + orig_dst_cid.len() + 1);
        pseudo_packet.push(orig_dst_cid.len() as u8);
        pseudo_packet.extend_from_slice(orig_dst_cid);
        pseudo_packet.extend_from_slice(header);
        let tag_start = tag_start + pseudo_packet.len();
        pseudo_packet.extend_from_slice(payload);

        let (nonce, key) = match self.version {
            Version::V1 => (RETRY_INTEGRITY_NONCE_V1, RETRY_INTEGRITY_KEY_V1),
            Version::V1Draft => (RETRY_INTEGRITY_NONCE_DRAFT, RETRY_INTEGRITY_KEY_DRAFT),
            _ => unreachable!(),
        };

        let nonce = aead::Nonce::assume_unique_for_key(nonce);
        let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &key).unwrap());

        let (aad, tag) = pseudo_packet.split_at_mut(tag_start);
        key.open_in_place(nonce, aead::Aad::from(aad), tag).is_ok()
    }

    fn export_keying_material(
        &self,
        output: &mut [u8],
        label: &[u8],
        context: &[u8],
    ) -> Result<(), ExportKeyingMaterialError> {
        let Tls::Live(conn) = &self.inner else {
            // PATCH(outpost): the exporter secret went with the released rustls connection.
            return Err(ExportKeyingMaterialError);
        };
        conn.export_keying_material(output, label, Some(context))
            .map_err(|_| ExportKeyingMaterialError)?;
        Ok(())
    }
}

const RETRY_INTEGRITY_KEY_DRAFT: [u8; 16] = [
    0xcc, 0xce, 0x18, 0x7e, 0xd0, 0x9a, 0x09, 0xd0, 0x57, 0x28, 0x15, 0x5a, 0x6c, 0xb9, 0x6b, 0xe1,
];
const RETRY_INTEGRITY_NONCE_DRAFT: [u8; 12] = [
    0xe5, 0x49, 0x30, 0xf9, 0x7f, 0x21, 0x36, 0xf0, 0x53, 0x0a, 0x8c, 0x1c,
];

const RETRY_INTEGRITY_KEY_V1: [u8; 16] = [
    0xbe, 0x0c, 0x69, 0x0b, 0x9f, 0x66, 0x57, 0x5a, 0x1d, 0x76, 0x6b, 0x54, 0xe3, 0x68, 0xc8, 0x4e,
];
const RETRY_INTEGRITY_NONCE_V1: [u8; 12] = [
    0x46, 0x15, 0x99, 0xd3, 0x5d, 0x63, 0x2b, 0xf2, 0x23, 0x98, 0x25, 0xbb,
];

impl crypto::HeaderKey for Box<dyn HeaderProtectionKey> {
    fn decrypt(&self, pn_offset: usize, packet: &mut [u8]) {
        let (header, sample) = packet.split_at_mut(pn_offset + 4);
        let (first, rest) = header.split_at_mut(1);
        let pn_end = Ord::min(pn_offset + 3, rest.len());
        self.decrypt_in_place(
            &sample[..self.sample_size()],
            &mut first[0],
            &mut rest[pn_offset - 1..pn_end],
        )
        .unwrap();
    }

    fn encrypt(&self, pn_offset: usize, packet: &mut [u8]) {
        let (header, sample) = packet.split_at_mut(pn_offset + 4);
        let (first, rest) = header.split_at_mut(1);
        let pn_end = Ord::min(pn_offset + 3, rest.len());
        self.encrypt_in_place(
            &sample[..self.sample_size()],
            &mut first[0],
            &mut rest[pn_offset - 1..pn_end],
        )
        .unwrap();
    }

    fn sample_size(&self) -> usize {
        self.sample_len()
    }
}

/// Authentication data for (rustls) TLS session
pub struct HandshakeData {
    /// The negotiated application protocol, if ALPN is in use
    ///
    /// Guaranteed to be set if a nonempty list of protocols was specified for this connection.
    pub protocol: Option<Vec<u8>>,
    /// The server name specified by the client, if any
    ///
    /// Always `None` for outgoing connections
    pub server_name: Option<String>,
    /// The key exchange group negotiated with the peer
    #[cfg(feature = "__rustls-post-quantum-test")]
    pub negotiated_key_exchange_group: NamedGroup,
}

/// A QUIC-compatible TLS client configuration
///
/// Quinn implicitly constructs a `QuicClientConfig` with reasonable defaults within
/// [`ClientConfig::with_root_certificates()`][root_certs] and [`ClientConfig::with_platform_verifier()`][platform].
/// Alternatively, `QuicClientConfig`'s [`TryFrom`] implementation can be used to wrap around a
/// custom [`rustls::ClientConfig`], in which case care should be taken around certain points:
///
/// - If `enable_early_data` is not set to true, then sending 0-RTT data will not be possible on
///   outgoing connections.
/// - The [`rustls::ClientConfig`] must have TLS 1.3 support enabled for conversion to succeed.
///
/// The object in the `resumption` field of the inner [`rustls::ClientConfig`] determines whether
/// calling `into_0rtt` on outgoing connections returns `Ok` or `Err`. It typically allows
/// `into_0rtt` to proceed if it recognizes the server name, and defaults to an in-memory cache of
/// 256 server names.
///
/// [root_certs]: crate::config::ClientConfig::with_root_certificates()
/// [platform]: crate::config::ClientConfig::with_platform_verifier()
pub struct QuicClientConfig {
    pub(crate) inner: Arc<rustls::ClientConfig>,
    initial: Suite,
    /// PATCH(outpost): see [`Self::set_release_after_handshake`]
    release_after_handshake: bool,
}

impl QuicClientConfig {
    /// PATCH(outpost): whether each connection drops its rustls client connection once the
    /// handshake is complete and rustls has nothing more to send (default: `false`, as upstream).
    ///
    /// That frees ≈ 4 KiB per connection (the rustls connection, its handshake buffers and
    /// state) for the connection's life. Everything QUIC needs later is kept: the secrets of later
    /// key updates, the server's transport parameters, the negotiated ALPN protocol
    /// (`handshake_data`) and the server's certificates (`peer_identity`). What is lost:
    /// `export_keying_material` fails afterwards, and session tickets the server sends after the
    /// handshake (which is when TLS 1.3 servers send them) are ignored, so a later connection
    /// cannot resume from them. Set it where TLS session resumption is not used.
    pub fn set_release_after_handshake(&mut self, release: bool) {
        self.release_after_handshake = release;
    }

    #[cfg(feature = "platform-verifier")]
    pub(crate) fn with_platform_verifier() -> Result<Self, Error> {
        // Keep in sync with `inner()` below
        let mut inner = rustls::ClientConfig::builder_with_provider(configured_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap() // The default providers support TLS 1.3
            .with_platform_verifier()?
            .with_no_client_auth();

        inner.enable_early_data = true;
        Ok(Self {
            // We're confident that the *ring* default provider contains TLS13_AES_128_GCM_SHA256
            initial: initial_suite_from_provider(inner.crypto_provider())
                .expect("no initial cipher suite found"),
            inner: Arc::new(inner),
            release_after_handshake: false,
        })
    }

    /// Initialize a sane QUIC-compatible TLS client configuration
    ///
    /// QUIC requires that TLS 1.3 be enabled. Advanced users can use any [`rustls::ClientConfig`] that
    /// satisfies this requirement.
    pub(crate) fn new(verifier: Arc<dyn ServerCertVerifier>) -> Self {
        let inner = Self::inner(verifier);
        Self {
            // We're confident that the *ring* default provider contains TLS13_AES_128_GCM_SHA256
            initial: initial_suite_from_provider(inner.crypto_provider())
                .expect("no initial cipher suite found"),
            inner: Arc::new(inner),
            release_after_handshake: false,
        }
    }

    /// Initialize a QUIC-compatible TLS client configuration with a separate initial cipher suite
    ///
    /// This is useful if you want to avoid the initial cipher suite for traffic encryption.
    pub fn with_initial(
        inner: Arc<rustls::ClientConfig>,
        initial: Suite,
    ) -> Result<Self, NoInitialCipherSuite> {
        match initial.suite.common.suite {
            CipherSuite::TLS13_AES_128_GCM_SHA256 => Ok(Self {
                inner,
                initial,
                release_after_handshake: false,
            }),
            _ => Err(NoInitialCipherSuite { specific: true }),
        }
    }

    pub(crate) fn inner(verifier: Arc<dyn ServerCertVerifier>) -> rustls::ClientConfig {
        // Keep in sync with `with_platform_verifier()` above
        let mut config = rustls::ClientConfig::builder_with_provider(configured_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap() // The default providers support TLS 1.3
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();

        config.enable_early_data = true;
        config
    }
}

impl crypto::ClientConfig for QuicClientConfig {
    fn start_session(
        self: Arc<Self>,
        version: u32,
        server_name: &str,
        params: &TransportParameters,
    ) -> Result<Box<dyn crypto::Session>, ConnectError> {
        let version = interpret_version(version)?;
        Ok(Box::new(TlsSession {
            version,
            got_handshake_data: false,
            next_secrets: None,
            inner: Tls::Live(Box::new(rustls::quic::Connection::Client(
                rustls::quic::ClientConnection::new(
                    self.inner.clone(),
                    version,
                    ServerName::try_from(server_name)
                        .map_err(|_| ConnectError::InvalidServerName(server_name.into()))?
                        .to_owned(),
                    to_vec(params),
                )
                .unwrap(),
            ))),
            suite: self.initial,
            release_after_handshake: self.release_after_handshake,
        }))
    }
}

impl TryFrom<rustls::ClientConfig> for QuicClientConfig {
    type Error = NoInitialCipherSuite;

    fn try_from(inner: rustls::ClientConfig) -> Result<Self, Self::Error> {
        Arc::new(inner).try_into()
    }
}

impl TryFrom<Arc<rustls::ClientConfig>> for QuicClientConfig {
    type Error = NoInitialCipherSuite;

    fn try_from(inner: Arc<rustls::ClientConfig>) -> Result<Self, Self::Error> {
        Ok(Self {
            initial: initial_suite_from_provider(inner.crypto_provider())
                .ok_or(NoInitialCipherSuite { specific: false })?,
            inner,
            release_after_handshake: false,
        })
    }
}

/// The initial cipher suite (AES-128-GCM-SHA256) is not available
///
/// When the cipher suite is supplied `with_initial()`, it must be
/// [`CipherSuite::TLS13_AES_128_GCM_SHA256`]. When the cipher suite is derived from a config's
/// [`CryptoProvider`][provider], that provider must reference a cipher suite with the same ID.
///
/// [provider]: rustls::crypto::CryptoProvider
#[derive(Clone, Debug)]
pub struct NoInitialCipherSuite {
    /// Whether the initial cipher suite was supplied by the caller
    specific: bool,
}

impl std::fmt::Display for NoInitialCipherSuite {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self.specific {
            true => "invalid cipher suite specified",
            false => "no initial cipher suite found",
        })
    }
}

impl std::error::Error for NoInitialCipherSuite {}

/// A QUIC-compatible TLS server configuration
///
/// Quinn implicitly constructs a `QuicServerConfig` with reasonable defaults within
/// [`ServerConfig::with_single_cert()`][single]. Alternatively, `QuicServerConfig`'s [`TryFrom`]
/// implementation or `with_initial` method can be used to wrap around a custom
/// [`rustls::ServerConfig`], in which case care should be taken around certain points:
///
/// - If `max_early_data_size` is not set to `u32::MAX`, the server will not be able to accept
///   incoming 0-RTT data. QUIC prohibits `max_early_data_size` values other than 0 or `u32::MAX`.
/// - The `rustls::ServerConfig` must have TLS 1.3 support enabled for conversion to succeed.
///
/// [single]: crate::config::ServerConfig::with_single_cert()
pub struct QuicServerConfig {
    inner: Arc<rustls::ServerConfig>,
    initial: Suite,
    /// PATCH(outpost): see [`Self::set_release_after_handshake`]
    release_after_handshake: bool,
}

impl QuicServerConfig {
    /// PATCH(outpost): whether each connection drops its rustls server connection once the
    /// handshake is complete and rustls has nothing more to send (default: `false`, as upstream).
    ///
    /// That frees ≈ 3.5 KiB per connection (the rustls connection, its handshake buffers and
    /// state) for the connection's life. Everything QUIC needs later is kept: the secrets of later
    /// key updates, the negotiated ALPN protocol and server name (`handshake_data`) and the
    /// client's certificates (`peer_identity`). What is lost: `export_keying_material` fails
    /// afterwards, `crypto::Session::transport_parameters` answers `None` (quinn reads the
    /// client's from its ClientHello), and TLS handshake data a client sends after its Finished
    /// (which TLS over QUIC does not allow) closes the connection with the `unexpected_message`
    /// alert that rustls itself would have sent.
    pub fn set_release_after_handshake(&mut self, release: bool) {
        self.release_after_handshake = release;
    }

    pub(crate) fn new(
        cert_chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, rustls::Error> {
        let inner = Self::inner(cert_chain, key)?;
        Ok(Self {
            // We're confident that the *ring* default provider contains TLS13_AES_128_GCM_SHA256
            initial: initial_suite_from_provider(inner.crypto_provider())
                .expect("no initial cipher suite found"),
            inner: Arc::new(inner),
            release_after_handshake: false,
        })
    }

    /// Initialize a QUIC-compatible TLS client configuration with a separate initial cipher suite
    ///
    /// This is useful if you want to avoid the initial cipher suite for traffic encryption.
    pub fn with_initial(
        inner: Arc<rustls::ServerConfig>,
        initial: Suite,
    ) -> Result<Self, NoInitialCipherSuite> {
        match initial.suite.common.suite {
            CipherSuite::TLS13_AES_128_GCM_SHA256 => Ok(Self {
                inner,
                initial,
                release_after_handshake: false,
            }),
            _ => Err(NoInitialCipherSuite { specific: true }),
        }
    }

    /// Initialize a sane QUIC-compatible TLS server configuration
    ///
    /// QUIC requires that TLS 1.3 be enabled, and that the maximum early data size is either 0 or
    /// `u32::MAX`. Advanced users can use any [`rustls::ServerConfig`] that satisfies these
    /// requirements.
    pub(crate) fn inner(
        cert_chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<rustls::ServerConfig, rustls::Error> {
        let mut inner = rustls::ServerConfig::builder_with_provider(configured_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap() // The *ring* default provider supports TLS 1.3
            .with_no_client_auth()
            .with_single_cert(cert_chain, key)?;

        inner.max_early_data_size = u32::MAX;
        Ok(inner)
    }
}

impl TryFrom<rustls::ServerConfig> for QuicServerConfig {
    type Error = NoInitialCipherSuite;

    fn try_from(inner: rustls::ServerConfig) -> Result<Self, Self::Error> {
        Arc::new(inner).try_into()
    }
}

impl TryFrom<Arc<rustls::ServerConfig>> for QuicServerConfig {
    type Error = NoInitialCipherSuite;

    fn try_from(inner: Arc<rustls::ServerConfig>) -> Result<Self, Self::Error> {
        Ok(Self {
            initial: initial_suite_from_provider(inner.crypto_provider())
                .ok_or(NoInitialCipherSuite { specific: false })?,
            inner,
            release_after_handshake: false,
        })
    }
}

impl crypto::ServerConfig for QuicServerConfig {
    fn start_session(
        self: Arc<Self>,
        version: u32,
        params: &TransportParameters,
    ) -> Box<dyn crypto::Session> {
        // Safe: `start_session()` is never called if `initial_keys()` rejected `version`
        let version = interpret_version(version).unwrap();
        Box::new(TlsSession {
            version,
            got_handshake_data: false,
            next_secrets: None,
            inner: Tls::Live(Box::new(rustls::quic::Connection::Server(
                rustls::quic::ServerConnection::new(self.inner.clone(), version, to_vec(params))
                    .unwrap(),
            ))),
            suite: self.initial,
            release_after_handshake: self.release_after_handshake,
        })
    }

    fn initial_keys(
        &self,
        version: u32,
        dst_cid: &ConnectionId,
    ) -> Result<Keys, UnsupportedVersion> {
        let version = interpret_version(version)?;
        Ok(initial_keys(version, *dst_cid, Side::Server, &self.initial))
    }

    fn retry_tag(&self, version: u32, orig_dst_cid: &ConnectionId, packet: &[u8]) -> [u8; 16] {
        // Safe: `start_session()` is never called if `initial_keys()` rejected `version`
        let version = interpret_version(version).unwrap();
        let (nonce, key) = match version {
            Version::V1 => (RETRY_INTEGRITY_NONCE_V1, RETRY_INTEGRITY_KEY_V1),
            Version::V1Draft => (RETRY_INTEGRITY_NONCE_DRAFT, RETRY_INTEGRITY_KEY_DRAFT),
            _ => unreachable!(),
        };

        let mut pseudo_packet = Vec::with_capacity(packet.len() + orig_dst_cid.len() + 1);
        pseudo_packet.push(orig_dst_cid.len() as u8);
        pseudo_packet.extend_from_slice(orig_dst_cid);
        pseudo_packet.extend_from_slice(packet);

        let nonce = aead::Nonce::assume_unique_for_key(nonce);
        let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &key).unwrap());

        let tag = key
            .seal_in_place_separate_tag(nonce, aead::Aad::from(pseudo_packet), &mut [])
            .unwrap();
        let mut result = [0; 16];
        result.copy_from_slice(tag.as_ref());
        result
    }
}

pub(crate) fn initial_suite_from_provider(
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Option<Suite> {
    provider
        .cipher_suites
        .iter()
        .find_map(|cs| match (cs.suite(), cs.tls13()) {
            (rustls::CipherSuite::TLS13_AES_128_GCM_SHA256, Some(suite)) => {
                Some(suite.quic_suite())
            }
            _ => None,
        })
        .flatten()
}

pub(crate) fn configured_provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[cfg(all(feature = "rustls-aws-lc-rs", not(feature = "rustls-ring")))]
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(feature = "rustls-ring")]
    let provider = rustls::crypto::ring::default_provider();
    Arc::new(provider)
}

fn to_vec(params: &TransportParameters) -> Vec<u8> {
    let mut bytes = Vec::new();
    params.write(&mut bytes);
    bytes
}

pub(crate) fn initial_keys(
    version: Version,
    dst_cid: ConnectionId,
    side: Side,
    suite: &Suite,
) -> Keys {
    let keys = suite.keys(&dst_cid, side.into(), version);
    Keys {
        header: KeyPair {
            local: Box::new(keys.local.header),
            remote: Box::new(keys.remote.header),
        },
        packet: KeyPair {
            local: Box::new(keys.local.packet),
            remote: Box::new(keys.remote.packet),
        },
    }
}

impl crypto::PacketKey for Box<dyn PacketKey> {
    fn encrypt(&self, packet: u64, buf: &mut [u8], header_len: usize) {
        let (header, payload_tag) = buf.split_at_mut(header_len);
        let (payload, tag_storage) = payload_tag.split_at_mut(payload_tag.len() - self.tag_len());
        let tag = self.encrypt_in_place(packet, &*header, payload).unwrap();
        tag_storage.copy_from_slice(tag.as_ref());
    }

    fn decrypt(
        &self,
        packet: u64,
        header: &[u8],
        payload: &mut BytesMut,
    ) -> Result<(), CryptoError> {
        let plain = self
            .decrypt_in_place(packet, header, payload.as_mut())
            .map_err(|_| CryptoError)?;
        let plain_len = plain.len();
        payload.truncate(plain_len);
        Ok(())
    }

    fn tag_len(&self) -> usize {
        (**self).tag_len()
    }

    fn confidentiality_limit(&self) -> u64 {
        (**self).confidentiality_limit()
    }

    fn integrity_limit(&self) -> u64 {
        (**self).integrity_limit()
    }
}

fn interpret_version(version: u32) -> Result<Version, UnsupportedVersion> {
    match version {
        0xff00_001d..=0xff00_0020 => Ok(Version::V1Draft),
        0x0000_0001 | 0xff00_0021..=0xff00_0022 => Ok(Version::V1),
        _ => Err(UnsupportedVersion),
    }
}

/// PATCH(outpost): a released session, driven through a real rustls handshake.
#[cfg(test)]
mod release_tests {
    use super::*;
    use crate::crypto::{ClientConfig as _, ServerConfig as _, Session};

    const QUIC_V1: u32 = 1;

    /// A client and a server session, both released after the handshake, with
    /// the handshake run to completion by passing each side's output to the other.
    fn released_pair() -> (Box<dyn Session>, Box<dyn Session>) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .unwrap();
        server_tls.alpn_protocols = vec![b"test".to_vec()];
        server_tls.send_tls13_tickets = 0;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ck.cert.der().clone()).unwrap();
        let mut client_tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client_tls.alpn_protocols = vec![b"test".to_vec()];

        let mut server_config = QuicServerConfig::try_from(server_tls).unwrap();
        server_config.set_release_after_handshake(true);
        let mut client_config = QuicClientConfig::try_from(client_tls).unwrap();
        client_config.set_release_after_handshake(true);
        let params = TransportParameters::default();
        let mut client = Arc::new(client_config)
            .start_session(QUIC_V1, "localhost", &params)
            .unwrap();
        let mut server = Arc::new(server_config).start_session(QUIC_V1, &params);

        /// Passes everything `from` has to write to `to`; whether there was any.
        fn pass(from: &mut dyn Session, to: &mut dyn Session) -> bool {
            let mut moved = false;
            loop {
                let mut out = Vec::new();
                let keys = from.write_handshake(&mut out);
                if !out.is_empty() {
                    to.read_handshake(&out).unwrap();
                    moved = true;
                }
                if out.is_empty() && keys.is_none() {
                    return moved;
                }
            }
        }
        for _ in 0..16 {
            let a = pass(&mut *client, &mut *server);
            let b = pass(&mut *server, &mut *client);
            if !a && !b {
                break;
            }
        }
        assert!(!client.is_handshaking() && !server.is_handshaking());
        (client, server)
    }

    #[test]
    fn a_released_session_keeps_what_is_read_later_and_refuses_late_tls_data() {
        let (mut client, mut server) = released_pair();
        let mut out = [0u8; 16];
        // Released: the exporter secret is gone on both sides.
        assert!(server.export_keying_material(&mut out, b"l", b"c").is_err());
        assert!(client.export_keying_material(&mut out, b"l", b"c").is_err());
        // Kept: ALPN, server name, the server's transport parameters, key updates.
        let data = server.handshake_data().unwrap().downcast::<HandshakeData>().unwrap();
        assert_eq!(data.protocol.as_deref(), Some(&b"test"[..]));
        assert_eq!(data.server_name.as_deref(), Some("localhost"));
        let data = client.handshake_data().unwrap().downcast::<HandshakeData>().unwrap();
        assert_eq!(data.protocol.as_deref(), Some(&b"test"[..]));
        assert!(client.transport_parameters().unwrap().is_some());
        assert!(server.next_1rtt_keys().is_some() && client.next_1rtt_keys().is_some());

        // A client sends no TLS data after its Finished: the released server
        // answers any with rustls's alert, garbage or a well-formed message.
        for late in [&[0xff_u8; 64][..], &[0x04, 0, 0, 1, 0][..]] {
            let err = server.read_handshake(late).unwrap_err();
            assert_eq!(
                err.code,
                TransportErrorCode::crypto(rustls::AlertDescription::UnexpectedMessage.into())
            );
        }
        assert!(!server.read_handshake(&[]).unwrap());
        // A released client ignores what a server sends after the handshake
        // (tickets), whatever it is.
        assert!(!client.read_handshake(&[0xff; 64]).unwrap());
        assert!(server.write_handshake(&mut Vec::new()).is_none());
    }
}

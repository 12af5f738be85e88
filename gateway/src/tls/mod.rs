//! TLS for the QUIC endpoint: TLS 1.3 only, ALPN `outpost/1`, certificates from
//! configured PEM files or, in development, a generated local CA; reloaded
//! without a restart when the files change.
//!
//! Production sets `tls.cert_path` and `tls.key_path` to PEM files (chain leaf
//! first; PKCS#8, SEC1 or PKCS#1 key). Development certificates (`dev`):
//! `outpost-gateway gen-certs [--out certs/dev]` writes `ca.pem`/`ca.key` (a
//! development CA) and `gateway.pem`/`gateway.key` (a certificate for
//! `localhost`, `127.0.0.1` and `::1` signed by that CA). A gateway with no
//! `tls.cert_path` configured runs the same generation on first start and reuses
//! the files afterwards; clients in development mode trust `ca.pem`.
//!
//! Hot reload (`reload`): the served pair — the configured files, or
//! `gateway.pem`/`gateway.key` in development — is re-read when `stat` shows a
//! change (checked every `tls.reload_check_interval_ms`, default 10 s; 0 turns
//! polling off) and on SIGHUP. The new certificate is used for new handshakes;
//! established sessions keep their connection and their keys. A pair that does
//! not load (unparseable, missing, key not matching the certificate — typically a
//! rotation caught halfway) is not installed: the old one stays in service, a
//! warning is logged, `outpost_tls_reload_failures_total` counts the attempt and
//! the next check tries again. To rotate, write the new files next to the old
//! ones and rename them into place (key and certificate in either order), or let
//! Kubernetes update a mounted secret. `not_after` reads the leaf's expiry for
//! the `outpost_tls_cert_not_after_seconds` gauge.

mod dev;
mod not_after;
mod reload;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

use crate::config::TlsConfig;

pub use dev::{ensure_dev_certs, generate_dev_certs, DevCertPaths};
pub use not_after::not_after_unix;
pub use reload::{CertWatcher, FileStamp, PairStamp, ReloadReport, TlsReloader, TlsStatus};

/// A failure to produce or load certificates.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot access {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot parse PEM in {path}: {source}")]
    Pem {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("no certificate found in {0}")]
    NoCertificate(PathBuf),
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("QUIC cannot use this TLS configuration: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    #[error("the gateway has stopped")]
    Stopped,
}

/// The two files the served certificate comes from: `tls.cert_path`/`key_path`
/// when configured, else `gateway.pem`/`gateway.key` in `tls.dev_certs_dir`.
/// These are the files hot reload watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf.
    pub key: PathBuf,
}

impl CertFiles {
    /// The files `cfg` serves from.
    pub fn of(cfg: &TlsConfig) -> Self {
        match (&cfg.cert_path, &cfg.key_path) {
            (Some(cert), Some(key)) => CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => {
                let dev = DevCertPaths::in_dir(&cfg.dev_certs_dir);
                CertFiles {
                    cert: dev.cert,
                    key: dev.key,
                }
            }
        }
    }
}

/// The certificate chain and key the gateway presents, plus (development only) the
/// CA that clients should trust.
pub struct ServerIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// PEM of the development CA when dev certs are in use.
    pub dev_ca_pem: Option<Vec<u8>>,
}

impl ServerIdentity {
    /// Loads configured certificates, or ensures and loads development ones.
    pub fn load(cfg: &TlsConfig) -> Result<Self, TlsError> {
        Ok(Self::load_stamped(cfg)?.0)
    }

    /// [`ServerIdentity::load`], plus the state of the two files taken just
    /// before they were read (the starting point of hot reload).
    pub fn load_stamped(cfg: &TlsConfig) -> Result<(Self, PairStamp), TlsError> {
        let dev_ca_pem = match (&cfg.cert_path, &cfg.key_path) {
            (Some(_), Some(_)) => None,
            _ => {
                let paths = ensure_dev_certs(&cfg.dev_certs_dir)?;
                let ca = std::fs::read(&paths.ca_cert).map_err(|source| TlsError::Io {
                    path: paths.ca_cert.clone(),
                    source,
                })?;
                Some(ca)
            }
        };
        let files = CertFiles::of(cfg);
        let stamp = PairStamp::of(&files);
        let identity = ServerIdentity {
            dev_ca_pem,
            ..Self::from_files(&files)?
        };
        Ok((identity, stamp))
    }

    /// Reads the chain and key from `files` (no development CA). Whether they
    /// belong together is checked by [`ServerIdentity::rustls_config`].
    pub fn from_files(files: &CertFiles) -> Result<Self, TlsError> {
        Ok(ServerIdentity {
            chain: load_chain(&files.cert)?,
            key: load_key(&files.key)?,
            dev_ca_pem: None,
        })
    }

    /// The leaf certificate's `notAfter` (unix seconds), if it can be read.
    pub fn not_after(&self) -> Option<i64> {
        self.chain.first().and_then(|leaf| not_after_unix(leaf))
    }

    /// A rustls server config: TLS 1.3 only, ALPN `outpost/1`, no 0-RTT (a replayed
    /// Hello must never log anyone in twice), the gateway's cipher-suite order
    /// ([`SERVER_CIPHER_SUITES`]). Fails if the key cannot be parsed or
    /// does not match the leaf certificate's public key (rustls compares the
    /// SubjectPublicKeyInfo), or if the leaf is not a parseable certificate.
    pub fn rustls_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::CryptoProvider {
            cipher_suites: SERVER_CIPHER_SUITES.to_vec(),
            ..rustls::crypto::ring::default_provider()
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.ignore_client_order = true;
        config.alpn_protocols = vec![outpost_schema::ALPN.to_vec()];
        config.max_early_data_size = 0;
        // No TLS session resumption. rustls would otherwise mint two stateful
        // tickets per handshake into a 256-entry cache in this process: at gateway
        // scale (thousands of handshakes per second, clients spread over many
        // gateways) a returning client almost never finds its entry, so every
        // login would pay for ticket generation, a locked cache insert and the
        // NewSessionTicket bytes for nothing. Reconnects are cheap at the session
        // layer instead (resume tokens, §3.4 of PROTOCOL.md). Resumption across a
        // fleet would need a ticket key shared by the region's gateways.
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Ok(Arc::new(config))
    }
}

/// The TLS 1.3 cipher suites the gateway accepts, in the order it picks them
/// (the server's order wins over the client's: `ignore_client_order`).
///
/// Why AES-128-GCM-SHA256 first: rustls (like most TLS clients, and the SDK)
/// lists AES-256-GCM-SHA384 first, whose key schedule is HKDF over SHA-384.
/// SHA-384 is SHA-512's block function, which x86 has no instructions for,
/// while SHA-256 runs on the SHA extensions ring uses where the CPU has them.
/// Profiled on the 2-core bench VM (docs/PERFORMANCE.md, "TLS cipher-suite
/// order"), SHA-512 was the largest single symbol of a login's server CPU
/// (8.7% self). AES-128-GCM is TLS 1.3's mandatory suite (RFC 8446 §9.1) and
/// the one QUIC protects Initial packets with (RFC 9001 §5.2). The trade-off: a
/// client without AES instructions (old 32-bit ARM phones; x86-64 has AES-NI
/// and 64-bit ARM its crypto extensions) that would have preferred ChaCha20
/// still gets AES-128 when it offers it, and pays for AES in software; a
/// client offering only ChaCha20 gets ChaCha20.
pub const SERVER_CIPHER_SUITES: &[rustls::SupportedCipherSuite] = &[
    rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
    rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
    rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
];

fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(chain)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Pem {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certs_are_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = TlsConfig {
            dev_certs_dir: dir.path().join("dev"),
            ..TlsConfig::default()
        };
        let first = ServerIdentity::load(&cfg).unwrap();
        let second = ServerIdentity::load(&cfg).unwrap();
        assert_eq!(first.chain, second.chain, "existing dev certs must be reused");
        assert!(first.dev_ca_pem.is_some());
        first.rustls_config().unwrap();
    }

    /// Runs a TLS 1.3 handshake in memory (no QUIC: the suite choice is the
    /// same) between the gateway's config and a client offering `suites` in
    /// that order, and returns the suite they agreed on.
    fn negotiate(suites: &[rustls::SupportedCipherSuite]) -> rustls::CipherSuite {
        let dir = tempfile::tempdir().unwrap();
        let certs = generate_dev_certs(&dir.path().join("dev")).unwrap();
        let identity = ServerIdentity::from_files(&CertFiles {
            cert: certs.cert.clone(),
            key: certs.key.clone(),
        })
        .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        let ca = std::fs::read(&certs.ca_cert).unwrap();
        for cert in CertificateDer::pem_slice_iter(&ca) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = rustls::crypto::CryptoProvider {
            cipher_suites: suites.to_vec(),
            ..rustls::crypto::ring::default_provider()
        };
        let mut client_config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client_config.alpn_protocols = vec![outpost_schema::ALPN.to_vec()];
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
        let mut server = rustls::ServerConnection::new(identity.rustls_config().unwrap()).unwrap();
        for _ in 0..10 {
            let mut wire = Vec::new();
            client.write_tls(&mut wire).unwrap();
            server.read_tls(&mut wire.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            let mut wire = Vec::new();
            server.write_tls(&mut wire).unwrap();
            client.read_tls(&mut wire.as_slice()).unwrap();
            client.process_new_packets().unwrap();
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
        }
        assert!(!server.is_handshaking(), "the handshake did not complete");
        let chosen = server.negotiated_cipher_suite().unwrap().suite();
        assert_eq!(Some(chosen), client.negotiated_cipher_suite().map(|s| s.suite()));
        chosen
    }

    #[test]
    fn the_gateway_picks_aes_128_even_when_the_client_prefers_aes_256() {
        use rustls::crypto::ring::cipher_suite::*;
        // rustls's own default order, which the SDK uses: AES-256 first.
        let default_order = rustls::crypto::ring::default_provider().cipher_suites;
        assert_eq!(
            default_order[0].suite(),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384
        );
        assert_eq!(
            negotiate(&default_order),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        // A client that cannot do AES-128 still gets what it offers.
        assert_eq!(
            negotiate(&[TLS13_CHACHA20_POLY1305_SHA256]),
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
        );
        assert_eq!(
            negotiate(&[TLS13_CHACHA20_POLY1305_SHA256, TLS13_AES_256_GCM_SHA384]),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384
        );
    }

    #[test]
    fn mismatched_or_garbage_pairs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = generate_dev_certs(&dir.path().join("a")).unwrap();
        let b = generate_dev_certs(&dir.path().join("b")).unwrap();
        let mixed = CertFiles {
            cert: a.cert.clone(),
            key: b.key.clone(),
        };
        let identity = ServerIdentity::from_files(&mixed).unwrap();
        let err = identity
            .rustls_config()
            .expect_err("a foreign key must be refused");
        assert!(
            matches!(err, TlsError::Rustls(rustls::Error::InconsistentKeys(_))),
            "{err}"
        );
        std::fs::write(&a.cert, "garbage").unwrap();
        let files = CertFiles {
            cert: a.cert,
            key: a.key,
        };
        assert!(matches!(
            ServerIdentity::from_files(&files),
            Err(TlsError::NoCertificate(_))
        ));
        let missing = CertFiles {
            cert: dir.path().join("nope.pem"),
            key: b.key,
        };
        assert!(ServerIdentity::from_files(&missing).is_err());
    }
}

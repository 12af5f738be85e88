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
    /// Hello must never log anyone in twice). Fails if the key cannot be parsed or
    /// does not match the leaf certificate's public key (rustls compares the
    /// SubjectPublicKeyInfo), or if the leaf is not a parseable certificate.
    pub fn rustls_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
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

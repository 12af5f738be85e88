//! TLS for the QUIC endpoint: TLS 1.3 only, ALPN `outpost/1`, certificates from
//! configured PEM files or, in development, a generated local CA.
//!
//! Development certificates: `outpost-gateway gen-certs [--out certs/dev]` writes
//! `ca.pem`/`ca.key` (a development CA) and `gateway.pem`/`gateway.key` (a
//! certificate for `localhost`, `127.0.0.1` and `::1` signed by that CA). A gateway
//! with no `tls.cert_path` configured runs the same generation on first start and
//! reuses the files afterwards; clients in development mode trust `ca.pem`.
//! Production sets `tls.cert_path` and `tls.key_path` to real PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

use crate::config::TlsConfig;

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
}

/// Paths of the development CA and gateway certificate in a directory.
#[derive(Debug, Clone)]
pub struct DevCertPaths {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl DevCertPaths {
    pub fn in_dir(dir: &Path) -> Self {
        DevCertPaths {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            cert: dir.join("gateway.pem"),
            key: dir.join("gateway.key"),
        }
    }

    fn all_exist(&self) -> bool {
        [&self.ca_cert, &self.ca_key, &self.cert, &self.key]
            .iter()
            .all(|p| p.exists())
    }
}

/// Creates the development CA and `localhost` certificate in `dir` unless all four
/// files already exist. Returns their paths.
pub fn ensure_dev_certs(dir: &Path) -> Result<DevCertPaths, TlsError> {
    let paths = DevCertPaths::in_dir(dir);
    if paths.all_exist() {
        return Ok(paths);
    }
    generate_dev_certs(dir)
}

/// Always writes a fresh development CA and gateway certificate into `dir`.
pub fn generate_dev_certs(dir: &Path) -> Result<DevCertPaths, TlsError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let paths = DevCertPaths::in_dir(dir);

    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Outpost development CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;

    let mut leaf = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])?;
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    leaf.use_authority_key_identifier_extension = true;
    let leaf_key = KeyPair::generate()?;
    let issuer = Issuer::new(ca, ca_key);
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

    // Write keys first and certificates last, so `all_exist` never sees a
    // certificate without its key.
    for (path, text) in [
        (&paths.ca_key, issuer.key().serialize_pem()),
        (&paths.key, leaf_key.serialize_pem()),
        (&paths.ca_cert, ca_cert.pem()),
        (&paths.cert, leaf_cert.pem()),
    ] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
    }
    Ok(paths)
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
        match (&cfg.cert_path, &cfg.key_path) {
            (Some(cert), Some(key)) => Ok(ServerIdentity {
                chain: load_chain(cert)?,
                key: load_key(key)?,
                dev_ca_pem: None,
            }),
            _ => {
                let paths = ensure_dev_certs(&cfg.dev_certs_dir)?;
                let ca = std::fs::read(&paths.ca_cert).map_err(|source| TlsError::Io {
                    path: paths.ca_cert.clone(),
                    source,
                })?;
                Ok(ServerIdentity {
                    chain: load_chain(&paths.cert)?,
                    key: load_key(&paths.key)?,
                    dev_ca_pem: Some(ca),
                })
            }
        }
    }

    /// A rustls server config: TLS 1.3 only, ALPN `outpost/1`, no 0-RTT (a replayed
    /// Hello must never log anyone in twice).
    pub fn rustls_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![outpost_schema::ALPN.to_vec()];
        config.max_early_data_size = 0;
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
}

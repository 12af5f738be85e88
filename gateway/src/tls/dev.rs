//! Development certificates: a local CA and a `localhost` certificate signed by
//! it, generated once (`outpost-gateway gen-certs`, or on first start when no
//! `tls.cert_path` is configured) and reused afterwards.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use super::TlsError;

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

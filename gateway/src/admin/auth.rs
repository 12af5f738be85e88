//! The admin token: where it comes from (configuration, a file, or generated
//! once into `<data_dir>/admin.token`), how it is checked (constant time, on
//! every route but the probes, `/metrics` and `/openapi.json`) and what a
//! refusal looks like.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::{debug, info, warn};

use crate::config::{ConfigError, GatewayConfig};

/// Shortest admin token accepted from configuration, in bytes. 32 printable
/// characters carry well over 128 bits when generated randomly; shorter ones
/// are usually hand-typed passwords and are refused at startup.
pub const MIN_TOKEN_BYTES: usize = 32;
/// Longest admin token accepted, in bytes (it travels in an HTTP header).
pub const MAX_TOKEN_BYTES: usize = 512;
/// Name of the generated token file inside `data_dir`.
pub const TOKEN_FILE_NAME: &str = "admin.token";
/// Random bytes in a generated token (256 bits), written as 64 hex digits.
const GENERATED_TOKEN_BYTES: usize = 32;

/// The secret that admin HTTP requests must present as `Authorization: Bearer
/// <token>`. Its `Debug` form never shows the value, so a logged configuration
/// does not leak it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct AdminToken(String);

impl AdminToken {
    /// Wraps a token (not checked here: [`AdminToken::check`] does that).
    pub fn new(token: impl Into<String>) -> Self {
        AdminToken(token.into())
    }

    /// The token itself, for clients (tests, the `outpost-admin` CLI).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks the form: `MIN_TOKEN_BYTES..=MAX_TOKEN_BYTES` bytes of printable
    /// ASCII without spaces (what an HTTP header carries unchanged).
    pub fn check(&self) -> Result<(), String> {
        let n = self.0.len();
        if n < MIN_TOKEN_BYTES {
            return Err(format!(
                "admin token is {n} bytes; use at least {MIN_TOKEN_BYTES} (e.g. `openssl rand -hex 32`)"
            ));
        }
        if n > MAX_TOKEN_BYTES {
            return Err(format!(
                "admin token is {n} bytes; the limit is {MAX_TOKEN_BYTES}"
            ));
        }
        if !self.0.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("admin token must be printable ASCII without spaces".into());
        }
        Ok(())
    }

    fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl From<&str> for AdminToken {
    fn from(s: &str) -> Self {
        AdminToken::new(s)
    }
}

impl From<String> for AdminToken {
    fn from(s: String) -> Self {
        AdminToken::new(s)
    }
}

/// The token this gateway requires: `admin_token` if set, else the contents of
/// `admin_token_file`, else `<data_dir>/admin.token` (created with a random
/// 256-bit token and mode 0600 on first start, reused afterwards). Logs where
/// the token comes from, never the token.
pub fn resolve(config: &GatewayConfig) -> Result<AdminToken, ConfigError> {
    let invalid = |m: String| ConfigError::Invalid(m);
    if let Some(token) = &config.admin_token {
        token.check().map_err(invalid)?;
        info!("admin API: token from the configuration (admin_token / OUTPOST_ADMIN_TOKEN)");
        return Ok(token.clone());
    }
    if let Some(path) = &config.admin_token_file {
        let token = read_token_file(path)?;
        info!(path = %path.display(), "admin API: token from admin_token_file");
        return Ok(token);
    }
    let path = config.data_dir.join(TOKEN_FILE_NAME);
    match read_token_file(&path) {
        Ok(token) => {
            info!(path = %path.display(), "admin API: token from the token file");
            Ok(token)
        }
        Err(ConfigError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            let token = generate_token_file(&path)?;
            info!(path = %path.display(), "admin API: generated a new token (mode 0600)");
            Ok(token)
        }
        Err(e) => Err(e),
    }
}

fn read_token_file(path: &Path) -> Result<AdminToken, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    warn_if_readable_by_others(path);
    let token = AdminToken::new(text.trim());
    token
        .check()
        .map_err(|m| ConfigError::Invalid(format!("{}: {m}", path.display())))?;
    Ok(token)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            warn!(path = %path.display(), "admin token file is readable by other users; chmod 600 it");
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// Writes a fresh token to a private temporary file, then links it into place:
/// the link fails if another process created the file first, in which case
/// that process's token wins and is returned.
fn generate_token_file(path: &Path) -> Result<AdminToken, ConfigError> {
    let io_err = |what: &str, p: &Path, e: std::io::Error| {
        ConfigError::Invalid(format!("cannot {what} {}: {e}", p.display()))
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io_err("create", dir, e))?;
    let bytes: [u8; GENERATED_TOKEN_BYTES] = rand::random();
    let token = AdminToken::new(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let tmp: PathBuf = dir.join(format!(".{TOKEN_FILE_NAME}.{:016x}", rand::random::<u64>()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(format!("{}\n", token.as_str()).as_bytes())?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err("write", &tmp, e));
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(token),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_token_file(path),
        Err(e) => Err(io_err("create", path, e)),
    }
}

/// What the middleware compares against: the token's SHA-256. Hashing both
/// sides first makes the comparison constant-time in the token's length too.
#[derive(Clone)]
pub(crate) struct TokenCheck(Arc<[u8; 32]>);

impl TokenCheck {
    pub(crate) fn new(token: &AdminToken) -> Self {
        TokenCheck(Arc::new(token.digest()))
    }

    fn accepts(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest[..].ct_eq(&self.0[..]).into()
    }
}

/// Why a request was refused (the `reason` label of
/// `outpost_admin_unauthorized_total`).
fn refusal(req: &Request, check: &TokenCheck) -> Option<&'static str> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Some("missing");
    };
    let Ok(value) = value.to_str() else {
        return Some("malformed");
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        return Some("malformed");
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Some("malformed");
    }
    if check.accepts(token.trim()) {
        None
    } else {
        Some("wrong")
    }
}

/// Middleware: lets the request through only with the right bearer token;
/// otherwise answers 401 with a JSON body and counts the refusal.
pub(crate) async fn require_token(State(check): State<TokenCheck>, req: Request, next: Next) -> Response {
    let Some(reason) = refusal(&req, &check) else {
        return next.run(req).await;
    };
    metrics::counter!("outpost_admin_unauthorized_total", "reason" => reason).increment(1);
    debug!(method = %req.method(), path = %req.uri().path(), reason, "admin request refused");
    let message = match reason {
        "missing" => "this route needs an `Authorization: Bearer <admin token>` header",
        "malformed" => "the Authorization header must be `Bearer <admin token>`",
        _ => "wrong admin token",
    };
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"outpost-admin\"")],
        axum::Json(super::reply::ErrorBody::new("unauthorized", message)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_for_form() {
        assert!(AdminToken::new("short").check().is_err());
        assert!(AdminToken::new("a b".repeat(20)).check().is_err());
        assert!(AdminToken::new("x".repeat(MAX_TOKEN_BYTES + 1)).check().is_err());
        assert!(AdminToken::new("x".repeat(MIN_TOKEN_BYTES)).check().is_ok());
        assert_eq!(
            format!("{:?}", AdminToken::new("secret")),
            "AdminToken(<redacted>)"
        );
    }

    #[test]
    fn the_check_accepts_only_the_token() {
        let check = TokenCheck::new(&AdminToken::new("t".repeat(40)));
        assert!(check.accepts(&"t".repeat(40)));
        assert!(!check.accepts(&"t".repeat(39)));
        assert!(!check.accepts(""));
    }

    #[test]
    fn a_generated_token_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let config = GatewayConfig {
            data_dir: dir.path().join("data"),
            ..GatewayConfig::default()
        };
        let first = resolve(&config).unwrap();
        assert_eq!(first.as_str().len(), 2 * GENERATED_TOKEN_BYTES);
        let path = dir.path().join("data").join(TOKEN_FILE_NAME);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(resolve(&config).unwrap(), first, "reused on the next start");
        // Only the token file is left behind, no temporary files.
        assert_eq!(std::fs::read_dir(dir.path().join("data")).unwrap().count(), 1);
        std::fs::write(&path, "too short\n").unwrap();
        assert!(
            resolve(&config).is_err(),
            "a bad token file is refused, not replaced"
        );
    }
}

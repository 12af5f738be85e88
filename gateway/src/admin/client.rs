//! The blocking client of the admin HTTP API: the `outpost-admin` CLI and the
//! integration tests both speak to the admin API through [`AdminClient`], which
//! sends each request with `ureq` (plain HTTP to a loopback service, no TLS
//! stack), the bearer token on every request, and reads the whole answer
//! whatever its status.

use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;

/// Largest answer read, in bytes (audit logs are paged well below this).
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// Why a request got no HTTP answer.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot reach the admin API at {addr}: {source}")]
    Connect { addr: SocketAddr, source: ureq::Error },
    #[error("admin API at {addr}: {source}")]
    Io { addr: SocketAddr, source: ureq::Error },
    #[error("admin API at {addr}: bad request {reason}")]
    Request { addr: SocketAddr, reason: String },
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body (JSON for every route but the probes, `/metrics`, `/drain` and kicks).
    pub body: String,
}

impl Answer {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The status's canonical reason phrase (`"OK"`, `"Unauthorized"`, ...), empty if none.
    pub fn reason(&self) -> &'static str {
        ureq::http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
    }

    /// The error message of a JSON error answer (`message`), else the body.
    pub fn error_message(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| {
                let msg = v.get("message")?.as_str()?.to_owned();
                Some(match v.get("error").and_then(|c| c.as_str()) {
                    Some(code) => format!("{code}: {msg}"),
                    None => msg,
                })
            })
            .unwrap_or_else(|| self.body.trim().to_owned())
    }
}

/// The admin API of one gateway.
#[derive(Debug, Clone)]
pub struct AdminClient {
    addr: SocketAddr,
    /// The bearer token; `None` sends no `Authorization` header (tests of the
    /// refusal use it).
    token: Option<String>,
    agent: ureq::Agent,
}

impl AdminClient {
    /// A client of the admin API at `addr` presenting `token`. Requests time out
    /// after 30 s (a region-wide audit may take a while).
    pub fn new(addr: SocketAddr, token: impl Into<String>) -> Self {
        Self::with_token(addr, Some(token.into()), Duration::from_secs(30))
    }

    /// A client presenting `token` (or none), whose requests time out after `timeout`.
    pub fn with_token(addr: SocketAddr, token: Option<String>, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            // Every status is an answer the caller reads (error bodies carry the code).
            .http_status_as_error(false)
            .build()
            .into();
        AdminClient { addr, token, agent }
    }

    /// Sends `method path` with an optional JSON body.
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Answer, ClientError> {
        let addr = self.addr;
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("Content-Type", "application/json");
        if let Some(token) = &self.token {
            req = req.header("Authorization", format!("Bearer {token}"));
        }
        let req = req
            .body(body.unwrap_or_default().to_vec())
            .map_err(|e| ClientError::Request {
                addr,
                reason: e.to_string(),
            })?;
        let mut resp = self.agent.run(req).map_err(|source| match source {
            ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
                ClientError::Connect { addr, source }
            }
            source => ClientError::Io { addr, source },
        })?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|source| ClientError::Io { addr, source })?;
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// Percent-encodes `s` for a path segment or a query value (everything but
/// RFC 3986's unreserved characters).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_encoded() {
        assert_eq!(encode_component("alice@host"), "alice%40host");
        assert_eq!(encode_component("flag:new-shop"), "flag%3Anew-shop");
        assert_eq!(encode_component("a b/c"), "a%20b%2Fc");
    }
}

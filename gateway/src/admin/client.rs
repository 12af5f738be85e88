//! A minimal blocking client of the admin HTTP API, for the `outpost-admin`
//! CLI: one HTTP/1.1 request per TCP connection (`Connection: close`), the
//! bearer token on every request. The admin API is a loopback service with
//! small answers, so a plain `std::net::TcpStream` is enough and keeps the CLI
//! free of an HTTP client stack.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use thiserror::Error;

/// Largest answer read, in bytes (audit logs are paged well below this).
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// Why a request got no HTTP answer.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot reach the admin API at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("admin API at {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("admin API at {addr} sent a malformed answer: {reason}")]
    Malformed { addr: SocketAddr, reason: String },
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
    token: String,
    timeout: Duration,
}

impl AdminClient {
    /// A client of the admin API at `addr` presenting `token`. Requests time out
    /// after 30 s (a region-wide audit may take a while).
    pub fn new(addr: SocketAddr, token: impl Into<String>) -> Self {
        AdminClient {
            addr,
            token: token.into(),
            timeout: Duration::from_secs(30),
        }
    }

    /// Sends `method path` with an optional JSON body.
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Answer, ClientError> {
        let addr = self.addr;
        let io = |source| ClientError::Io { addr, source };
        let mut s = TcpStream::connect_timeout(&addr, self.timeout)
            .map_err(|source| ClientError::Connect { addr, source })?;
        s.set_read_timeout(Some(self.timeout)).map_err(io)?;
        s.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.token,
            body.len()
        );
        s.write_all(head.as_bytes()).map_err(io)?;
        s.write_all(body).map_err(io)?;
        let mut raw = Vec::new();
        s.take(MAX_RESPONSE_BYTES).read_to_end(&mut raw).map_err(io)?;
        parse_response(&raw).map_err(|reason| ClientError::Malformed { addr, reason })
    }
}

/// Parses a whole `Connection: close` HTTP/1.1 response (fixed length, chunked
/// or read to the end).
fn parse_response(raw: &[u8]) -> Result<Answer, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "headers are not UTF-8")?;
    let mut body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value.parse().map_err(|_| "bad Content-Length")?;
            body = body.get(..n).ok_or("body shorter than its Content-Length")?;
        }
    }
    let body = if chunked { dechunk(body)? } else { body.to_vec() };
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&data[..eol]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or("truncated chunk")?);
        data = data.get(size + 2..).ok_or("truncated chunk")?;
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
    fn responses_are_parsed() {
        let a = parse_response(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 38\r\n\r\n{\"error\":\"unauthorized\",\"message\":\"x\"}")
            .unwrap();
        assert_eq!(a.status, 401);
        assert_eq!(a.error_message(), "unauthorized: x");
        let a = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((a.status, a.body.as_str()), (200, "abcde"));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn components_are_encoded() {
        assert_eq!(encode_component("alice@host"), "alice%40host");
        assert_eq!(encode_component("flag:new-shop"), "flag%3Anew-shop");
        assert_eq!(encode_component("a b/c"), "a%20b%2Fc");
    }
}

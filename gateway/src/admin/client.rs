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

/// Longest wait for the TCP connection (at most half the request's timeout):
/// the admin API is on loopback or a private network, where a connection takes
/// milliseconds. Shorter than the request's timeout so that a connection that
/// never comes (a firewall dropping the SYN) is reported as one
/// ([`ClientError::Connect`]) rather than as a request that timed out.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request got no HTTP answer.
#[derive(Debug, Error)]
pub enum ClientError {
    /// No connection was made: refused (nothing listens there), no route, the
    /// name does not resolve, or the connection timed out. The address, a
    /// firewall or the gateway being down is the thing to check.
    #[error("cannot reach the admin API at {addr}: {source}")]
    Connect { addr: SocketAddr, source: ureq::Error },
    /// The connection was made and then the exchange failed: reset, broken
    /// pipe, closed or cut short before the whole answer, an answer that is not
    /// HTTP, or no answer within the timeout. Something listens at the address;
    /// the gateway (or whatever listens there) ended the request.
    #[error("connected to the admin API at {addr}, then the request failed: {source}")]
    Io { addr: SocketAddr, source: ureq::Error },
    /// The request could not be built (a method or path that is not valid HTTP);
    /// nothing was sent.
    #[error("admin API at {addr}: bad request {reason}")]
    Request { addr: SocketAddr, reason: String },
}

impl ClientError {
    /// The error of a request to `addr` that failed with `source`: whether a
    /// connection was made, from ureq's error. ureq reports a failed connect as
    /// `HostNotFound`, `ConnectionFailed`, a `Resolve` or `Connect` timeout, or
    /// an I/O error of one of the kinds its own connector treats as a failed
    /// connect to an address (refused, unreachable, network down, address not
    /// available); an I/O error of any other kind (reset, broken pipe,
    /// unexpected end) happens on a connection that was made.
    fn of_send(addr: SocketAddr, source: ureq::Error) -> Self {
        use std::io::ErrorKind;
        use ureq::Timeout;
        let connect = match &source {
            ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
            ureq::Error::Timeout(t) => matches!(t, Timeout::Resolve | Timeout::Connect),
            ureq::Error::Io(e) => matches!(
                e.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
                    | ErrorKind::NetworkDown
                    | ErrorKind::AddrNotAvailable
            ),
            _ => false,
        };
        if connect {
            ClientError::Connect { addr, source }
        } else {
            ClientError::Io { addr, source }
        }
    }
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

    /// A client presenting `token` (or none), whose requests time out after
    /// `timeout`, and whose connections after half of it (at most 10 s).
    pub fn with_token(addr: SocketAddr, token: Option<String>, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            // Strictly before the global timeout, so that ureq reports a
            // connection that never came as a `Connect` timeout.
            .timeout_connect(Some(CONNECT_TIMEOUT.min(timeout / 2)))
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
        let mut resp = self
            .agent
            .run(req)
            .map_err(|source| ClientError::of_send(addr, source))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            // The answer's head came: the connection was made.
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
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    /// A client of `addr` and the error of `PUT /flags/x` with `body`.
    fn failure(addr: SocketAddr, body: &[u8]) -> ClientError {
        let client = AdminClient::with_token(addr, Some("token".into()), Duration::from_secs(10));
        match client.request("PUT", "/flags/x", Some(body)) {
            Ok(answer) => panic!("an answer: {} {}", answer.status, answer.body),
            Err(e) => e,
        }
    }

    /// A loopback listener whose one connection `serve` handles, and a client's
    /// error of `PUT /flags/x` with `body` against it.
    fn failure_against(body: &[u8], serve: impl FnOnce(TcpStream) + Send + 'static) -> ClientError {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || serve(listener.accept().unwrap().0));
        let e = failure(addr, body);
        server.join().unwrap();
        e
    }

    /// Reads the request's head and, unless `head_only`, its body.
    fn read_request(s: &mut TcpStream, head_only: bool) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: ")?.trim().parse().ok())
            .unwrap_or(0);
        if !head_only {
            s.read_exact(&mut vec![0; length]).unwrap();
        }
    }

    /// Closes `s` with a reset (RST) instead of a FIN.
    fn reset(s: TcpStream) {
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s);
    }

    #[test]
    fn a_port_where_nothing_listens_cannot_be_reached() {
        // A port just freed: nothing listens there, the connect is refused.
        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let e = failure(addr, b"{}");
        assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with(&format!("cannot reach the admin API at {addr}: ")),
            "{e}"
        );
    }

    #[test]
    fn a_failure_after_the_connection_was_made_says_so() {
        const PARTIAL: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"partial\":";
        type Serve = Box<dyn FnOnce(TcpStream) + Send>;
        let cases: Vec<(&str, Vec<u8>, Serve)> = vec![
            (
                "closed (FIN) before the answer",
                b"{}".to_vec(),
                Box::new(|mut s| read_request(&mut s, false)),
            ),
            (
                "reset before the answer",
                b"{}".to_vec(),
                Box::new(|mut s| {
                    read_request(&mut s, false);
                    reset(s);
                }),
            ),
            (
                "an answer cut short by a close (FIN)",
                b"{}".to_vec(),
                Box::new(|mut s| {
                    read_request(&mut s, false);
                    s.write_all(PARTIAL).unwrap();
                }),
            ),
            (
                "reset in the middle of the answer",
                b"{}".to_vec(),
                Box::new(|mut s| {
                    read_request(&mut s, false);
                    s.write_all(PARTIAL).unwrap();
                    std::thread::sleep(Duration::from_millis(50));
                    reset(s);
                }),
            ),
            (
                "reset during the upload (broken pipe or reset)",
                vec![b'x'; 16 << 20],
                Box::new(|mut s| {
                    read_request(&mut s, true);
                    reset(s);
                }),
            ),
        ];
        let mut wrong = Vec::new();
        for (what, body, serve) in cases {
            let e = failure_against(&body, serve);
            let text = e.to_string();
            if !matches!(e, ClientError::Io { .. })
                || !text.starts_with("connected to the admin API at 127.0.0.1:")
                || text.contains("cannot reach")
            {
                wrong.push(format!("{what}: {e:?}: {text}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn a_connection_that_never_comes_cannot_be_reached() {
        // A listener that never accepts, its accept queue full: Linux drops
        // further SYNs (as a firewall would), so the connect times out.
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        socket.listen(0).unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        let mut queued = Vec::new();
        while let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            queued.push(s);
            assert!(queued.len() < 64, "the accept queue does not fill");
        }
        let client = AdminClient::with_token(addr, Some("token".into()), Duration::from_secs(2));
        let e = client.request("GET", "/status", None).unwrap_err();
        assert!(
            matches!(
                &e,
                ClientError::Connect {
                    source: ureq::Error::Timeout(ureq::Timeout::Connect),
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("cannot reach the admin API"), "{e}");
    }

    #[test]
    fn no_answer_within_the_timeout_is_not_a_connect_failure() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts and reads the request, then never answers.
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            read_request(&mut s, false);
            std::thread::sleep(Duration::from_millis(1500));
        });
        let client = AdminClient::with_token(addr, Some("token".into()), Duration::from_secs(1));
        let e = client.request("GET", "/status", None).unwrap_err();
        server.join().unwrap();
        assert!(
            matches!(
                &e,
                ClientError::Io {
                    source: ureq::Error::Timeout(_),
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("connected to the admin API"), "{e}");
    }

    #[test]
    fn components_are_encoded() {
        assert_eq!(encode_component("alice@host"), "alice%40host");
        assert_eq!(encode_component("flag:new-shop"), "flag%3Anew-shop");
        assert_eq!(encode_component("a b/c"), "a%20b%2Fc");
    }
}

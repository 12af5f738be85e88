//! The admin API's answers say `Connection: close` exactly when the gateway
//! ends the connection after them (RFC 9112 §9.6): every answer given before
//! the request body was read whole, and no other. Raw HTTP/1.1 over a
//! `TcpStream` against a real gateway, reading the exact answer bytes.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::*;

/// An answer's head (status line and headers, lowercase) and body.
struct Answer {
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn status(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or("")
    }

    fn says_close(&self) -> bool {
        self.head.lines().any(|l| l == "connection: close")
    }
}

/// Reads one answer (head, then `content-length` bytes of body) from `s`.
fn read_answer(s: &mut TcpStream) -> Result<Answer> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).context("the answer's head")? == 0 {
            bail!("closed before an answer: {:?}", String::from_utf8_lossy(&buf));
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).trim_end().to_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(Ok(0), str::parse)
        .context("content-length")?;
    let mut body = vec![0; length];
    s.read_exact(&mut body).context("the answer's body")?;
    Ok(Answer { head, body })
}

/// Sends `head` and then, from another thread (the gateway may answer before
/// it has read it all), `body`; returns the answer and whether the gateway
/// then closed the connection (its FIN) or still serves it (the answer to a
/// second request, `GET /healthz`, on the same connection).
fn exchange(addr: SocketAddr, head: &str, body: Vec<u8>) -> Result<(Answer, bool)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(head.as_bytes())?;
    let mut upload = s.try_clone()?;
    // A refused upload may fail once the gateway stops lingering: not the point.
    let uploader = std::thread::spawn(move || upload.write_all(&body).is_ok());
    let answer = read_answer(&mut s)?;
    let closed = if answer.says_close() {
        // The connection ends after the answer: the FIN, nothing more.
        let mut rest = Vec::new();
        s.read_to_end(&mut rest)
            .context("the FIN after a closing answer")?;
        if !rest.is_empty() {
            bail!(
                "bytes after a closing answer: {:?}",
                String::from_utf8_lossy(&rest)
            );
        }
        true
    } else {
        // A kept connection serves the next request; one that was closed
        // without saying so fails it (EOF or reset).
        if !uploader.join().unwrap_or(false) {
            bail!("the upload of a kept connection failed");
        }
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: admin\r\n\r\n")
            .context("a second request on a kept connection")?;
        let second = read_answer(&mut s).context("the second answer on a kept connection")?;
        if second.status() != "200" {
            bail!("the second request: {}", second.head);
        }
        false
    };
    Ok((answer, closed))
}

const GOOD_FLAG: &str = r#"{"key":"theme","default":{"type":"string","value":"plain"}}"#;

fn put_flag(token: Option<&str>, framing: &str, extra: &str) -> String {
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    format!("PUT /flags/theme HTTP/1.1\r\nhost: admin\r\n{auth}content-type: application/json\r\n{framing}{extra}\r\n")
}

/// Chunked encoding of `total` bytes of `x`, in 64 KiB chunks.
fn chunked(total: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in vec![b'x'; total].chunks(64 << 10) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[tokio::test]
async fn an_answer_says_connection_close_exactly_when_the_connection_ends_after_it() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let token = Some(TEST_ADMIN_TOKEN);
    let big = 3 << 20;
    let auth = format!("authorization: Bearer {TEST_ADMIN_TOKEN}\r\n");
    // (what, request head, body sent after it, status, the connection ends)
    let cases: Vec<(&str, String, Vec<u8>, &str, bool)> = vec![
        (
            "a body over the 2 MiB limit",
            put_flag(token, &format!("content-length: {big}\r\n"), ""),
            vec![b'x'; big],
            "413",
            true,
        ),
        (
            "a chunked body over the limit",
            put_flag(token, "transfer-encoding: chunked\r\n", ""),
            chunked(big),
            "413",
            true,
        ),
        (
            "a large body without the token",
            put_flag(None, &format!("content-length: {big}\r\n"), ""),
            vec![b'x'; big],
            "401",
            true,
        ),
        (
            "a small body without the token",
            put_flag(None, "content-length: 2\r\n", ""),
            b"{}".to_vec(),
            "401",
            true,
        ),
        (
            "a body not yet sent, without the token",
            put_flag(None, "content-length: 2\r\n", ""),
            Vec::new(),
            "401",
            true,
        ),
        (
            "an expect: 100-continue without the token",
            put_flag(None, "content-length: 2\r\n", "expect: 100-continue\r\n"),
            Vec::new(),
            "401",
            true,
        ),
        (
            "a body to an unknown path",
            format!("POST /no-such-route HTTP/1.1\r\nhost: admin\r\n{auth}content-length: 2\r\n\r\n"),
            Vec::new(),
            "404",
            true,
        ),
        (
            "a body to a route without that method",
            format!("DELETE /status HTTP/1.1\r\nhost: admin\r\n{auth}content-length: 2\r\n\r\n"),
            Vec::new(),
            "405",
            true,
        ),
        (
            "a body a handler ignores",
            "GET /healthz HTTP/1.1\r\nhost: admin\r\ncontent-length: 2\r\n\r\n".to_owned(),
            Vec::new(),
            "200",
            true,
        ),
        // The body was read whole, or there was none: the connection is kept.
        (
            "a bad JSON body",
            put_flag(token, "content-length: 3\r\n", ""),
            b"{{{".to_vec(),
            "400",
            false,
        ),
        (
            "a good flag",
            put_flag(token, &format!("content-length: {}\r\n", GOOD_FLAG.len()), ""),
            GOOD_FLAG.as_bytes().to_vec(),
            "200",
            false,
        ),
        (
            "no token, no body",
            "GET /status HTTP/1.1\r\nhost: admin\r\n\r\n".to_owned(),
            Vec::new(),
            "401",
            false,
        ),
        (
            "a plain GET",
            format!("GET /status HTTP/1.1\r\nhost: admin\r\n{auth}\r\n"),
            Vec::new(),
            "200",
            false,
        ),
    ];
    // Every case is checked, and every failure reported.
    let mut failures = Vec::new();
    for (what, head, body, status, ends) in cases {
        let addr = gw.admin;
        let outcome = tokio::task::spawn_blocking(move || exchange(addr, &head, body)).await?;
        match outcome {
            Err(e) => failures.push(format!("{what}: {e:#}")),
            Ok((answer, closed)) => {
                if (answer.status(), answer.says_close(), closed) != (status, ends, ends) {
                    failures.push(format!(
                        "{what}: expected {status}, close {ends}; got close {closed} after\n{}",
                        answer.head
                    ));
                }
                // An error answer's body is still the handler's JSON error.
                if matches!(status, "400" | "401" | "413") {
                    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
                    if !json["error"].is_string() {
                        failures.push(format!("{what}: body {json}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

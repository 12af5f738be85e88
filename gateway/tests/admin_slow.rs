//! A client that stalls cannot hold an admin API connection: one that sends
//! nothing, part of a request head, or a head declaring a body it never sends
//! is closed once the bound passes (`[admin_timeouts]`, short here), with a
//! 408 where a request had begun; so is one that stops reading its answers,
//! and so on the metrics-only listener. Raw HTTP/1.1 over `TcpStream`s against a
//! real gateway; the probes are on this listener and need no token, so this
//! is what anyone who reaches it can do.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::*;
use outpost_gateway::admin::AdminTimeouts;

/// The bounds under test: short, so that the test is quick.
const BOUNDS: AdminTimeouts = AdminTimeouts {
    head_ms: 500,
    body_idle_ms: 500,
    body_ms: 10_000,
    send_idle_ms: 500,
    shutdown_grace_ms: 10_000,
};

/// How long a connection may stay open before the test calls it held: far
/// past every bound above (and the 5 s linger after an answer), so that a
/// slow machine does not fail it.
const GENEROUS: Duration = Duration::from_secs(15);

/// Sends `request` on a new connection, then nothing; returns what the
/// gateway sent before it closed the connection, or fails if it is still open
/// after [`GENEROUS`].
fn stall(addr: SocketAddr, request: &[u8]) -> Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(GENEROUS))?;
    s.write_all(request)?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // A close with unread bytes in the gateway's socket is a reset.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => bail!(
                "still open after {GENEROUS:?}, having sent {:?}",
                String::from_utf8_lossy(&got)
            ),
            Err(e) => return Err(e).context("reading"),
        }
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}

/// The status of each answer in `got`, in order.
fn statuses(got: &str) -> Vec<&str> {
    got.match_indices("HTTP/1.1 ")
        .map(|(i, _)| &got[i + 9..i + 12])
        .collect()
}

#[tokio::test]
async fn a_stalled_client_is_closed_once_its_bound_passes() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|c| c.admin_timeouts = BOUNDS).await?;
    let token = TEST_ADMIN_TOKEN;
    // (what, what the client sends before it stalls, the answers' statuses)
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("a connection that sends nothing", String::new(), vec![]),
        (
            "half a request head",
            "GET /healthz HTTP/1.1\r\nhost: adm".into(),
            vec!["408"],
        ),
        (
            "a kept-alive connection after its answer",
            "GET /healthz HTTP/1.1\r\nhost: admin\r\n\r\n".into(),
            vec!["200"],
        ),
        (
            "a kept-alive connection with half its second head",
            "GET /healthz HTTP/1.1\r\nhost: admin\r\n\r\nGET /readyz HTTP/1.1\r\n".into(),
            vec!["200", "408"],
        ),
        (
            "a declared body that never comes",
            format!(
                "PUT /flags/theme HTTP/1.1\r\nhost: admin\r\nauthorization: Bearer {token}\r\n\
                 content-type: application/json\r\ncontent-length: 1000\r\n\r\n"
            ),
            vec!["408"],
        ),
        (
            // Refused from its Content-Length alone: nothing to wait for.
            "a declared body over the 2 MiB limit that never comes",
            format!(
                "PUT /flags/theme HTTP/1.1\r\nhost: admin\r\nauthorization: Bearer {token}\r\n\
                 content-type: application/json\r\ncontent-length: 3000000\r\n\r\n"
            ),
            vec!["413"],
        ),
        (
            "a body that stops halfway",
            format!(
                "POST /content?actor=t HTTP/1.1\r\nhost: admin\r\nauthorization: Bearer {token}\r\n\
                 content-type: application/json\r\ncontent-length: 40\r\n\r\n{{\"id\":\"maps\","
            ),
            vec!["408"],
        ),
    ];
    let mut failures = Vec::new();
    for (what, request, expected) in cases {
        let addr = gw.admin;
        let got = tokio::task::spawn_blocking(move || stall(addr, request.as_bytes())).await?;
        match got {
            Err(e) => failures.push(format!("{what}: {e:#}")),
            Ok(got) if statuses(&got) != expected => {
                failures.push(format!("{what}: expected answers {expected:?}, got {got:?}"))
            }
            Ok(got) => {
                // A 408 ends the connection and says so (RFC 9110 §15.5.9).
                if expected.last() == Some(&"408") && !got.to_lowercase().contains("connection: close") {
                    failures.push(format!("{what}: a 408 without connection: close: {got:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The bounds held no one back: the gateway still serves.
    let (status, body) = admin_json(gw.admin, "GET", "/healthz", "").await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

/// A client that sends requests and reads none of the answers holds the
/// connection once its receive window and the gateway's send buffer are full:
/// past the send bound without progress the gateway ends it, so the client,
/// reading at last, gets only part of what it asked for.
#[tokio::test]
async fn a_client_that_stops_reading_is_closed() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|c| c.admin_timeouts = BOUNDS).await?;
    let addr = gw.admin;
    // 200 answers of ~96 KiB (19 MB): far more than the buffers between the
    // two ends hold, with a small receive buffer on this side (no autotuning).
    const ASKED: usize = 200;
    let received = tokio::task::spawn_blocking(move || -> Result<usize> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.set_recv_buffer_size(64 << 10)?;
        socket.connect(&addr.into())?;
        let mut s: TcpStream = socket.into();
        s.write_all(&b"GET /openapi.json HTTP/1.1\r\nhost: admin\r\n\r\n".repeat(ASKED))?;
        // Reads nothing for well past the bound.
        std::thread::sleep(Duration::from_millis(BOUNDS.send_idle_ms * 6));
        s.set_read_timeout(Some(GENEROUS))?;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => return Err(e).context("reading the answers"),
            }
        }
        Ok(String::from_utf8_lossy(&got).matches("HTTP/1.1 200 OK").count())
    })
    .await??;
    assert!(
        received < ASKED,
        "all {ASKED} answers came: the gateway waited for the reader"
    );
    let (status, _) = admin_json(gw.admin, "GET", "/healthz", "").await?;
    assert_eq!(status, 200);
    Ok(())
}

/// The metrics-only listener (`metrics.listen`, the one meant for a scraper
/// on another host) handles its connections as the admin listener does: a
/// client that sends nothing or half a head is closed once the head bound
/// passes, and a scrape is still served.
#[tokio::test]
async fn the_metrics_listener_closes_a_stalled_client_too() -> Result<()> {
    let world = World::new().await?;
    let gw = world
        .gateway(|c| {
            c.admin_timeouts = BOUNDS;
            c.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
        })
        .await?;
    let addr = gw
        .running
        .as_ref()
        .and_then(|r| r.metrics_addr)
        .context("the metrics listener")?;
    let nothing = tokio::task::spawn_blocking(move || stall(addr, b"")).await??;
    assert_eq!(statuses(&nothing), Vec::<&str>::new(), "{nothing:?}");
    let half =
        tokio::task::spawn_blocking(move || stall(addr, b"GET /metrics HTTP/1.1\r\nhost: m")).await??;
    assert_eq!(statuses(&half), ["408"], "{half:?}");
    let scrape = tokio::task::spawn_blocking(move || {
        stall(
            addr,
            b"GET /metrics HTTP/1.1\r\nhost: m\r\nconnection: close\r\n\r\n",
        )
    })
    .await??;
    assert_eq!(statuses(&scrape), ["200"], "{scrape:?}");
    Ok(())
}

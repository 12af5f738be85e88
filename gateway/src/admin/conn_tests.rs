//! The bounds against handlers that take their time: a long handler and a
//! slow but steady client are served, a stalled one is not. A router of its
//! own (sleeping handlers) behind the same serve loop and body bound.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::{get, post};

use super::super::linger::{Linger, LingeringListener};
use super::super::timeouts::{bound_body, AdminTimeouts};
use super::*;

const BOUNDS: AdminTimeouts = AdminTimeouts {
    head_ms: 300,
    body_idle_ms: 300,
    body_ms: 5_000,
    send_idle_ms: 300,
    shutdown_grace_ms: 5_000,
};

/// Three times the head and idle bounds.
const LONG: Duration = Duration::from_millis(900);

async fn start() -> SocketAddr {
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(LONG).await;
                "done"
            }),
        )
        .route(
            "/echo",
            post(|body: Bytes| async move {
                tokio::time::sleep(LONG).await;
                body
            }),
        )
        .layer(axum::middleware::from_fn_with_state(BOUNDS, bound_body));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = LingeringListener::new(listener, Linger::ADMIN);
    tokio::spawn(serve(listener, app, BOUNDS, std::future::pending()));
    addr
}

/// Sends `pieces` with `gap` between them and returns everything read until the server closes.
fn exchange(addr: SocketAddr, pieces: &[&[u8]], gap: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(gap);
        }
        s.write_all(piece).unwrap();
    }
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

#[tokio::test]
async fn a_long_handler_is_not_cut_off() {
    let addr = start().await;
    let answer = tokio::task::spawn_blocking(move || {
        exchange(
            addr,
            &[b"GET /slow HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n"],
            Duration::ZERO,
        )
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("done"), "{answer}");
}

#[tokio::test]
async fn a_slow_steady_body_is_read_and_its_handler_runs_long() {
    let addr = start().await;
    // Six pieces 150 ms apart: the body takes 750 ms, over twice the idle
    // bound, with every gap within it; then the handler takes 900 ms.
    let head = b"POST /echo HTTP/1.1\r\nhost: a\r\nconnection: close\r\ncontent-length: 5\r\n\r\n";
    let answer = tokio::task::spawn_blocking(move || {
        exchange(
            addr,
            &[head, b"h", b"e", b"l", b"l", b"o"],
            Duration::from_millis(150),
        )
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("hello"), "{answer}");
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_and_closed() {
    let addr = start().await;
    let head = b"POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhe";
    let answer = tokio::task::spawn_blocking(move || exchange(addr, &[head], Duration::ZERO))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408 Request Timeout"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
}

#[tokio::test]
async fn a_body_past_its_whole_bound_is_answered_408() {
    let bounds = AdminTimeouts {
        body_ms: 400,
        ..BOUNDS
    };
    let app = Router::new()
        .route("/echo", post(|body: Bytes| async move { body }))
        .layer(axum::middleware::from_fn_with_state(bounds, bound_body));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        LingeringListener::new(listener, Linger::ADMIN),
        app,
        bounds,
        std::future::pending(),
    ));
    // Every gap within the idle bound, the whole past the body's.
    let head = b"POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 9\r\n\r\n";
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(head).unwrap();
        for _ in 0..9 {
            std::thread::sleep(Duration::from_millis(150));
            // The server may have answered and closed meanwhile.
            if s.write_all(b"x").is_err() {
                break;
            }
        }
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408 Request Timeout"), "{answer}");
}

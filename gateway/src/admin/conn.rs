//! The admin API's accept loop and connections: HTTP/1.1 served by hyper with
//! a bound on the time to receive each request's head, and a graceful stop
//! when the gateway shuts down.
//!
//! `axum::serve` cannot bound the head: it builds hyper's connection without
//! a timer, and hyper's `header_read_timeout` needs one (without it the bound
//! never applies), so a client that connected and sent nothing held its
//! connection for ever. hyper starts the bound when it begins reading a head:
//! at the connection's start and, on a kept-alive connection, after each
//! answer; it does not run while a handler runs or a body is read (those are
//! [`timeouts`](super::timeouts)' and the handler's). Past it hyper ends the
//! connection without an answer; this module then answers 408 if part of a
//! head had arrived. An answer's write that the client does not read is
//! bounded too ([`send`](super::send)).

use std::future::Future;
use std::pin::pin;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tracing::debug;

use super::linger::{LingeringListener, LingeringStream};
use super::send::SendBound;
use super::timeouts::AdminTimeouts;

/// The answer to a request whose head did not arrive in time. hyper has not
/// parsed it, so no handler (nor its JSON error body) is involved.
const HEAD_TIMED_OUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// Serves `app` on `listener` until `shutdown` completes; then stops
/// accepting and lets every connection finish its request in progress
/// (bounded like any other) before it closes.
pub(crate) async fn serve(
    mut listener: LingeringListener,
    app: Router,
    bounds: AdminTimeouts,
    shutdown: impl Future<Output = ()>,
) {
    let (stop, stopping) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let (io, _) = tokio::select! {
            // axum's accept loop: it retries, and backs off on errors such as
            // too many open files.
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = &mut shutdown => break,
        };
        tokio::spawn(connection(io, app.clone(), bounds, stopping.clone()));
    }
    // New connections are refused from here on.
    drop(listener);
    stop.send_replace(true);
}

/// Serves one connection until it ends, the head bound passes, or the
/// gateway stops (then after the request in progress).
async fn connection(
    io: LingeringStream,
    app: Router,
    bounds: AdminTimeouts,
    mut stopping: watch::Receiver<bool>,
) {
    let mut conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.head())
        .serve_connection(
            TokioIo::new(SendBound::new(io, bounds.send_idle())),
            TowerToHyperService::new(app),
        );
    let served = tokio::select! {
        served = &mut conn => served,
        // A closed channel (the loop is gone) stops too.
        () = async { drop(stopping.wait_for(|stop| *stop).await) } => {
            std::pin::Pin::new(&mut conn).graceful_shutdown();
            (&mut conn).await
        }
    };
    match served {
        Err(e) if e.is_timeout() => {
            let parts = conn.into_parts();
            if parts.read_buf.is_empty() {
                // Nothing of a request arrived: close without an answer.
                return;
            }
            debug!("admin API: a request head did not arrive in time; answering 408");
            let mut io = parts.io.into_inner();
            // The close lingers (`linger`), so a client still sending reads
            // the answer rather than a reset; a client that reads nothing
            // either cannot hold the connection past the head bound again.
            let answer = async {
                io.write_all(HEAD_TIMED_OUT).await?;
                io.shutdown().await
            };
            let _ = tokio::time::timeout(bounds.head(), answer).await;
        }
        Err(e) => debug!("admin API connection: {e}"),
        Ok(()) => {}
    }
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;

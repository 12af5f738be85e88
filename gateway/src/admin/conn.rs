//! The admin API's accept loop and connections: HTTP/1.1 served by hyper with
//! a bound on the time to receive each request's head, and a graceful stop
//! when the gateway shuts down.
//!
//! The stop is mini-redis's: on the shutdown signal the loop stops accepting,
//! tells every connection to finish (hyper's `graceful_shutdown`: the request
//! in progress is read, answered and the connection closed after it; an idle
//! one closes at once, without the lingering close, as no answer is being
//! sent), and waits for them, at most
//! [`shutdown_grace_ms`](super::AdminTimeouts::shutdown_grace_ms): past it the
//! connections still open are cut and a warning counts them. The gateway's
//! exit awaits this (`RunningGateway::wait`), so an operator's call in
//! progress at shutdown is answered, not cut by the process's exit.
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::Router;
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::linger::{LingerSkip, LingeringListener, LingeringStream};
use super::send::SendBound;
use super::timeouts::AdminTimeouts;

/// The answer to a request whose head did not arrive in time. hyper has not
/// parsed it, so no handler (nor its JSON error body) is involved.
const HEAD_TIMED_OUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// Serves `app` on `listener` until `shutdown` completes; then stops
/// accepting, lets every connection finish its request in progress (bounded
/// like any other) and close, and returns once all are closed or the shutdown
/// grace passed, cutting those still open.
pub(crate) async fn serve(
    mut listener: LingeringListener,
    app: Router,
    bounds: AdminTimeouts,
    shutdown: impl Future<Output = ()>,
) {
    let local = axum::serve::Listener::local_addr(&listener).ok();
    let (stop, stopping) = watch::channel(false);
    let mut open = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (io, _) = tokio::select! {
            // axum's accept loop: it retries, and backs off on errors such as
            // too many open files.
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            // Closed connections leave the set, which holds only open ones.
            Some(_) = open.join_next(), if !open.is_empty() => continue,
            () = &mut shutdown => break,
        };
        open.spawn(connection(io, app.clone(), bounds, stopping.clone()));
    }
    // New connections are refused from here on.
    drop(listener);
    stop.send_replace(true);
    let all_closed = async { while open.join_next().await.is_some() {} };
    if tokio::time::timeout(bounds.shutdown_grace(), all_closed)
        .await
        .is_err()
    {
        warn!(
            ?local,
            cut = open.len(),
            grace_ms = bounds.shutdown_grace_ms,
            "admin API: connections still open at the end of the shutdown grace were cut"
        );
        // Dropping a connection's task closes its socket.
        open.shutdown().await;
    }
}

/// Serves one connection until it ends, the head bound passes, or the
/// gateway stops (then after the request in progress).
async fn connection(
    io: LingeringStream,
    app: Router,
    bounds: AdminTimeouts,
    mut stopping: watch::Receiver<bool>,
) {
    let skip = io.linger_skip();
    let serving = Serving::default();
    let mut conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.head())
        .serve_connection(
            TokioIo::new(SendBound::new(io, bounds.send_idle())),
            serving.counting(app),
        );
    let served = tokio::select! {
        served = &mut conn => served,
        // A closed channel (the loop is gone) stops too.
        () = async { drop(stopping.wait_for(|stop| *stop).await) } => {
            serving.stop(&skip);
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

/// How many requests of a connection a handler is serving (hyper serves them
/// one at a time; a count keeps the guard simple).
#[derive(Clone, Default)]
struct Serving(Arc<AtomicUsize>);

impl Serving {
    /// `app` as hyper's service, counted while each answer is being made.
    fn counting(
        &self,
        app: Router,
    ) -> impl hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future: Send,
    > {
        let service = TowerToHyperService::new(app);
        let count = Arc::clone(&self.0);
        hyper::service::service_fn(move |req| {
            count.fetch_add(1, Ordering::AcqRel);
            let done = Done(Arc::clone(&count));
            let answer = service.call(req);
            async move {
                let answer = answer.await;
                drop(done);
                answer
            }
        })
    }

    /// At the stop: a connection with no request in progress closes without
    /// lingering (`linger::LingerSkip`), so an idle one does not hold the
    /// shutdown up.
    fn stop(&self, skip: &LingerSkip) {
        if self.0.load(Ordering::Acquire) == 0 {
            skip.skip();
        }
    }
}

/// Ends one count of [`Serving`] when its answer is made or dropped.
struct Done(Arc<AtomicUsize>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;

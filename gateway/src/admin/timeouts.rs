//! Time bounds of the admin API's requests (`[admin_timeouts]`), and the body
//! bound: a request body whose bytes stop arriving while a handler reads it is
//! answered 408 and its connection closed.
//!
//! Why: the admin listener serves the probes and `/metrics` to anyone who
//! reaches it, before any token check. Without bounds a client that connects
//! and sends nothing, sends a request head a byte a minute, or declares a body
//! (`Content-Length: 3000000`) and never sends it holds a connection, a task
//! and its buffers for ever, and many such clients grow the gateway's memory
//! without bound. The head bound is hyper's (`conn`), the answer's is the
//! stream's (`send`); the body bounds are here, since only the reader of a
//! body knows it is waiting for the client: a handler that runs long after reading its body (a region-wide inventory
//! audit) reads nothing more and is never cut off.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use serde::Deserialize;
use tokio::time::{Instant, Sleep};

use super::reply::ApiError;

/// How long the admin API waits for a client (`[admin_timeouts]`, in ms).
/// Past a bound the connection is closed, with a 408 answer where HTTP allows
/// one. Nothing bounds a handler's own time: it is the server's, not the
/// client's. The metrics-only listener (`metrics.listen`) uses the head and
/// send bounds too (it serves no request with a body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminTimeouts {
    /// Longest time to receive a request's head (request line and headers),
    /// from the connection's start or, on a kept-alive connection, from the
    /// end of the previous answer. Default 10,000: a head is a few hundred
    /// bytes, which any link an operator uses carries in well under a second,
    /// and an idle kept-alive connection is cheap to open again. Past it a
    /// connection that received part of a head is answered 408; one that
    /// received nothing is closed without an answer (RFC 9112 §9.5: an idle
    /// connection may be closed at any time; an unsolicited 408 would be read
    /// as the answer to the client's next request).
    pub head_ms: u64,
    /// Longest wait for the next bytes of a request body while a handler reads
    /// it. Default 30,000: a client that sent nothing for this long has
    /// stalled, not slowed (TCP retransmits within seconds).
    pub body_idle_ms: u64,
    /// Longest time to read a whole request body, from the handler's first
    /// read. Default 300,000: a body of the 2 MiB limit arrives within it at
    /// 7 KiB/s, slower than any operator's link, while a client dripping a
    /// byte just within `body_idle_ms` cannot hold the connection for days.
    pub body_ms: u64,
    /// Longest wait for the client to take more of an answer (its receive
    /// window full: it stopped reading). Default 30,000, as `body_idle_ms`.
    /// Past it the connection ends; the answer cannot be amended.
    pub send_idle_ms: u64,
    /// Longest wait, once the gateway shuts down, for the connections open
    /// then (`conn`): each answers the request in progress (an operator's
    /// region-wide audit, a backfill) and closes; idle ones close at once.
    /// Connections still open past it are cut, and a warning says how many.
    /// Default 10,000: the gateway's exit waits for whichever ends first, the
    /// requests in progress or this bound, and it runs beside the sessions'
    /// close, so a drain under the deploy kit's 30 s `drain.deadline_ms` still
    /// exits within the orchestrators' 45 s. Longer lets a longer operator
    /// call finish but holds the exit that long: keep `drain.deadline_ms` plus
    /// this under the orchestrator's kill deadline. An audit cut here is
    /// reported to its caller as a failed connection; run it again.
    pub shutdown_grace_ms: u64,
}

impl Default for AdminTimeouts {
    fn default() -> Self {
        AdminTimeouts {
            head_ms: 10_000,
            body_idle_ms: 30_000,
            body_ms: 300_000,
            send_idle_ms: 30_000,
            shutdown_grace_ms: 10_000,
        }
    }
}

impl AdminTimeouts {
    /// Every bound above 0, and the idle bound within the whole body's.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let bounds = [
            self.head_ms,
            self.body_idle_ms,
            self.body_ms,
            self.send_idle_ms,
            self.shutdown_grace_ms,
        ];
        if bounds.contains(&0) {
            return Err("admin_timeouts: every bound must be > 0".into());
        }
        if self.body_idle_ms > self.body_ms {
            return Err("admin_timeouts.body_idle_ms must not exceed body_ms".into());
        }
        Ok(())
    }

    pub(crate) fn head(&self) -> Duration {
        Duration::from_millis(self.head_ms)
    }

    pub(crate) fn send_idle(&self) -> Duration {
        Duration::from_millis(self.send_idle_ms)
    }

    pub(crate) fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    fn body_idle(&self) -> Duration {
        Duration::from_millis(self.body_idle_ms)
    }

    fn body(&self) -> Duration {
        Duration::from_millis(self.body_ms)
    }
}

/// The middleware (`axum::middleware::from_fn_with_state`): bounds the
/// request body's reading, and answers 408 with `Connection: close` when a
/// bound passed, whatever the handler made of the failed read.
pub(crate) async fn bound_body(State(bounds): State<AdminTimeouts>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    if body.is_end_stream() {
        // No body (most GETs): nothing to wait for.
        return next.run(Request::from_parts(parts, body)).await;
    }
    let expired = Arc::new(AtomicBool::new(false));
    let body = Body::new(Bounded {
        inner: body,
        bounds,
        waiting: None,
        whole: None,
        expired: Arc::clone(&expired),
    });
    let response = next.run(Request::from_parts(parts, body)).await;
    if !expired.load(Ordering::Acquire) {
        return response;
    }
    let mut response = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        "the request body stopped arriving; send it again on a new connection",
    )
    .into_response();
    // The rest of the body may still come: the request's framing is lost and
    // the connection ends after this answer (RFC 9110 §15.5.9).
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The error a [`Bounded`] body's read fails with once a bound passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body stopped arriving")]
struct BodyTimedOut;

/// A request body whose reads fail once a bound of [`AdminTimeouts`] passed
/// while its reader waited for the client.
struct Bounded {
    inner: Body,
    bounds: AdminTimeouts,
    /// While the reader waits: the end of the idle bound.
    waiting: Option<Pin<Box<Sleep>>>,
    /// From the first read: the end of the whole body's bound.
    whole: Option<Pin<Box<Sleep>>>,
    expired: Arc<AtomicBool>,
}

impl HttpBody for Bounded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let whole = this
            .whole
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(this.bounds.body())));
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                // Bytes came (or the end, or an error): the idle bound restarts
                // at the next wait. What arrived is passed on even past a
                // bound: only waiting is bounded.
                this.waiting = None;
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let idle = this.bounds.body_idle();
                let waiting = this
                    .waiting
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if whole.as_mut().poll(cx).is_pending() && waiting.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.expired.store(true, Ordering::Release);
                // Both bounds stay passed: a reader that asks again fails again.
                waiting.as_mut().reset(Instant::now());
                Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

//! `Connection: close` on an admin answer given before the request body was
//! read whole (RFC 9112 §9.6: a server that closes after a response SHOULD
//! say so in it).
//!
//! hyper does not keep a connection whose request body the service left
//! unread (401 from the token check, 413 over the body limit, 404, 405, a
//! handler that ignores the body): once the answer is written it reads what
//! is already buffered and, unless that was the rest of the body, closes.
//! It decides only after the answer's head is written, so the answer does not
//! say it, and a keep-alive client learned of the close from an I/O error on
//! its next request. This layer decides first, from whether the body was read
//! to its end, and says so; hyper then ends the connection after the answer
//! (through [`linger`](super::linger)). A small unread body that hyper would
//! have found buffered and skipped now ends the connection too: the answer
//! does not depend on how the client's bytes were split into packets.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::header::CONNECTION;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

/// The middleware (`axum::middleware::from_fn`): adds `Connection: close` to
/// the answer when the request had a body and it was not read to its end.
pub(crate) async fn close_if_body_unread(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    if body.is_end_stream() {
        // No body (most GETs): nothing can be left unread.
        return next.run(Request::from_parts(parts, body)).await;
    }
    let read = Arc::new(AtomicBool::new(false));
    let body = Body::new(Tracked {
        inner: body,
        read: Arc::clone(&read),
    });
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if !read.load(Ordering::Acquire) {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A request body that records when it was read to its end.
struct Tracked {
    inner: Body,
    read: Arc<AtomicBool>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        // The end: no more frames, or the last one (a reader that knows the
        // length may stop without asking again).
        let ended = match &frame {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => false,
        };
        if ended {
            this.read.store(true, Ordering::Release);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

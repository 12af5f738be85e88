//! Admin HTTP API, bound to loopback by default: Prometheus metrics, health,
//! readiness, drain and a status summary.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/healthz` | 200 `ok` while the process serves |
//! | GET | `/readyz` | 200 `ready`, or 503 `draining` once a drain began |
//! | GET | `/metrics` | Prometheus text exposition |
//! | GET | `/status` | JSON: region, live and admitted sessions, drain state, socket buffers |
//! | POST | `/drain` | 202: starts a graceful drain (idempotent) |

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;

use crate::server::GatewayHandle;

/// Binds the admin listener and serves it until the gateway shuts down.
pub async fn serve(addr: SocketAddr, handle: GatewayHandle) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let mut shutdown = handle.shutdown_signal();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/drain", post(drain))
        .with_state(handle);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.recv().await;
            })
            .await;
    });
    Ok(local)
}

async fn readyz(State(h): State<GatewayHandle>) -> impl IntoResponse {
    if h.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "ready")
    }
}

async fn metrics(State(h): State<GatewayHandle>) -> impl IntoResponse {
    h.refresh_gauges();
    (
        [("content-type", "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
}

async fn status(State(h): State<GatewayHandle>) -> impl IntoResponse {
    Json(h.status())
}

async fn drain(State(h): State<GatewayHandle>) -> impl IntoResponse {
    h.drain();
    (StatusCode::ACCEPTED, "draining")
}

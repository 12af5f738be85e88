//! The optional metrics listener (`metrics.listen`): a second HTTP listener
//! that serves only `GET /metrics`, the same text as the admin listener's, so a
//! Prometheus scraper can reach it without reaching the admin API. Every other
//! path is 404. No token: the metrics carry no secrets, only aggregate figures
//! (client versions and platforms as labels, never player ids).

use std::net::SocketAddr;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::admin::conn;
use crate::admin::linger::{Linger, LingeringListener};
use crate::admin::AdminTimeouts;
use crate::server::GatewayHandle;

/// Where Prometheus scrapes. `/metrics` is always served on `admin_listen`
/// (no token); `listen` adds a second listener that serves only `/metrics`.
///
/// Trade-offs: the admin listener stays on loopback or a private network
/// because it also serves drain, kicks and live-ops changes (behind the token,
/// over plain HTTP). A scraper on another host then either reaches the admin
/// port (and with it the admin API's surface) or needs this listener, which
/// exposes only aggregate figures: no player ids, but client versions and
/// platforms as labels, session counts, queue length and store health, which
/// you may still not want public. Put it on an address only the scraper
/// reaches (a pod IP, a private interface) and keep it off the internet; it
/// costs one more TCP port and a scrape renders the same text as the admin
/// `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// TCP address of the metrics-only listener, e.g. `"0.0.0.0:9434"`
    /// (env `OUTPOST_METRICS_LISTEN`). Default: none (off). Port 0 picks a
    /// free port. Must differ from `admin_listen`.
    pub listen: Option<SocketAddr>,
}

async fn metrics(State(h): State<GatewayHandle>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        super::scrape(&h).await,
    )
}

/// Binds `addr` and serves `/metrics` until the gateway shuts down, with the
/// admin listener's connection handling: `timeouts`' head and send bounds
/// (this listener is the one meant for other hosts, so a client that connects
/// and sends nothing, or stops reading, must not hold a connection for ever;
/// `GET /metrics` has no body, so the body bounds never apply) and a lingering
/// close. Returns the bound address and the serving task, which ends once the
/// scrapes in progress at shutdown are answered (`shutdown_grace_ms`).
pub async fn serve(
    addr: SocketAddr,
    handle: GatewayHandle,
    timeouts: AdminTimeouts,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let mut shutdown = handle.shutdown_signal();
    let app = Router::new().route("/metrics", get(metrics)).with_state(handle);
    let listener = LingeringListener::new(listener, Linger::ADMIN);
    let served = tokio::spawn(conn::serve(listener, app, timeouts, async move {
        let _ = shutdown.recv().await;
    }));
    Ok((local, served))
}

//! Admin HTTP API, bound to loopback by default and authenticated with the
//! admin token: Prometheus metrics, health, readiness, drain, status, player
//! operations, the inventory ledger's operator tools and live operations
//! (content, flags, rollouts, audit log). The `outpost-admin` CLI
//! ([`client`]) drives it.
//!
//! ## Authentication
//!
//! Every route answers only requests carrying `Authorization: Bearer <token>`
//! with the gateway's admin token, except `/healthz`, `/readyz` and `/metrics`:
//! load balancers, orchestrators' probes and Prometheus scrapers poll those
//! without credentials, and they change nothing. The trade-off: anyone who can
//! reach the admin port learns the gateway's liveness, drain state and
//! metrics (session counts, client error rates); keep `admin_listen` on
//! loopback or a private network. The token comes from `admin_token`
//! (`OUTPOST_ADMIN_TOKEN`), `admin_token_file`, or else `<data_dir>/admin.token`,
//! generated on first start (256 random bits, mode 0600) and reused ([`auth`]).
//! A missing or wrong token gets 401 `{"error":"unauthorized","message":...}`
//! before any handler runs (nothing happens), compared in constant time, and
//! is counted in `outpost_admin_unauthorized_total{reason="missing"|"malformed"|"wrong"}`.
//!
//! ## Errors
//!
//! Every error answer is JSON `{"error": code, "message": text, "field": path?}`
//! ([`reply`]). A malformed body (bad JSON, unknown field, wrong type, unknown
//! flag value type) is 400 `invalid_json` naming the field; a flag that breaks
//! a rule (percentage over 10,000 bp, empty client-version range, a value of
//! another type than the default, a bad key) is 400 `invalid_flag` with the
//! field, e.g. `rules[0].percentage_bp`. Nothing is written in either case:
//! neither the flag nor an audit record.
//!
//! ## Routes
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/healthz` | 200 `ok` while the process serves (no token) |
//! | GET | `/readyz` | 200 `ready`, or 503 `draining` once a drain began (no token) |
//! | GET | `/metrics` | Prometheus text exposition (no token) |
//! | GET | `/status` | JSON: region, live and admitted sessions, drain state, socket buffers, TLS certificate reloads |
//! | POST | `/drain` | 202: starts a graceful drain (idempotent) |
//! | POST | `/players/{player}/kick` | 200 if a live session was kicked (`KickedByOperator`), 404 if none |
//! | POST | `/players/{player}/transfer?to={region}` | 200 + the finished transfer record (JSON); 409/400/503 with the reason |
//! | GET | `/transfers/{id}` | 200 + the transfer record, 404 if unknown |
//! | GET | `/players/{player}/inventory/audit?region=` | 200 + JSON: the player's events folded and compared with their balances |
//! | GET | `/players/{player}/inventory/duplicates?region=` | 200 + JSON: repeated idempotency keys (count, first and last seen) |
//! | POST | `/players/{player}/inventory/correction?region=` | body `{"idempotency_key", "reason", "changes": [{"asset": {"kind", "id"}, "delta"}]}`: an operator's signed correction |
//! | POST | `/inventory/trade` | body `{"idempotency_key", "a": {"player", "gives": [{"asset", "amount"}]}, "b": {...}}`: an atomic trade between two players of this region, for trusted game services (clients cannot trade: no consent flow on the wire) |
//! | POST | `/inventory/audit?region=` | 200 + JSON summary of a streaming audit of every ledger of the region |
//! | POST | `/content?actor=` | body: a content manifest (JSON); publishes it (immutable, version must grow) |
//! | GET | `/content` | the latest manifest of every content id (JSON) |
//! | PUT | `/flags/{key}?actor=&expected_version=` | body: a flag (JSON); sets it (compare-and-set on version; 0 = must not exist) |
//! | GET | `/flags`, `/flags/{key}` | every flag / one flag with its version and last change (JSON) |
//! | POST | `/rollouts?actor=` | body: `{"flag", "rule", "plan"}`; starts a progressive rollout |
//! | GET | `/rollouts` | running rollouts (JSON) |
//! | POST | `/rollouts/{id}/kill?actor=`, `/rollouts/{id}/promote?actor=` | kill switch / manual promotion |
//! | GET | `/audit?target=&limit=` | the live-ops audit log: who changed what, when (JSON) |
//!
//! Every change made here is recorded with its `actor` (default `admin`) in
//! the audit log. The token authenticates the caller as an operator; `actor`
//! is what the operator says their name is (the CLI sends `$USER@host`).

pub mod auth;
pub mod client;
mod inventory;
mod live;
mod ops;
mod reply;

use std::net::SocketAddr;

use axum::routing::{get, post, put};
use axum::Router;
use tokio::net::TcpListener;
use tracing::warn;

pub use auth::AdminToken;

use crate::server::GatewayHandle;

/// Binds the admin listener and serves it until the gateway shuts down. Every
/// route but the probes and `/metrics` requires `token`.
pub async fn serve(
    addr: SocketAddr,
    handle: GatewayHandle,
    token: &AdminToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        warn!(%local, "the admin API listens beyond loopback: the token travels unencrypted; keep this port on a private network");
    }
    let mut shutdown = handle.shutdown_signal();
    let open = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics));
    let guarded = Router::new()
        .route("/status", get(ops::status))
        .route("/drain", post(ops::drain))
        .route("/players/{player}/kick", post(ops::kick))
        .route("/players/{player}/transfer", post(ops::transfer))
        .route("/transfers/{id}", get(ops::transfer_status))
        .route("/players/{player}/inventory/audit", get(inventory::player_audit))
        .route(
            "/players/{player}/inventory/duplicates",
            get(inventory::player_duplicates),
        )
        .route("/inventory/audit", post(inventory::region_audit))
        .route(
            "/players/{player}/inventory/correction",
            post(inventory::correction),
        )
        .route("/inventory/trade", post(inventory::trade))
        .route("/content", post(live::publish_content).get(live::list_content))
        .route("/flags", get(live::list_flags))
        .route("/flags/{key}", put(live::set_flag).get(live::get_flag))
        .route("/rollouts", post(live::start_rollout).get(live::list_rollouts))
        .route("/rollouts/{id}/kill", post(live::kill_rollout))
        .route("/rollouts/{id}/promote", post(live::promote_rollout))
        .route("/audit", get(live::audit_log))
        .route_layer(axum::middleware::from_fn_with_state(
            auth::TokenCheck::new(token),
            auth::require_token,
        ));
    let app = open.merge(guarded).with_state(handle);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.recv().await;
            })
            .await;
    });
    Ok(local)
}

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
//! | POST | `/players/{player}/kick` | 200 if a live session was kicked (`KickedByOperator`), 404 if none |
//! | POST | `/players/{player}/transfer?to={region}` | 200 + the finished transfer record (JSON); 409/400/503 with the reason |
//! | GET | `/transfers/{id}` | 200 + the transfer record, 404 if unknown |
//! | GET | `/players/{player}/inventory/audit?region=` | 200 + JSON: the player's events folded and compared with their balances |
//! | GET | `/players/{player}/inventory/duplicates?region=` | 200 + JSON: repeated idempotency keys (count, first and last seen) |
//! | POST | `/players/{player}/inventory/correction?region=` | body `{"idempotency_key", "reason", "changes": [{"asset": {"kind", "id"}, "delta"}]}`: an operator's signed correction |
//! | POST | `/inventory/trade` | body `{"idempotency_key", "a": {"player", "gives": [{"asset", "amount"}]}, "b": {...}}`: an atomic trade between two players of this region, for trusted game services (clients cannot trade: no consent flow on the wire) |
//! | POST | `/inventory/audit?region=` | 200 + JSON summary of a streaming audit of every ledger of the region |
//! | POST | `/content?actor=` | body: a content manifest (JSON); publishes it (immutable, version must grow) |
//! | PUT | `/flags/{key}?actor=&expected_version=` | body: a flag (JSON); sets it (compare-and-set on version) |
//! | POST | `/rollouts?actor=` | body: `{"flag", "rule", "plan"}`; starts a progressive rollout |
//! | GET | `/rollouts` | running rollouts (JSON) |
//! | POST | `/rollouts/{id}/kill?actor=`, `/rollouts/{id}/promote?actor=` | kill switch / manual promotion |
//! | GET | `/audit?target=` | the live-ops audit log: who changed what, when (JSON) |
//!
//! Every change made here is recorded with its `actor` in the audit log.

use std::net::SocketAddr;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;

use crate::server::GatewayHandle;
use outpost_backend::time::now_ms;

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
        .route("/players/{player}/kick", post(kick))
        .route("/players/{player}/transfer", post(transfer))
        .route("/transfers/{id}", get(transfer_status))
        .route("/players/{player}/inventory/audit", get(player_audit))
        .route("/players/{player}/inventory/duplicates", get(player_duplicates))
        .route("/inventory/audit", post(region_audit))
        .route(
            "/players/{player}/inventory/correction",
            post(inventory_correction),
        )
        .route("/inventory/trade", post(inventory_trade))
        .route("/content", post(publish_content))
        .route("/flags/{key}", axum::routing::put(set_flag))
        .route("/rollouts", post(start_rollout).get(list_rollouts))
        .route("/rollouts/{id}/kill", post(kill_rollout))
        .route("/rollouts/{id}/promote", post(promote_rollout))
        .route("/audit", get(audit_log))
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
    let mut body = crate::metrics::render();
    body.push_str(&h.live().render_metrics());
    body.push_str(&h.matchmaking_metrics().await);
    ([("content-type", "text/plain; version=0.0.4")], body)
}

async fn status(State(h): State<GatewayHandle>) -> impl IntoResponse {
    Json(h.status())
}

async fn drain(State(h): State<GatewayHandle>) -> impl IntoResponse {
    h.drain();
    (StatusCode::ACCEPTED, "draining")
}

async fn kick(State(h): State<GatewayHandle>, Path(player): Path<String>) -> impl IntoResponse {
    if h.kick(&player) {
        (StatusCode::OK, "kicked")
    } else {
        (
            StatusCode::NOT_FOUND,
            "no live session for that player on this gateway",
        )
    }
}

#[derive(Debug, serde::Deserialize)]
struct TransferQuery {
    to: String,
}

async fn transfer(
    State(h): State<GatewayHandle>,
    Path(player): Path<String>,
    Query(q): Query<TransferQuery>,
) -> axum::response::Response {
    match h.transfers().move_player(&player, &q.to).await {
        Ok(record) => Json(record).into_response(),
        Err(e) => (transfer_status_code(&e), e.to_string()).into_response(),
    }
}

async fn transfer_status(State(h): State<GatewayHandle>, Path(id): Path<String>) -> axum::response::Response {
    match h.transfers().status(&id).await {
        Ok(record) => Json(record).into_response(),
        Err(e) => (transfer_status_code(&e), e.to_string()).into_response(),
    }
}

/// Transfer errors as HTTP statuses (the admin API's one mapping).
fn transfer_status_code(e: &outpost_backend::transfer::TransferError) -> StatusCode {
    use outpost_backend::transfer::TransferError as E;
    match e {
        E::UnknownTransfer(_) | E::UnknownPlayer(_) => StatusCode::NOT_FOUND,
        E::SameRegion(_) | E::UnknownRegion(_) => StatusCode::BAD_REQUEST,
        E::AlreadyInProgress(_) | E::FenceConflict { .. } | E::UnexpectedStep { .. } => StatusCode::CONFLICT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

#[derive(Debug, serde::Deserialize)]
struct RegionQuery {
    region: Option<String>,
}

/// Runs a future that is not `Send` (the ledger's audits) on a blocking thread,
/// driven by the current runtime. Audits are long scans, so they belong off the
/// async workers anyway. `None` if it panicked.
async fn on_blocking_thread<T, F>(make: impl FnOnce() -> F + Send + 'static) -> Option<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = T>,
{
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || rt.block_on(make()))
        .await
        .ok()
}

fn audit_json(a: &outpost_backend::ledger::PlayerAudit) -> serde_json::Value {
    serde_json::json!({
        "player": a.player,
        "events": a.events,
        "assets": a.assets,
        "clean": a.is_clean(),
        "mismatches": a.mismatches.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>(),
    })
}

fn no_ledger() -> axum::response::Response {
    (StatusCode::NOT_FOUND, "region not reachable from this gateway").into_response()
}

async fn player_audit(
    State(h): State<GatewayHandle>,
    Path(player): Path<String>,
    Query(q): Query<RegionQuery>,
) -> axum::response::Response {
    let Some(ledger) = h.ledger(q.region.as_deref()) else {
        return no_ledger();
    };
    let Some(audit) = on_blocking_thread(move || async move { ledger.audit_player(&player).await }).await
    else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "audit panicked").into_response();
    };
    match audit {
        Ok(a) => Json(audit_json(&a)).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn player_duplicates(
    State(h): State<GatewayHandle>,
    Path(player): Path<String>,
    Query(q): Query<RegionQuery>,
) -> axum::response::Response {
    let Some(ledger) = h.ledger(q.region.as_deref()) else {
        return no_ledger();
    };
    match ledger.duplicates(&player).await {
        Ok(d) => Json(d).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

/// Streams through every ledger of the region (bounded memory); reports at most
/// 100 players with mismatches in full.
async fn region_audit(
    State(h): State<GatewayHandle>,
    Query(q): Query<RegionQuery>,
) -> axum::response::Response {
    let Some(ledger) = h.ledger(q.region.as_deref()) else {
        return no_ledger();
    };
    let Some(audit) = on_blocking_thread(move || async move { ledger.audit_region(100, |_| {}).await }).await
    else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "audit panicked").into_response();
    };
    match audit {
        Ok(r) => Json(serde_json::json!({
            "clean": r.is_clean(),
            "players": r.players,
            "clean_players": r.clean_players,
            "skipped_incoming": r.skipped_incoming,
            "events": r.events,
            "mismatches": r.mismatches,
            "reported": r.reported.iter().map(audit_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

#[derive(Debug, serde::Deserialize)]
struct ActorQuery {
    actor: Option<String>,
    expected_version: Option<u64>,
}

impl ActorQuery {
    fn actor(&self) -> &str {
        self.actor.as_deref().unwrap_or("admin")
    }
}

fn result<T: serde::Serialize, E: std::fmt::Display>(r: Result<T, E>) -> axum::response::Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn publish_content(
    State(h): State<GatewayHandle>,
    Query(q): Query<ActorQuery>,
    Json(manifest): Json<outpost_backend::content::ContentManifest>,
) -> axum::response::Response {
    result(h.live().content_service.publish(q.actor(), manifest).await)
}

async fn set_flag(
    State(h): State<GatewayHandle>,
    Path(key): Path<String>,
    Query(q): Query<ActorQuery>,
    Json(flag): Json<outpost_backend::flags::Flag>,
) -> axum::response::Response {
    if flag.key != key {
        return (StatusCode::BAD_REQUEST, "the body's key differs from the path's").into_response();
    }
    result(
        h.live()
            .flags_service
            .set_flag(q.actor(), flag, q.expected_version)
            .await,
    )
}

#[derive(Debug, serde::Deserialize)]
struct StartRollout {
    flag: String,
    rule: String,
    plan: outpost_backend::flags::RolloutPlan,
}

async fn start_rollout(
    State(h): State<GatewayHandle>,
    Query(q): Query<ActorQuery>,
    Json(body): Json<StartRollout>,
) -> axum::response::Response {
    result(
        h.live()
            .rollouts
            .start(q.actor(), &body.flag, &body.rule, body.plan, now_ms())
            .await,
    )
}

async fn list_rollouts(State(h): State<GatewayHandle>) -> axum::response::Response {
    result(h.live().rollouts.running().await)
}

async fn kill_rollout(
    State(h): State<GatewayHandle>,
    Path(id): Path<String>,
    Query(q): Query<ActorQuery>,
) -> axum::response::Response {
    result(
        h.live()
            .rollouts
            .kill(q.actor(), &id, now_ms())
            .await
            .map(|r| r.rollout),
    )
}

async fn promote_rollout(
    State(h): State<GatewayHandle>,
    Path(id): Path<String>,
    Query(q): Query<ActorQuery>,
) -> axum::response::Response {
    result(
        h.live()
            .rollouts
            .promote(q.actor(), &id, now_ms())
            .await
            .map(|r| r.rollout),
    )
}

#[derive(Debug, serde::Deserialize)]
struct AuditLogQuery {
    target: Option<String>,
}

async fn audit_log(
    State(h): State<GatewayHandle>,
    Query(q): Query<AuditLogQuery>,
) -> axum::response::Response {
    let query = outpost_backend::flags::audit::AuditQuery {
        target: q.target,
        after: None,
        limit: 0,
    };
    let entries = h.live().flags_service.audit(&query).await;
    result(entries.map(|v| v.into_iter().map(|e| e.record).collect::<Vec<_>>()))
}

fn receipt_json(o: &outpost_backend::ledger::Outcome) -> serde_json::Value {
    serde_json::json!({
        "event_id": o.receipt.event.to_string(),
        "idempotency_key": o.receipt.idempotency_key,
        "changes": o.receipt.changes,
        "at_ms": o.receipt.at_ms,
        "duplicate": o.duplicate,
    })
}

#[derive(Debug, serde::Deserialize)]
struct Correction {
    idempotency_key: String,
    reason: String,
    changes: Vec<outpost_backend::ledger::Change>,
}

async fn inventory_correction(
    State(h): State<GatewayHandle>,
    Path(player): Path<String>,
    Query(q): Query<RegionQuery>,
    Json(c): Json<Correction>,
) -> axum::response::Response {
    let Some(ledger) = h.ledger(q.region.as_deref()) else {
        return no_ledger();
    };
    match ledger
        .admin_correction(&player, &c.idempotency_key, &c.reason, &c.changes)
        .await
    {
        Ok(o) => Json(receipt_json(&o)).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

#[derive(Debug, serde::Deserialize)]
struct TradeParty {
    player: String,
    #[serde(default)]
    gives: Vec<outpost_backend::ledger::Quantity>,
}

#[derive(Debug, serde::Deserialize)]
struct Trade {
    idempotency_key: String,
    a: TradeParty,
    b: TradeParty,
}

async fn inventory_trade(State(h): State<GatewayHandle>, Json(t): Json<Trade>) -> axum::response::Response {
    let Some(ledger) = h.ledger(None) else {
        return no_ledger();
    };
    let mut sides = Vec::with_capacity(2);
    for p in [t.a, t.b] {
        match h.transfers().home_region(&p.player).await {
            Ok(home_region) => sides.push(outpost_backend::ledger::TradeSide {
                player: p.player,
                home_region,
                gives: p.gives,
            }),
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        }
    }
    match ledger.trade(&sides[0], &sides[1], &t.idempotency_key).await {
        Ok(o) => Json(receipt_json(&o)).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

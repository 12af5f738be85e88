//! Admin handlers for the inventory ledger: audits, duplicate reports,
//! operator corrections and trusted trades.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use outpost_backend::ledger::{Ledger, LedgerError};
use outpost_backend::store::AnyStore;

use super::reply::{ApiError, JsonBody, QueryOf};
use crate::server::GatewayHandle;

#[derive(Debug, serde::Deserialize)]
pub(super) struct RegionQuery {
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

fn ledger(h: &GatewayHandle, region: Option<&str>) -> Result<Ledger<AnyStore>, ApiError> {
    h.ledger(region).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_region",
            "region not reachable from this gateway",
        )
    })
}

fn ledger_error(e: LedgerError) -> ApiError {
    match e {
        LedgerError::Store(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e),
        e => ApiError::bad_request("rejected", e),
    }
}

fn panicked() -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "audit panicked")
}

pub(super) async fn player_audit(
    State(h): State<GatewayHandle>,
    Path(player): Path<String>,
    QueryOf(q): QueryOf<RegionQuery>,
) -> Result<Response, ApiError> {
    let ledger = ledger(&h, q.region.as_deref())?;
    let audit = on_blocking_thread(move || async move { ledger.audit_player(&player).await })
        .await
        .ok_or_else(panicked)?;
    Ok(Json(audit_json(&audit.map_err(ledger_error)?)).into_response())
}

pub(super) async fn player_duplicates(
    State(h): State<GatewayHandle>,
    Path(player): Path<String>,
    QueryOf(q): QueryOf<RegionQuery>,
) -> Result<Response, ApiError> {
    let ledger = ledger(&h, q.region.as_deref())?;
    let d = ledger.duplicates(&player).await.map_err(ledger_error)?;
    Ok(Json(d).into_response())
}

/// Streams through every ledger of the region (bounded memory); reports at most
/// 100 players with mismatches in full.
pub(super) async fn region_audit(
    State(h): State<GatewayHandle>,
    QueryOf(q): QueryOf<RegionQuery>,
) -> Result<Response, ApiError> {
    let ledger = ledger(&h, q.region.as_deref())?;
    let r = on_blocking_thread(move || async move { ledger.audit_region(100, |_| {}).await })
        .await
        .ok_or_else(panicked)?
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e))?;
    Ok(Json(serde_json::json!({
        "clean": r.is_clean(),
        "players": r.players,
        "clean_players": r.clean_players,
        "skipped_incoming": r.skipped_incoming,
        "events": r.events,
        "mismatches": r.mismatches,
        "reported": r.reported.iter().map(audit_json).collect::<Vec<_>>(),
    }))
    .into_response())
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
pub(super) struct Correction {
    idempotency_key: String,
    reason: String,
    changes: Vec<outpost_backend::ledger::Change>,
}

pub(super) async fn correction(
    State(h): State<GatewayHandle>,
    Path(player): Path<String>,
    QueryOf(q): QueryOf<RegionQuery>,
    JsonBody(c): JsonBody<Correction>,
) -> Result<Response, ApiError> {
    let ledger = ledger(&h, q.region.as_deref())?;
    let o = ledger
        .admin_correction(&player, &c.idempotency_key, &c.reason, &c.changes)
        .await
        .map_err(ledger_error)?;
    Ok(Json(receipt_json(&o)).into_response())
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct TradeParty {
    player: String,
    #[serde(default)]
    gives: Vec<outpost_backend::ledger::Quantity>,
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct Trade {
    idempotency_key: String,
    a: TradeParty,
    b: TradeParty,
}

pub(super) async fn trade(
    State(h): State<GatewayHandle>,
    JsonBody(t): JsonBody<Trade>,
) -> Result<Response, ApiError> {
    let ledger = ledger(&h, None)?;
    let mut sides = Vec::with_capacity(2);
    for p in [t.a, t.b] {
        let home_region = h
            .transfers()
            .home_region(&p.player)
            .await
            .map_err(|e| ApiError::bad_request("rejected", e))?;
        sides.push(outpost_backend::ledger::TradeSide {
            player: p.player,
            home_region,
            gives: p.gives,
        });
    }
    let o = ledger
        .trade(&sides[0], &sides[1], &t.idempotency_key)
        .await
        .map_err(ledger_error)?;
    Ok(Json(receipt_json(&o)).into_response())
}

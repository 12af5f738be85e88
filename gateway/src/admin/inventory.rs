//! Admin handlers for the inventory ledger: audits, duplicate reports,
//! operator corrections and trusted trades.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use outpost_backend::ledger::{Ledger, LedgerError};
use outpost_backend::store::AnyStore;

use super::reply::{class_error, ApiError, ClassAnswers, ErrorBody, JsonBody, QueryOf};
use super::schemas;
use crate::server::GatewayHandle;

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct RegionQuery {
    /// The region whose ledger to use (default: this gateway's region).
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

/// One player's inventory audit: their events folded and compared with their
/// balances.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(super) struct PlayerAuditBody {
    player: String,
    /// Events folded.
    events: u64,
    /// Distinct assets seen (in events or balances).
    assets: usize,
    /// No mismatch.
    clean: bool,
    /// Every inconsistency found, described for a person (not a stable format).
    mismatches: Vec<String>,
}

fn audit_json(a: &outpost_backend::ledger::PlayerAudit) -> PlayerAuditBody {
    PlayerAuditBody {
        player: a.player.clone(),
        events: a.events,
        assets: a.assets,
        clean: a.is_clean(),
        mismatches: a.mismatches.iter().map(|m| format!("{m:?}")).collect(),
    }
}

/// The summary of a region's inventory audit.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(super) struct RegionAuditBody {
    /// No mismatch anywhere.
    clean: bool,
    /// Players audited.
    players: u64,
    /// Players with no mismatch.
    clean_players: u64,
    /// Players skipped because a transfer is copying them into the region.
    skipped_incoming: u64,
    /// Events folded.
    events: u64,
    /// Mismatches found (all players).
    mismatches: u64,
    /// The audits of the first 100 players with mismatches.
    reported: Vec<PlayerAuditBody>,
}

/// What an applied (or replayed) correction or trade did.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(super) struct ReceiptBody {
    /// The acting player's ledger event (for a trade, side `a`'s).
    event_id: String,
    idempotency_key: String,
    /// The acting player's balance changes.
    #[schema(value_type = Vec<schemas::Change>)]
    changes: Vec<outpost_backend::ledger::Change>,
    /// Unix milliseconds.
    at_ms: u64,
    /// The idempotency key was applied before: this is the original receipt and
    /// nothing changed now.
    duplicate: bool,
}

/// The 404 of an unknown `region`.
const UNKNOWN_REGION: &str = "`unknown_region`: the region is not reachable from this gateway";

fn ledger(h: &GatewayHandle, region: Option<&str>) -> Result<Ledger<AnyStore>, ApiError> {
    h.ledger(region).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_region",
            "region not reachable from this gateway",
        )
    })
}

/// Ledger errors by class: refusals 400 `rejected`, store failures 503
/// `store_unavailable`, internal errors (a corrupt record, a bad catalog) 500
/// `internal`.
fn ledger_error(e: LedgerError) -> ApiError {
    class_error(e, &ClassAnswers::REJECTED)
}

fn panicked() -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "audit panicked")
}

/// Folds the player's ledger events and compares them with their balances.
#[utoipa::path(get, path = "/players/{player}/inventory/audit", tag = "inventory",
    params(("player" = String, Path, description = "The player id"), RegionQuery),
    responses(
        (status = 200, description = "The audit", body = PlayerAuditBody),
        (status = 400, description = "`rejected` (bad player id) or `invalid_query`", body = ErrorBody),
        (status = 404, description = UNKNOWN_REGION, body = ErrorBody),
        (status = 500, description = "`internal`: the audit panicked, or a stored record does not decode (generic message with a correlation id; the error is in the gateway log)", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ))]
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

/// The player's repeated idempotency keys: how often each request was sent
/// again after it was applied.
#[utoipa::path(get, path = "/players/{player}/inventory/duplicates", tag = "inventory",
    params(("player" = String, Path, description = "The player id"), RegionQuery),
    responses(
        (status = 200, description = "The repeated keys", body = Vec<schemas::DuplicateRecord>),
        (status = 400, description = "`rejected` (bad player id) or `invalid_query`", body = ErrorBody),
        (status = 404, description = UNKNOWN_REGION, body = ErrorBody),
        (status = 500, description = "`internal`: a stored record does not decode (generic message with a correlation id; the error is in the gateway log)", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ))]
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
#[utoipa::path(post, path = "/inventory/audit", tag = "inventory",
    params(RegionQuery),
    responses(
        (status = 200, description = "The region's audit", body = RegionAuditBody),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 404, description = UNKNOWN_REGION, body = ErrorBody),
        (status = 500, description = "`internal`: the audit panicked, or a stored record does not decode (generic message with a correlation id; the error is in the gateway log)", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store failed", body = ErrorBody),
    ))]
pub(super) async fn region_audit(
    State(h): State<GatewayHandle>,
    QueryOf(q): QueryOf<RegionQuery>,
) -> Result<Response, ApiError> {
    let ledger = ledger(&h, q.region.as_deref())?;
    let r = on_blocking_thread(move || async move { ledger.audit_region(100, |_| {}).await })
        .await
        .ok_or_else(panicked)?
        .map_err(|e| class_error(e, &ClassAnswers::BY_STATUS))?;
    Ok(Json(RegionAuditBody {
        clean: r.is_clean(),
        players: r.players,
        clean_players: r.clean_players,
        skipped_incoming: r.skipped_incoming,
        events: r.events,
        mismatches: r.mismatches,
        reported: r.reported.iter().map(audit_json).collect(),
    })
    .into_response())
}

fn receipt_json(o: &outpost_backend::ledger::Outcome) -> ReceiptBody {
    ReceiptBody {
        event_id: o.receipt.event.to_string(),
        idempotency_key: o.receipt.idempotency_key.clone(),
        changes: o.receipt.changes.clone(),
        at_ms: o.receipt.at_ms,
        duplicate: o.duplicate,
    }
}

/// An operator's correction of a player's balances.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub(super) struct Correction {
    /// Makes retries safe: a key already applied returns the first receipt.
    idempotency_key: String,
    /// Why (recorded with the event).
    reason: String,
    #[schema(value_type = Vec<schemas::Change>)]
    changes: Vec<outpost_backend::ledger::Change>,
}

/// Applies an operator's signed correction to the player's balances.
#[utoipa::path(post, path = "/players/{player}/inventory/correction", tag = "inventory",
    params(("player" = String, Path, description = "The player id"), RegionQuery),
    request_body = Correction,
    responses(
        (status = 200, description = "The receipt (`duplicate`: applied before)", body = ReceiptBody),
        (status = 400, description = "`invalid_json`, `invalid_body`, `invalid_query`, or `rejected` by the ledger (a balance would go negative or over its ceiling, unknown asset, ...)", body = ErrorBody),
        (status = 413, description = "`invalid_body`: the body is over 2 MiB", body = ErrorBody),
        (status = 404, description = UNKNOWN_REGION, body = ErrorBody),
        (status = 500, description = "`internal`: a stored record does not decode (generic message with a correlation id; the error is in the gateway log)", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ))]
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

/// One side of a trade.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub(super) struct TradeParty {
    player: String,
    /// What this player gives the other (may be empty: a gift).
    #[serde(default)]
    #[schema(value_type = Vec<schemas::Quantity>)]
    gives: Vec<outpost_backend::ledger::Quantity>,
}

/// An atomic trade between two players of this gateway's region.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub(super) struct Trade {
    /// In `a`'s namespace: a key already applied returns the first receipt.
    idempotency_key: String,
    /// The acting player (the receipt is theirs).
    a: TradeParty,
    b: TradeParty,
}

/// An atomic trade between two players of this region, for trusted game
/// services (clients cannot trade: there is no consent flow on the wire).
#[utoipa::path(post, path = "/inventory/trade", tag = "inventory",
    request_body = Trade,
    responses(
        (status = 200, description = "The receipt (`duplicate`: applied before)", body = ReceiptBody),
        (status = 400, description = "`invalid_json`, `invalid_body`, or `rejected` (unknown player, a player of another region, not enough to give, ...)", body = ErrorBody),
        (status = 413, description = "`invalid_body`: the body is over 2 MiB", body = ErrorBody),
        (status = 404, description = UNKNOWN_REGION, body = ErrorBody),
        (status = 500, description = "`internal`: a stored record does not decode (generic message with a correlation id; the error is in the gateway log)", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ))]
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
            .map_err(|e| class_error(e, &ClassAnswers::REJECTED))?;
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

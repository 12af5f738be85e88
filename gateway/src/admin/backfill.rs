//! Admin handlers for matchmaking backfill: a game server whose match lost
//! players asks for replacements (backend `matchmaker::backfill`). Requests
//! live in the region's matchmaking pool, so any gateway of the region answers
//! for any request; the region's matchmaker workers fill them before forming
//! new matches, and each backfilled player gets a `MatchFound` push naming the
//! existing match (PROTOCOL.md, matchmaking channel).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use outpost_backend::matchmaker::backfill::DEFAULT_TTL_MS;
use outpost_backend::matchmaker::{
    BackfillError, BackfillId, BackfillRecord, BackfillRequest, BackfillState, MatchId,
};

use super::reply::{class_error, reply, ApiError, ClassAnswers, ErrorBody, JsonBody};
use crate::server::GatewayHandle;

/// A backfill request's body.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BackfillBody {
    /// Open seats per team, in the match's team order (as in `MatchFound`):
    /// one entry per team, each at most the team size, at least one seat.
    slots: Vec<u32>,
    /// Lifetime, milliseconds (1,000..=600,000; default 60,000). Once it has
    /// passed the request is never filled.
    #[serde(default)]
    ttl_ms: Option<u64>,
    /// Players who left the match and are being replaced (player ids as in
    /// `MatchFound`; optional, at most 200, distinct, each a player of the
    /// match). The fill takes them off the match's teams in the same
    /// transaction that adds the replacements, so the match record (and the
    /// `MatchFound` pushed to the replacements) lists the match as it is.
    #[serde(default)]
    leaving: Vec<String>,
}

/// A backfill request and where it is in its life.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(super) struct BackfillView {
    /// The request id (16 hex characters).
    id: String,
    /// The match in progress (32 hex characters).
    match_id: String,
    queue: String,
    /// The region the match is played in.
    region: String,
    /// Open seats per team, as asked.
    slots: Vec<u32>,
    /// `open`, `filled`, `cancelled` or `expired` (all but `open` final).
    state: String,
    created_ms: u64,
    expires_ms: u64,
    /// The tickets placed (16 hex characters each), once filled.
    tickets: Vec<String>,
    /// The players named as leaving (taken off the match's teams by the fill).
    leaving: Vec<String>,
}

fn view(r: &BackfillRecord) -> BackfillView {
    BackfillView {
        id: r.request.id.to_string(),
        match_id: r.request.match_id.to_string(),
        queue: r.request.queue.clone(),
        region: r.request.region.clone(),
        slots: r.request.slots.clone(),
        state: match r.state {
            BackfillState::Open => "open",
            BackfillState::Filled => "filled",
            BackfillState::Cancelled => "cancelled",
            BackfillState::Expired => "expired",
        }
        .into(),
        created_ms: r.request.created_ms,
        expires_ms: r.expires_ms,
        tickets: r.tickets.iter().map(|t| t.to_string()).collect(),
        leaving: r.leaving.clone(),
    }
}

fn error(e: BackfillError) -> ApiError {
    match e {
        BackfillError::Invalid(m) => ApiError::bad_request("invalid_backfill", m),
        BackfillError::InvalidLeaving(m) => ApiError::bad_request("invalid_leaving", m),
        BackfillError::MatchNotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "match_not_found", e),
        BackfillError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", e),
        BackfillError::TooMany { .. } => ApiError::new(StatusCode::CONFLICT, "too_many_backfills", e),
        BackfillError::AlreadyFilled(_) => ApiError::new(StatusCode::CONFLICT, "backfill_filled", e),
        e => class_error(e, &ClassAnswers::BY_STATUS),
    }
}

fn parse<T: std::str::FromStr>(s: &str, len: usize, what: &str) -> Result<T, ApiError> {
    let ok = s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| s.parse().ok())
        .flatten()
        .ok_or_else(|| ApiError::bad_request("invalid_id", format!("{what} must be {len} hex characters")))
}

/// Asks for replacement players for a match in progress (a game server whose
/// players left). The region's matchmaker fills the request before forming
/// new matches, whole (every seat) or not at all, from waiting tickets whose
/// skill window reaches the match's mean rating; each placed player gets a
/// `MatchFound` push naming this match. The optional `leaving` list names the
/// players being replaced: the fill takes them off the match's teams in the
/// same transaction, so the match's roster lists who is in it now. Bounded: 4
/// open requests per match, 10,000 per region pool, 200 leaving players.
#[utoipa::path(post, path = "/matches/{id}/backfill", tag = "matchmaking",
    params(("id" = String, Path, description = "The match id (32 hex characters)")),
    request_body = BackfillBody,
    responses(
        (status = 201, description = "The request, `open`", body = BackfillView),
        (status = 400, description = "`invalid_json`, `invalid_body`, `invalid_id` (match id not 32 hex characters), `invalid_backfill` (slots not one per team, over the team size or all zero; ttl_ms out of range), `invalid_leaving` (leaving names more than 200 players, a player twice, or a player not in the match)", body = ErrorBody),
        (status = 404, description = "`match_not_found`: no such match in this region's pool", body = ErrorBody),
        (status = 409, description = "`too_many_backfills`: the match or the pool has too many open requests", body = ErrorBody),
        (status = 500, description = "`internal`: a stored record does not decode (generic message with a correlation id)", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store failed", body = ErrorBody),
    ))]
pub(super) async fn create(
    State(h): State<GatewayHandle>,
    Path(match_id): Path<String>,
    JsonBody(b): JsonBody<BackfillBody>,
) -> Response {
    let match_id: MatchId = match parse(&match_id, 32, "match_id") {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    // The lifetime's bounds are checked by the matchmaker (`invalid_backfill`).
    let req = BackfillRequest {
        match_id,
        slots: b.slots,
        ttl_ms: b.ttl_ms.unwrap_or(DEFAULT_TTL_MS),
        leaving: b.leaving,
    };
    match h.matchmaker().create_backfill(req).await {
        Ok(r) => (StatusCode::CREATED, Json(view(&r))).into_response(),
        Err(e) => error(e).into_response(),
    }
}

/// A backfill request (an `open` one past its lifetime reads `expired`).
#[utoipa::path(get, path = "/backfills/{id}", tag = "matchmaking",
    params(("id" = String, Path, description = "The backfill request id (16 hex characters)")),
    responses(
        (status = 200, description = "The request", body = BackfillView),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store failed", body = ErrorBody),
    ))]
pub(super) async fn get(State(h): State<GatewayHandle>, Path(id): Path<String>) -> Response {
    let id: BackfillId = match parse(&id, 16, "id") {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    match h.matchmaker().backfill(id).await {
        Ok(Some(r)) => Json(view(&r)).into_response(),
        Ok(None) => error(BackfillError::NotFound(id)).into_response(),
        Err(e) => error(e).into_response(),
    }
}

/// Cancels an open backfill request (idempotent: a cancelled or expired one
/// is answered as it is); it is then never filled.
#[utoipa::path(delete, path = "/backfills/{id}", tag = "matchmaking",
    params(("id" = String, Path, description = "The backfill request id (16 hex characters)")),
    responses(
        (status = 200, description = "The request, `cancelled` (or `expired`)", body = BackfillView),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`backfill_filled`: it was already filled", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store failed", body = ErrorBody),
    ))]
pub(super) async fn cancel(State(h): State<GatewayHandle>, Path(id): Path<String>) -> Response {
    let id: BackfillId = match parse(&id, 16, "id") {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    reply(h.matchmaker().cancel_backfill(id).await.map(|r| view(&r)), error)
}

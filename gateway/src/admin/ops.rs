//! Admin handlers for the gateway process itself: probes, metrics, status,
//! drain, kicks and cross-region transfers.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::reply::{class_error, reply, ApiError, ClassAnswers, ErrorBody, QueryOf};
use super::schemas::TransferRecord;
use crate::server::{GatewayHandle, Status};
use outpost_backend::error_class::Classify;

/// Liveness probe.
#[utoipa::path(get, path = "/healthz", tag = "probes",
    responses((status = 200, description = "The process serves", body = String, content_type = "text/plain", example = "ok")))]
pub(super) async fn healthz() -> &'static str {
    "ok"
}

/// Readiness probe: not ready once a drain began.
#[utoipa::path(get, path = "/readyz", tag = "probes",
    responses(
        (status = 200, description = "Ready", body = String, content_type = "text/plain", example = "ready"),
        (status = 503, description = "A drain began", body = String, content_type = "text/plain", example = "draining"),
    ))]
pub(super) async fn readyz(State(h): State<GatewayHandle>) -> impl IntoResponse {
    if h.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "ready")
    }
}

/// Prometheus text exposition: sessions, logins, frames refused, client
/// telemetry, matchmaking, TLS reloads, admin refusals.
#[utoipa::path(get, path = "/metrics", tag = "probes",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain; version=0.0.4")))]
pub(super) async fn metrics(State(h): State<GatewayHandle>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        crate::metrics::scrape(&h).await,
    )
}

/// The gateway's region, sessions, drain state, socket buffers and TLS reloads.
#[utoipa::path(get, path = "/status", tag = "gateway",
    responses((status = 200, description = "The gateway's status", body = Status)))]
pub(super) async fn status(State(h): State<GatewayHandle>) -> impl IntoResponse {
    Json(h.status())
}

/// Starts a graceful drain (idempotent): logins are refused, sessions get a
/// GoAway spread over the drain window, the gateway stops once empty or at the
/// deadline. SIGTERM does the same.
#[utoipa::path(post, path = "/drain", tag = "gateway",
    responses((status = 202, description = "Draining", body = String, content_type = "text/plain", example = "draining")))]
pub(super) async fn drain(State(h): State<GatewayHandle>) -> impl IntoResponse {
    h.drain();
    (StatusCode::ACCEPTED, "draining")
}

/// Kicks the player's session on whichever gateway of the region holds it
/// (`KickedByOperator`) and revokes its resume tokens everywhere, including a
/// session that is disconnected but still resumable (PROTOCOL.md §3.4).
#[utoipa::path(post, path = "/players/{player}/kick", tag = "gateway",
    params(("player" = String, Path, description = "The player id")),
    responses(
        (status = 200, description = "Kicked (or a resumable session revoked)", body = String, content_type = "text/plain", example = "kicked"),
        (status = 404, description = "`not_found`: no live or resumable session for that player", body = ErrorBody),
        (status = 500, description = "`internal`: a stored record does not decode (generic message with a correlation id; the error is in the gateway log)", body = ErrorBody),
        (status = 503, description = "`unavailable`: the global store (presence) cannot be reached", body = ErrorBody),
    ))]
pub(super) async fn kick(State(h): State<GatewayHandle>, Path(player): Path<String>) -> Response {
    match h.kick(&player).await {
        Ok(true) => (StatusCode::OK, "kicked").into_response(),
        Ok(false) => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no live or resumable session for that player",
        )
        .into_response(),
        Err(e) if e.class().is_retryable() => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("cannot reach presence in the global store: {e}"),
        )
        .into_response(),
        Err(e) => class_error(e, &ClassAnswers::BY_STATUS).into_response(),
    }
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct TransferQuery {
    /// The destination region.
    to: String,
}

/// Moves the player's home to another region and waits for the transfer to
/// finish (fence, copy, switch home, clear the source, lift the fence).
#[utoipa::path(post, path = "/players/{player}/transfer", tag = "gateway",
    params(("player" = String, Path, description = "The player id"), TransferQuery),
    responses(
        (status = 200, description = "The finished transfer", body = TransferRecord),
        (status = 400, description = "`invalid_transfer` (same or unknown region) or `invalid_query` (no `to`)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown player", body = ErrorBody),
        (status = 403, description = "`forbidden`: the player's identity refused the move", body = ErrorBody),
        (status = 409, description = "`conflict`: a transfer of the player is in progress, or a fence conflict", body = ErrorBody),
        (status = 500, description = "`internal`: a stored record does not decode (generic message with a correlation id; the error is in the gateway log)", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store failed; the transfer resumes later", body = ErrorBody),
    ))]
pub(super) async fn transfer(
    State(h): State<GatewayHandle>,
    Path(player): Path<String>,
    QueryOf(q): QueryOf<TransferQuery>,
) -> Response {
    reply(h.transfers().move_player(&player, &q.to).await, transfer_error)
}

/// A transfer's record.
#[utoipa::path(get, path = "/transfers/{id}", tag = "gateway",
    params(("id" = String, Path, description = "The transfer id (32 hex characters)")),
    responses(
        (status = 200, description = "The transfer", body = TransferRecord),
        (status = 404, description = "`not_found`: unknown transfer", body = ErrorBody),
        (status = 500, description = "`internal`: a stored record does not decode (generic message with a correlation id; the error is in the gateway log)", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store failed", body = ErrorBody),
    ))]
pub(super) async fn transfer_status(State(h): State<GatewayHandle>, Path(id): Path<String>) -> Response {
    reply(h.transfers().status(&id).await, transfer_error)
}

/// Transfer errors as HTTP statuses: by class, except an unknown region,
/// which is documented as a 400 `invalid_transfer` like the same region.
fn transfer_error(e: outpost_backend::transfer::TransferError) -> ApiError {
    use outpost_backend::transfer::TransferError as E;
    const TRANSFER: ClassAnswers = ClassAnswers {
        invalid: (StatusCode::BAD_REQUEST, "invalid_transfer"),
        ..ClassAnswers::BY_STATUS
    };
    match e {
        E::UnknownRegion(_) => ApiError::bad_request("invalid_transfer", e),
        e => class_error(e, &TRANSFER),
    }
}

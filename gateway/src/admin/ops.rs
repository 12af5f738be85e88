//! Admin handlers for the gateway process itself: probes, metrics, status,
//! drain, kicks and cross-region transfers.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::reply::{reply, ApiError, QueryOf};
use crate::server::GatewayHandle;

pub(super) async fn readyz(State(h): State<GatewayHandle>) -> impl IntoResponse {
    if h.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "ready")
    }
}

pub(super) async fn metrics(State(h): State<GatewayHandle>) -> impl IntoResponse {
    h.refresh_gauges();
    let mut body = crate::metrics::render();
    body.push_str(&h.live().render_metrics());
    body.push_str(&h.matchmaking_metrics().await);
    ([("content-type", "text/plain; version=0.0.4")], body)
}

pub(super) async fn status(State(h): State<GatewayHandle>) -> impl IntoResponse {
    Json(h.status())
}

pub(super) async fn drain(State(h): State<GatewayHandle>) -> impl IntoResponse {
    h.drain();
    (StatusCode::ACCEPTED, "draining")
}

pub(super) async fn kick(State(h): State<GatewayHandle>, Path(player): Path<String>) -> Response {
    match h.kick(&player).await {
        Ok(true) => (StatusCode::OK, "kicked").into_response(),
        Ok(false) => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no live or resumable session for that player",
        )
        .into_response(),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("cannot reach presence in the global store: {e}"),
        )
        .into_response(),
    }
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct TransferQuery {
    to: String,
}

pub(super) async fn transfer(
    State(h): State<GatewayHandle>,
    Path(player): Path<String>,
    QueryOf(q): QueryOf<TransferQuery>,
) -> Response {
    reply(h.transfers().move_player(&player, &q.to).await, transfer_error)
}

pub(super) async fn transfer_status(State(h): State<GatewayHandle>, Path(id): Path<String>) -> Response {
    reply(h.transfers().status(&id).await, transfer_error)
}

/// Transfer errors as HTTP statuses (the admin API's one mapping).
fn transfer_error(e: outpost_backend::transfer::TransferError) -> ApiError {
    use outpost_backend::transfer::TransferError as E;
    let (status, code) = match &e {
        E::UnknownTransfer(_) | E::UnknownPlayer(_) => (StatusCode::NOT_FOUND, "not_found"),
        E::SameRegion(_) | E::UnknownRegion(_) => (StatusCode::BAD_REQUEST, "invalid_transfer"),
        E::AlreadyInProgress(_) | E::FenceConflict { .. } | E::UnexpectedStep { .. } => {
            (StatusCode::CONFLICT, "conflict")
        }
        _ => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    ApiError::new(status, code, e)
}

//! Admin handlers for the region's login queue (PROTOCOL.md 3.7): its status
//! and the live admission budget (raise it as capacity comes up, pause
//! admission in an incident). The budget lives in the region keyspace, so a
//! change at any gateway is live at every gateway of the region.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use outpost_backend::queue::Budget;
use serde::{Deserialize, Serialize};

use super::reply::{ApiError, ErrorBody, JsonBody};
use crate::server::GatewayHandle;

/// The region's admission budget.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueueBudget {
    /// Maximum slots in use in the region (sessions, admitted places not yet
    /// taken, re-entry reservations).
    pub max_sessions: u32,
    /// Maximum admissions per second, region-wide.
    pub max_admissions_per_sec: u32,
    /// Admission paused: logins queue, nobody is admitted.
    pub paused: bool,
}

/// The queue as this gateway last read it, and the budget in force.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct QueueStatus {
    pub budget: QueueBudget,
    /// Places waiting in the region.
    pub queue_length: u64,
    /// Slots in use in the region.
    pub slots_used: u64,
    /// Admissions so far (region counter).
    pub admissions_total: u64,
    /// Places that expired because their holder did not come back.
    pub abandoned_total: u64,
}

fn disabled() -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "queue_disabled",
        "the login queue is not enabled on this gateway",
    )
    .into_response()
}

fn status_of(h: &GatewayHandle) -> Option<QueueStatus> {
    let rq = h.queue()?;
    let snap = rq.snapshot.borrow().clone();
    let v = &snap.view;
    Some(QueueStatus {
        budget: QueueBudget {
            max_sessions: v.budget.max_sessions,
            max_admissions_per_sec: v.budget.max_admissions_per_sec,
            paused: v.budget.paused,
        },
        queue_length: v.len() as u64,
        slots_used: v.used,
        admissions_total: v.admissions_total,
        abandoned_total: v.abandoned_total,
    })
}

/// The login queue's status (as of this gateway's last read, at most one
/// update interval old) and the budget in force.
#[utoipa::path(get, path = "/queue", tag = "gateway",
    responses(
        (status = 200, description = "The queue's status", body = QueueStatus),
        (status = 404, description = "`queue_disabled`", body = ErrorBody),
    ))]
pub(super) async fn get_queue(State(h): State<GatewayHandle>) -> Response {
    match status_of(&h) {
        Some(s) => Json(s).into_response(),
        None => disabled(),
    }
}

/// Replaces the region's admission budget, live for every gateway of the
/// region. Lowering it kicks nobody; it only stops admission until enough
/// sessions end.
#[utoipa::path(put, path = "/queue", tag = "gateway",
    request_body = QueueBudget,
    responses(
        (status = 200, description = "The budget now in force", body = QueueBudget),
        (status = 400, description = "`invalid_json`, `invalid_body`", body = ErrorBody),
        (status = 404, description = "`queue_disabled`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ))]
pub(super) async fn put_queue(
    State(h): State<GatewayHandle>,
    JsonBody(b): JsonBody<QueueBudget>,
) -> Response {
    let Some(rq) = h.queue() else { return disabled() };
    let budget = Budget {
        max_sessions: b.max_sessions,
        max_admissions_per_sec: b.max_admissions_per_sec,
        paused: b.paused,
        updated_ms: 0,
    };
    match rq.queue.set_budget(budget, outpost_backend::time::now_ms()).await {
        Ok(_) => Json(b).into_response(),
        Err(e) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e).into_response(),
    }
}

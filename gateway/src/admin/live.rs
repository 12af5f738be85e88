//! Admin handlers for live operations: content manifests, feature flags,
//! progressive rollouts and the audit log. Validation is the backend's
//! ([`Flag::validate`](outpost_backend::flags::Flag::validate), the rollout
//! plan's, the manifest's); this layer only maps its typed errors to answers.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use outpost_backend::audit::{AuditError, AuditQuery};
use outpost_backend::content::{ContentError, ContentManifest};
use outpost_backend::flags::{Flag, FlagError, RolloutError, RolloutPlan};
use outpost_backend::time::now_ms;

use super::reply::{reply, ApiError, JsonBody, QueryOf};
use crate::server::GatewayHandle;

#[derive(Debug, serde::Deserialize)]
pub(super) struct ActorQuery {
    actor: Option<String>,
    expected_version: Option<u64>,
}

impl ActorQuery {
    fn actor(&self) -> &str {
        self.actor.as_deref().unwrap_or("admin")
    }
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e)
}

fn corrupt(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "corrupt", e)
}

fn flag_error(e: FlagError) -> ApiError {
    match e {
        FlagError::InvalidFlag { ref field, .. } => {
            let field = field.clone();
            ApiError::bad_request("invalid_flag", e).field(field)
        }
        FlagError::VersionConflict { .. } => ApiError::bad_request("version_conflict", e),
        FlagError::RolloutActive { .. } => ApiError::bad_request("rollout_active", e),
        FlagError::InvalidActor => ApiError::bad_request("invalid_actor", e).field("actor"),
        FlagError::Store(_) => unavailable(e),
        FlagError::Corrupt(_) => corrupt(e),
        e => ApiError::bad_request("rejected", e),
    }
}

fn rollout_error(e: RolloutError) -> ApiError {
    match e {
        RolloutError::InvalidPlan(_) => ApiError::bad_request("invalid_plan", e).field("plan"),
        RolloutError::FlagNotFound(_) => ApiError::bad_request("flag_not_found", e).field("flag"),
        RolloutError::RuleNotFound { .. } => ApiError::bad_request("rule_not_found", e).field("rule"),
        RolloutError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", e),
        RolloutError::InvalidActor => ApiError::bad_request("invalid_actor", e).field("actor"),
        RolloutError::Store(_) => unavailable(e),
        RolloutError::Corrupt(_) => corrupt(e),
        e => ApiError::bad_request("rejected", e),
    }
}

fn content_error(e: ContentError) -> ApiError {
    match e {
        ContentError::InvalidManifest(_) => ApiError::bad_request("invalid_manifest", e),
        ContentError::InvalidActor => ApiError::bad_request("invalid_actor", e).field("actor"),
        ContentError::Store(_) => unavailable(e),
        ContentError::Corrupt(_) => corrupt(e),
        e => ApiError::bad_request("rejected", e),
    }
}

fn audit_error(e: AuditError) -> ApiError {
    match e {
        AuditError::Store(_) => unavailable(e),
        e => ApiError::bad_request("rejected", e),
    }
}

pub(super) async fn publish_content(
    State(h): State<GatewayHandle>,
    QueryOf(q): QueryOf<ActorQuery>,
    JsonBody(manifest): JsonBody<ContentManifest>,
) -> Response {
    reply(
        h.live().content_service.publish(q.actor(), manifest).await,
        content_error,
    )
}

pub(super) async fn list_content(State(h): State<GatewayHandle>) -> Response {
    reply(h.live().content_service.list().await, content_error)
}

pub(super) async fn set_flag(
    State(h): State<GatewayHandle>,
    Path(key): Path<String>,
    QueryOf(q): QueryOf<ActorQuery>,
    JsonBody(flag): JsonBody<Flag>,
) -> Response {
    if flag.key != key {
        return ApiError::bad_request(
            "invalid_flag",
            format!(
                "key: the body's key {:?} differs from the path's {key:?}",
                flag.key
            ),
        )
        .field("key")
        .into_response();
    }
    reply(
        h.live()
            .flags_service
            .set_flag(q.actor(), flag, q.expected_version)
            .await,
        flag_error,
    )
}

pub(super) async fn get_flag(State(h): State<GatewayHandle>, Path(key): Path<String>) -> Response {
    match h.live().flags_service.get_flag(&key).await {
        Ok(Some(record)) => Json(record).into_response(),
        Ok(None) => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no flag {key:?}")).into_response()
        }
        Err(e) => flag_error(e).into_response(),
    }
}

pub(super) async fn list_flags(State(h): State<GatewayHandle>) -> Response {
    reply(h.live().flags_service.list().await, flag_error)
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StartRollout {
    flag: String,
    rule: String,
    plan: RolloutPlan,
}

pub(super) async fn start_rollout(
    State(h): State<GatewayHandle>,
    QueryOf(q): QueryOf<ActorQuery>,
    JsonBody(body): JsonBody<StartRollout>,
) -> Response {
    reply(
        h.live()
            .rollouts
            .start(q.actor(), &body.flag, &body.rule, body.plan, now_ms())
            .await,
        rollout_error,
    )
}

pub(super) async fn list_rollouts(State(h): State<GatewayHandle>) -> Response {
    reply(h.live().rollouts.running().await, rollout_error)
}

pub(super) async fn kill_rollout(
    State(h): State<GatewayHandle>,
    Path(id): Path<String>,
    QueryOf(q): QueryOf<ActorQuery>,
) -> Response {
    let r = h.live().rollouts.kill(q.actor(), &id, now_ms()).await;
    reply(r.map(|r| r.rollout), rollout_error)
}

pub(super) async fn promote_rollout(
    State(h): State<GatewayHandle>,
    Path(id): Path<String>,
    QueryOf(q): QueryOf<ActorQuery>,
) -> Response {
    let r = h.live().rollouts.promote(q.actor(), &id, now_ms()).await;
    reply(r.map(|r| r.rollout), rollout_error)
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct AuditLogQuery {
    target: Option<String>,
    #[serde(default)]
    limit: usize,
}

pub(super) async fn audit_log(
    State(h): State<GatewayHandle>,
    QueryOf(q): QueryOf<AuditLogQuery>,
) -> Response {
    let query = AuditQuery {
        target: q.target,
        after: None,
        limit: q.limit,
    };
    let entries = h.live().flags_service.audit(&query).await;
    reply(
        entries.map(|v| v.into_iter().map(|e| e.record).collect::<Vec<_>>()),
        audit_error,
    )
}

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

use super::reply::{class_error, reply, ApiError, ClassAnswers, ErrorBody, JsonBody, QueryOf};
use super::schemas;
use crate::server::GatewayHandle;

/// Who makes a change (recorded in the audit log) and, for `PUT /flags/{key}`,
/// the version the change is based on.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ActorQuery {
    /// Who makes the change, for the audit log (default `admin`; the CLI sends
    /// `$USER@host`).
    actor: Option<String>,
    /// `PUT /flags/{key}` only: compare-and-set on the stored version (0: the
    /// flag must not exist yet); absent: unconditional.
    expected_version: Option<u64>,
}

/// `actor` alone, for the routes that take no `expected_version`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Describes the query string only; the handlers decode `ActorQuery`.
pub(super) struct ActorOnly {
    /// Who makes the change, for the audit log (default `admin`; the CLI sends
    /// `$USER@host`).
    actor: Option<String>,
}

impl ActorQuery {
    fn actor(&self) -> &str {
        self.actor.as_deref().unwrap_or("admin")
    }
}

/// Refusals 400 `rejected`, store failures 503 `store_unavailable`, a
/// corrupt record 500 `corrupt` (generic message, correlation id).
const LIVE: ClassAnswers = ClassAnswers {
    internal: "corrupt",
    ..ClassAnswers::REJECTED
};

fn flag_error(e: FlagError) -> ApiError {
    match e {
        FlagError::InvalidFlag { ref field, .. } => {
            let field = field.clone();
            ApiError::bad_request("invalid_flag", e).field(field)
        }
        FlagError::VersionConflict { .. } => ApiError::bad_request("version_conflict", e),
        FlagError::RolloutActive { .. } => ApiError::bad_request("rollout_active", e),
        FlagError::InvalidActor => ApiError::bad_request("invalid_actor", e).field("actor"),
        e => class_error(e, &LIVE),
    }
}

fn rollout_error(e: RolloutError) -> ApiError {
    match e {
        RolloutError::InvalidPlan(_) => ApiError::bad_request("invalid_plan", e).field("plan"),
        RolloutError::FlagNotFound(_) => ApiError::bad_request("flag_not_found", e).field("flag"),
        RolloutError::RuleNotFound { .. } => ApiError::bad_request("rule_not_found", e).field("rule"),
        RolloutError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", e),
        RolloutError::InvalidActor => ApiError::bad_request("invalid_actor", e).field("actor"),
        e => class_error(e, &LIVE),
    }
}

fn content_error(e: ContentError) -> ApiError {
    match e {
        ContentError::InvalidManifest(_) => ApiError::bad_request("invalid_manifest", e),
        ContentError::InvalidActor => ApiError::bad_request("invalid_actor", e).field("actor"),
        e => class_error(e, &LIVE),
    }
}

fn audit_error(e: AuditError) -> ApiError {
    class_error(e, &LIVE)
}

/// Publishes a content manifest (immutable; each publish of an id needs a higher
/// version).
#[utoipa::path(post, path = "/content", tag = "live-ops",
    params(ActorOnly),
    request_body = schemas::ContentManifest,
    responses(
        (status = 200, description = "Published", body = schemas::PublishedManifest),
        (status = 400, description = "`invalid_json`, `invalid_body`, `invalid_query`, `invalid_manifest`, `invalid_actor`, or `rejected` (the version does not grow, ...)", body = ErrorBody),
        (status = 413, description = "`invalid_body`: the body is over 2 MiB", body = ErrorBody),
        (status = 500, description = "`corrupt`: a stored record does not decode (generic message with a correlation id; the error is in the gateway log)", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ))]
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

/// The latest manifest of every content id.
#[utoipa::path(get, path = "/content", tag = "live-ops",
    responses(
        (status = 200, description = "The latest manifests", body = Vec<schemas::PublishedManifest>),
        (status = 500, description = "`corrupt`: a stored record does not decode (generic message with a correlation id; the error is in the gateway log)", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ))]
pub(super) async fn list_content(State(h): State<GatewayHandle>) -> Response {
    reply(h.live().content_service.list().await, content_error)
}

/// Creates or replaces a flag (its key must be the path's), optionally
/// compare-and-set on its version.
#[utoipa::path(put, path = "/flags/{key}", tag = "live-ops",
    params(("key" = String, Path, description = "The flag key"), ActorQuery),
    request_body = schemas::Flag,
    responses(
        (status = 200, description = "The stored flag with its new version", body = schemas::FlagRecord),
        (status = 400, description = "`invalid_json` / `invalid_flag` (with `field`), `version_conflict`, `rollout_active`, `invalid_actor`, `invalid_body`, `invalid_query`", body = ErrorBody),
        (status = 413, description = "`invalid_body`: the body is over 2 MiB", body = ErrorBody),
        (status = 500, description = "`corrupt`: a stored record does not decode (generic message with a correlation id; the error is in the gateway log)", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ))]
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

/// One flag with its version and last change.
#[utoipa::path(get, path = "/flags/{key}", tag = "live-ops",
    params(("key" = String, Path, description = "The flag key")),
    responses(
        (status = 200, description = "The flag", body = schemas::FlagRecord),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 500, description = "`corrupt`: a stored record does not decode (generic message with a correlation id; the error is in the gateway log)", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ))]
pub(super) async fn get_flag(State(h): State<GatewayHandle>, Path(key): Path<String>) -> Response {
    match h.live().flags_service.get_flag(&key).await {
        Ok(Some(record)) => Json(record).into_response(),
        Ok(None) => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no flag {key:?}")).into_response()
        }
        Err(e) => flag_error(e).into_response(),
    }
}

/// Every flag with its version and last change.
#[utoipa::path(get, path = "/flags", tag = "live-ops",
    responses(
        (status = 200, description = "Every flag", body = Vec<schemas::FlagRecord>),
        (status = 500, description = "`corrupt`: a stored record does not decode (generic message with a correlation id; the error is in the gateway log)", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ))]
pub(super) async fn list_flags(State(h): State<GatewayHandle>) -> Response {
    reply(h.live().flags_service.list().await, flag_error)
}

/// A progressive rollout of one rule of one flag.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct StartRollout {
    /// The flag's key.
    flag: String,
    /// The id of the rule whose `percentage_bp` the rollout drives.
    rule: String,
    #[schema(value_type = schemas::RolloutPlan)]
    plan: RolloutPlan,
}

/// Starts a progressive rollout and applies its first stage.
#[utoipa::path(post, path = "/rollouts", tag = "live-ops",
    params(ActorOnly),
    request_body = StartRollout,
    responses(
        (status = 200, description = "The rollout", body = schemas::Rollout),
        (status = 400, description = "`invalid_json`, `invalid_plan`, `flag_not_found`, `rule_not_found`, `invalid_actor`, `invalid_body`, `invalid_query`, or `rejected` (a rollout already drives the flag, ...)", body = ErrorBody),
        (status = 413, description = "`invalid_body`: the body is over 2 MiB", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 500, description = "`corrupt`: a stored record does not decode (generic message with a correlation id; the error is in the gateway log)", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ))]
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

/// The running rollouts.
#[utoipa::path(get, path = "/rollouts", tag = "live-ops",
    responses(
        (status = 200, description = "Running rollouts", body = Vec<schemas::Rollout>),
        (status = 500, description = "`corrupt`: a stored record does not decode (generic message with a correlation id; the error is in the gateway log)", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ))]
pub(super) async fn list_rollouts(State(h): State<GatewayHandle>) -> Response {
    reply(h.live().rollouts.running().await, rollout_error)
}

/// The kill switch: stops the rollout and sets its rule back to 0 %.
#[utoipa::path(post, path = "/rollouts/{id}/kill", tag = "live-ops",
    params(("id" = String, Path, description = "The rollout id"), ActorOnly),
    responses(
        (status = 200, description = "The rollout after the kill", body = schemas::Rollout),
        (status = 400, description = "`invalid_actor`, `invalid_query`, or `rejected` (the rollout is over, ...)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown rollout", body = ErrorBody),
        (status = 500, description = "`corrupt`: a stored record does not decode (generic message with a correlation id; the error is in the gateway log)", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ))]
pub(super) async fn kill_rollout(
    State(h): State<GatewayHandle>,
    Path(id): Path<String>,
    QueryOf(q): QueryOf<ActorQuery>,
) -> Response {
    let r = h.live().rollouts.kill(q.actor(), &id, now_ms()).await;
    reply(r.map(|r| r.rollout), rollout_error)
}

/// Manual promotion: moves the rollout to its next stage now.
#[utoipa::path(post, path = "/rollouts/{id}/promote", tag = "live-ops",
    params(("id" = String, Path, description = "The rollout id"), ActorOnly),
    responses(
        (status = 200, description = "The rollout after the promotion", body = schemas::Rollout),
        (status = 400, description = "`invalid_actor`, `invalid_query`, or `rejected` (the rollout is over, ...)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown rollout", body = ErrorBody),
        (status = 500, description = "`corrupt`: a stored record does not decode (generic message with a correlation id; the error is in the gateway log)", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ))]
pub(super) async fn promote_rollout(
    State(h): State<GatewayHandle>,
    Path(id): Path<String>,
    QueryOf(q): QueryOf<ActorQuery>,
) -> Response {
    let r = h.live().rollouts.promote(q.actor(), &id, now_ms()).await;
    reply(r.map(|r| r.rollout), rollout_error)
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditLogQuery {
    /// Only records of this target (`flag:<key>`, `rollout:<id>`, `content:<id>`, `segment:<name>`).
    target: Option<String>,
    /// Most records (0 or absent: the server's maximum page, 1000).
    #[serde(default)]
    limit: usize,
}

/// The live-ops audit log, oldest first: who changed what, when.
#[utoipa::path(get, path = "/audit", tag = "live-ops",
    params(AuditLogQuery),
    responses(
        (status = 200, description = "Audit records", body = Vec<schemas::AuditRecord>),
        (status = 400, description = "`invalid_query` or `rejected`", body = ErrorBody),
        (status = 500, description = "`corrupt`: a stored record does not decode (generic message with a correlation id; the error is in the gateway log)", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ))]
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

//! Admin HTTP API, bound to loopback by default and authenticated with the
//! admin token: Prometheus metrics, health, readiness, drain, status, player
//! operations, the inventory ledger's operator tools and live operations
//! (content, flags, rollouts, audit log). The `outpost-admin` CLI
//! ([`client`]) drives it.
//!
//! The reference (every route's method, parameters, request and answer bodies,
//! errors and authentication) is the OpenAPI 3.1 document generated from this
//! code ([`openapi`]): served at `GET /openapi.json` and checked in as
//! `docs/admin-openapi.json`. The table below is the summary.
//!
//! ## Authentication
//!
//! Every route answers only requests carrying `Authorization: Bearer <token>`
//! with the gateway's admin token, except `/healthz`, `/readyz` and `/metrics`
//! (and `/openapi.json`, below): load balancers, orchestrators' probes and
//! Prometheus scrapers poll those without credentials, and they change
//! nothing. The trade-off: anyone who can reach the admin port learns the
//! gateway's liveness, drain state and metrics (session counts, client error
//! rates); keep `admin_listen` on loopback or a private network. The token comes from `admin_token`
//! (`OUTPOST_ADMIN_TOKEN`), `admin_token_file`, or else `<data_dir>/admin.token`,
//! generated on first start (256 random bits, mode 0600) and reused ([`auth`]).
//! A missing or wrong token gets 401 `{"error":"unauthorized","message":...}`
//! before any handler runs (nothing happens), compared in constant time, and
//! is counted in `outpost_admin_unauthorized_total{reason="missing"|"malformed"|"wrong"}`.
//!
//! `/openapi.json` needs no token either: the document is the same for every
//! gateway of a version (it is in the repository), holds no secret and no
//! deployment detail, and tools that render or check it can fetch it without
//! being handed the token.
//!
//! ## Errors
//!
//! Every error answer is JSON `{"error": code, "message": text, "field": path?}`
//! (`reply`). A malformed body (bad JSON, unknown field, wrong type, unknown
//! flag value type) is 400 `invalid_json` naming the field; a flag that breaks
//! a rule (percentage over 10,000 bp, empty client-version range, a value of
//! another type than the default, a bad key) is 400 `invalid_flag` with the
//! field, e.g. `rules[0].percentage_bp`. Nothing is written in either case:
//! neither the flag nor an audit record.
//!
//! An answer given before the request body was read whole (401 from the
//! token check, 413 over the 2 MiB body limit, 404, 405) ends the connection
//! and says so with `Connection: close` (`unread`); the connection lingers on
//! close (`linger`) so a client still uploading reads the answer rather than
//! a reset.
//!
//! ## Time bounds
//!
//! A client cannot hold a connection by stalling (`[admin_timeouts]`,
//! [`AdminTimeouts`]; the probes and `/metrics` are served here before any
//! token check, so anyone who reaches the port could). A request's head
//! (request line and headers) must arrive within 10 s of the connection's
//! start or, kept alive, of the previous answer (`conn`): past it a
//! connection that received part of a head is answered 408, one that
//! received nothing is closed without an answer. A request body being read
//! must not pause for more than 30 s, nor take more than 300 s whole
//! (`timeouts`): past either the answer is 408 `request_timeout` with
//! `Connection: close`. An answer the client stops reading for 30 s ends the
//! connection (`send`). A handler's own time is not bounded: a region-wide
//! audit that runs for minutes after reading its request is not cut off.
//! At shutdown the listener stops accepting and the requests in progress are
//! answered before the process exits, for at most `shutdown_grace_ms`
//! (default 10 s; `conn`); idle connections close at once.
//! There is no cap on concurrent connections: one that bounded memory would
//! let stalling clients fill it and starve the orchestrator's probes.
//!
//! Other backend errors are answered by their class
//! (`reply::class_error`): a store failure is 503 with `Retry-After`; an
//! internal error (a stored record that does not decode) is 500 whose message
//! is generic and ends in `(ref <16 hex digits>)`, a correlation id under which
//! the gateway logged the actual error.
//!
//! ## Routes
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/healthz` | 200 `ok` while the process serves (no token) |
//! | GET | `/readyz` | 200 `ready`, or 503 `draining` once a drain began (no token) |
//! | GET | `/metrics` | Prometheus text exposition (no token) |
//! | GET | `/openapi.json` | this API's OpenAPI 3.1 document (no token) |
//! | GET | `/status` | JSON: region, live and admitted sessions, drain state, socket buffers, TLS certificate reloads |
//! | POST | `/drain` | 202: starts a graceful drain (idempotent) |
//! | POST | `/players/{player}/kick` | 200 if a session was kicked on any gateway of the region or a resumable one revoked (`KickedByOperator`), 404 if none, 503 if presence is unreachable |
//! | POST | `/players/{player}/transfer?to={region}` | 200 + the finished transfer record (JSON); 400/403/404/409/500/503 with the reason |
//! | GET | `/transfers/{id}` | 200 + the transfer record, 404 if unknown |
//! | GET | `/queue` | the region login queue: budget in force, length, slots used, admissions, abandoned places (JSON); 404 `queue_disabled` when off |
//! | PUT | `/queue` | body `{"max_sessions", "max_admissions_per_sec", "paused"}`: replaces the region's admission budget, live at every gateway |
//! | POST | `/matches/{id}/backfill` | body `{"slots": [per team], "ttl_ms"?}`: a game server asks for replacement players for a match in progress; 201 + the request (JSON); filled before new matches, each placed player pushed `MatchFound` naming the match |
//! | GET | `/backfills/{id}` | 200 + a backfill request (`open`, `filled`, `cancelled`, `expired`), 404 if unknown |
//! | DELETE | `/backfills/{id}` | cancels an open backfill request (idempotent: the same answer again); 409 `backfill_filled` once filled |
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
mod backfill;
pub mod client;
pub(crate) mod conn;
mod inventory;
pub(crate) mod linger;
mod live;
pub mod openapi;
mod ops;
mod queue;
mod reply;
mod schemas;
mod send;
mod timeouts;
mod unread;

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::warn;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::AdminToken;
pub use timeouts::AdminTimeouts;

use crate::server::GatewayHandle;

/// Binds the admin listener and serves it until the gateway shuts down. Every
/// route but the probes, `/metrics` and `/openapi.json` requires `token`;
/// `timeouts` bound the wait for each request's head and body, and the wait
/// at shutdown for the requests in progress. Returns the bound address and
/// the serving task, which ends once those requests are answered (`conn`).
pub async fn serve(
    addr: SocketAddr,
    handle: GatewayHandle,
    token: &AdminToken,
    timeouts: AdminTimeouts,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        warn!(%local, "the admin API listens beyond loopback: the token travels unencrypted; keep this port on a private network");
    }
    let mut shutdown = handle.shutdown_signal();
    let (open, guarded) = route_table();
    let guarded = guarded.route_layer(axum::middleware::from_fn_with_state(
        auth::TokenCheck::new(token),
        auth::require_token,
    ));
    let (app, _) = open.merge(guarded).split_for_parts();
    // The body bound's 408 replaces whatever a handler made of the failed
    // read. `unread` is outermost, so it sees every answer: the token check's,
    // the router's 404 and 405, the handlers' and the 408.
    let app = app
        .layer(axum::extract::DefaultBodyLimit::max(reply::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            timeouts,
            timeouts::bound_body,
        ))
        .layer(axum::middleware::from_fn(unread::close_if_body_unread))
        .with_state(handle);
    // Connections linger on close, so a client still uploading a body that was
    // answered early (401, 413, 408, ...) reads the answer instead of a reset.
    let listener = linger::LingeringListener::new(listener, linger::Linger::ADMIN);
    let served = tokio::spawn(conn::serve(listener, app, timeouts, async move {
        let _ = shutdown.recv().await;
    }));
    Ok((local, served))
}

/// Every admin route, each registered with its OpenAPI description: those open
/// to anyone and those behind the token. It builds both the served `Router`
/// ([`serve`]) and the document ([`openapi::document`]), so the two cannot
/// drift; add routes here only through `.routes(routes!(...))`.
fn route_table() -> (OpenApiRouter<GatewayHandle>, OpenApiRouter<GatewayHandle>) {
    let open = OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(openapi::openapi_json));
    let guarded = OpenApiRouter::new()
        .routes(routes!(ops::status))
        .routes(routes!(ops::drain))
        .routes(routes!(ops::kick))
        .routes(routes!(ops::transfer))
        .routes(routes!(ops::transfer_status))
        .routes(routes!(queue::get_queue, queue::put_queue))
        .routes(routes!(backfill::create))
        .routes(routes!(backfill::get, backfill::cancel))
        .routes(routes!(inventory::player_audit))
        .routes(routes!(inventory::player_duplicates))
        .routes(routes!(inventory::region_audit))
        .routes(routes!(inventory::correction))
        .routes(routes!(inventory::trade))
        .routes(routes!(live::publish_content, live::list_content))
        .routes(routes!(live::list_flags))
        .routes(routes!(live::set_flag, live::get_flag))
        .routes(routes!(live::start_rollout, live::list_rollouts))
        .routes(routes!(live::kill_rollout))
        .routes(routes!(live::promote_rollout))
        .routes(routes!(live::audit_log));
    (open, guarded)
}

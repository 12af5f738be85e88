//! The admin API's OpenAPI 3.1 document, generated from the code: every route
//! comes from the route table (`route_table` in `admin/mod.rs`), which also
//! builds the axum `Router` (utoipa-axum registers a handler and its
//! `#[utoipa::path]` description together), so a route cannot be served
//! without being in the document. Authentication is not annotated by hand either: every operation of
//! the table's guarded half gets the bearer requirement and the 401 answer here,
//! from the same router that puts the token check in front of it.
//!
//! Served at `GET /openapi.json` without a token (see the module doc of
//! [`super`]) and checked in as `docs/admin-openapi.json`; a test fails when the
//! two differ, and CI validates the file with `openapi-spec-validator`.
//! Regenerate it with
//! `cargo run -p outpost-gateway --bin outpost-admin -- openapi > docs/admin-openapi.json`.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::OpenApi as _;

use super::reply::ErrorBody;

/// The security scheme's name in the document.
const SCHEME: &str = "admin_token";
/// The shared 401 answer's name in the document's components.
const UNAUTHORIZED: &str = "Unauthorized";
/// The shared 408 answer's name in the document's components.
const REQUEST_TIMEOUT: &str = "RequestTimeout";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Outpost gateway admin API",
        description = "The admin HTTP API of an Outpost gateway (default 127.0.0.1:9433; keep it \
on loopback or a private network). Every route needs `Authorization: Bearer <admin token>` \
except `/healthz`, `/readyz`, `/metrics` (probes and scrapers) and `/openapi.json` (this \
document: the same for every gateway of a version, and it holds no secret); a missing or \
wrong token is answered 401 before anything happens. Every error answer is JSON \
`ErrorBody`. Changes are recorded in the live-ops audit log under the `actor` query \
parameter (default `admin`). Generated from the gateway's code (`gateway/src/admin/`)."
    ),
    tags(
        (name = "probes", description = "Health, readiness and metrics: no token"),
        (name = "docs", description = "This document: no token"),
        (name = "gateway", description = "Status, drain, kicks and cross-region transfers"),
        (name = "matchmaking", description = "Backfill: game servers ask for replacement players for a match in progress"),
        (name = "inventory", description = "The inventory ledger's operator tools"),
        (name = "live-ops", description = "Content manifests, feature flags, rollouts and their audit log"),
    ),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// This document (OpenAPI 3.1, JSON).
#[utoipa::path(get, path = "/openapi.json", tag = "docs",
    responses((status = 200, description = "The admin API's OpenAPI document", body = Object, content_type = "application/json")))]
pub(super) async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document_json())
}

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    let (open, guarded) = super::route_table();
    let mut guarded = guarded.into_openapi();
    operations(&mut guarded.paths).for_each(require_token);
    let mut api = ApiDoc::openapi();
    api.merge(open.into_openapi());
    api.merge(guarded);
    // Every operation whose handler reads a body may answer 408 (`timeouts`).
    operations(&mut api.paths)
        .filter(|op| op.request_body.is_some())
        .for_each(|op| {
            op.responses
                .responses
                .insert("408".into(), RefOr::Ref(Ref::from_response_name(REQUEST_TIMEOUT)));
        });
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        SCHEME,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The gateway's admin token: `admin_token` / `OUTPOST_ADMIN_TOKEN`, the file named by \
                     `admin_token_file`, or `<data_dir>/admin.token` (generated on first start)",
                ))
                .build(),
        ),
    );
    components.responses.insert(
        UNAUTHORIZED.into(),
        error_response(
            "`unauthorized`: the `Authorization: Bearer` header is missing, malformed or carries \
             the wrong token; nothing happened",
        ),
    );
    components.responses.insert(
        REQUEST_TIMEOUT.into(),
        error_response(
            "`request_timeout`: the request body paused for over `admin_timeouts.body_idle_ms` \
             (default 30 s) or took over `admin_timeouts.body_ms` (default 300 s); nothing \
             happened (a handler acts only on a whole body) and the connection closes",
        ),
    );
    api
}

/// A shared response whose body is the API's `ErrorBody` JSON.
fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build(),
    )
}

/// Every operation of `paths`.
fn operations(paths: &mut utoipa::openapi::Paths) -> impl Iterator<Item = &mut Operation> {
    paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
    })
}

/// Puts `op` behind the bearer token: the requirement and its 401 answer.
fn require_token(op: &mut Operation) {
    op.security = Some(vec![SecurityRequirement::new::<_, _, String>(SCHEME, [])]);
    op.responses
        .responses
        .insert("401".into(), RefOr::Ref(Ref::from_response_name(UNAUTHORIZED)));
}

/// The document as pretty JSON with a final newline (what `/openapi.json`
/// serves and `docs/admin-openapi.json` holds), built once.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut s = document()
            .to_pretty_json()
            .expect("the OpenAPI document serializes");
        s.push('\n');
        s
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// `(METHOD, path)` of every operation in the document.
    fn documented() -> BTreeSet<(String, String)> {
        let doc: serde_json::Value = serde_json::from_str(document_json()).unwrap();
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
        out
    }

    /// `(METHOD, path)` of every row of the route table in `mod.rs`'s module
    /// doc, with query strings dropped and `a`, `b` cells split.
    fn module_doc_table() -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for line in include_str!("mod.rs").lines() {
            let cells: Vec<&str> = line.trim_start_matches("//!").split('|').map(str::trim).collect();
            let [_, method, paths, ..] = cells[..] else {
                continue;
            };
            if !matches!(method, "GET" | "POST" | "PUT" | "DELETE" | "PATCH") {
                continue;
            }
            for path in paths.split(", ") {
                let path = path.trim_matches('`');
                let path = path.split('?').next().unwrap();
                out.insert((method.to_owned(), path.to_owned()));
            }
        }
        out
    }

    #[test]
    fn the_document_and_the_module_doc_table_list_the_same_routes() {
        let table = module_doc_table();
        assert!(table.len() >= 20, "the table parser found too little: {table:?}");
        let documented = documented();
        let undocumented: Vec<_> = table.difference(&documented).collect();
        let unlisted: Vec<_> = documented.difference(&table).collect();
        assert!(
            undocumented.is_empty(),
            "in the mod.rs table but not in the OpenAPI document: {undocumented:?}"
        );
        assert!(
            unlisted.is_empty(),
            "in the OpenAPI document but not in the mod.rs table: {unlisted:?}"
        );
    }

    #[test]
    fn only_the_probes_and_this_document_are_open() {
        let doc: serde_json::Value = serde_json::from_str(document_json()).unwrap();
        let open = ["/healthz", "/readyz", "/metrics", "/openapi.json"];
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let guarded = op["security"] == serde_json::json!([{ SCHEME: [] }]);
                let answers_401 = op["responses"]["401"]["$ref"] == "#/components/responses/Unauthorized";
                let expect = !open.contains(&path.as_str());
                assert_eq!((guarded, answers_401), (expect, expect), "{method} {path}");
            }
        }
    }

    /// Routes reach the router only through the route table's
    /// `OpenApiRouter::routes(routes!(...))`: a plain axum `.route(...)` (or a
    /// nested router, a fallback) would be served without being documented.
    /// A handler that reads a body may answer 408 (`timeouts`); the others
    /// never read one, so never wait for it.
    #[test]
    fn every_operation_with_a_body_may_answer_408() {
        let doc: serde_json::Value = serde_json::from_str(document_json()).unwrap();
        let mut with_body = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let has_body = op.get("requestBody").is_some();
                with_body += usize::from(has_body);
                let answers_408 = op["responses"]["408"]["$ref"] == "#/components/responses/RequestTimeout";
                assert_eq!(answers_408, has_body, "{method} {path}");
            }
        }
        assert!(with_body >= 5, "only {with_body} operations take a body");
    }

    #[test]
    fn routes_are_added_only_through_the_documented_table() {
        let code = include_str!("mod.rs");
        let code = code.split("#[cfg(test)]").next().unwrap();
        for forbidden in [
            ".route(",
            ".route_service(",
            ".nest(",
            ".nest_service(",
            ".fallback",
            " Router::new(",
            "axum::Router::new(",
        ] {
            assert!(
                !code.contains(forbidden),
                "admin/mod.rs calls `{forbidden}`: register routes with `.routes(routes!(handler))` so they are documented"
            );
        }
    }

    #[test]
    fn the_checked_in_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/admin-openapi.json");
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == document_json(),
            "docs/admin-openapi.json is not the document the code generates; regenerate it with\n  \
             cargo run -p outpost-gateway --bin outpost-admin -- openapi > docs/admin-openapi.json\n\
             and review the diff"
        );
    }
}

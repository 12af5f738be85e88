//! How the admin API answers errors, and its extractors that turn malformed
//! input into those answers: every error is JSON `{"error": code, "message":
//! text, "field": path?}`, where `field` (when known) names the offending part
//! of the request body in the form `rules[0].percentage_bp`.
//!
//! Backend errors become answers by their class ([`class_error`]), after the
//! few variants a route documents a code of its own for (`invalid_flag` with its
//! field, ...): a new backend variant gets the answer of its class, never a
//! silent 400. Internal errors answer 500 with a generic message and a
//! correlation id; the real error is in the gateway's log under that id.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use outpost_backend::error_class::{Classify, ErrorClass};
use serde::de::DeserializeOwned;

/// The JSON body of every error answer of the admin API. (Error answers are
/// made from this type, which is also the document's schema: they cannot differ.)
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"error": "invalid_flag", "message": "rules[0].percentage_bp: 20000 is over 10000", "field": "rules[0].percentage_bp"}))]
pub(crate) struct ErrorBody {
    /// A stable machine-readable code (`unauthorized`, `not_found`,
    /// `invalid_json`, `invalid_query`, `invalid_flag`, `conflict`,
    /// `store_unavailable`, ...).
    pub error: String,
    /// A human-readable explanation.
    pub message: String,
    /// The offending part of the request, when known (`rules[0].percentage_bp`,
    /// `actor`, `plan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
}

impl ErrorBody {
    /// `{"error": code, "message": message}`.
    pub(crate) fn new(code: &str, message: impl Into<String>) -> Self {
        ErrorBody {
            error: code.to_owned(),
            message: message.into(),
            field: None,
        }
    }
}

/// An admin API error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    /// Sent as `Retry-After` (whole seconds, at least 1).
    retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl std::fmt::Display) -> Self {
        ApiError {
            status,
            code,
            message: message.to_string(),
            field: None,
            retry_after: None,
        }
    }

    /// 500 with `code` and a generic message with a correlation id; `e` goes
    /// to the log under that id, not to the caller.
    pub(crate) fn internal(code: &'static str, e: impl std::fmt::Display) -> Self {
        let id = crate::channels::errors::log_internal(&e);
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code,
            crate::channels::errors::internal_message(&id),
        )
    }

    /// 400 with `code`.
    pub(crate) fn bad_request(code: &'static str, message: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// Names the offending field.
    pub(crate) fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            field: self.field,
            ..ErrorBody::new(self.code, self.message)
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

/// An answer's status and code.
pub(crate) type Answer = (StatusCode, &'static str);

/// How a route answers each [`ErrorClass`] (its documented statuses and codes).
pub(crate) struct ClassAnswers {
    pub invalid: Answer,
    pub not_found: Answer,
    pub conflict: Answer,
    pub forbidden: Answer,
    /// The code of the 503 (with `Retry-After`).
    pub unavailable: &'static str,
    /// The code of the 500 (generic message, correlation id).
    pub internal: &'static str,
}

impl ClassAnswers {
    /// Each class its own status: 400 `rejected`, 404 `not_found`, 409
    /// `conflict`, 403 `forbidden`, 503 `unavailable`, 500 `internal`.
    pub(crate) const BY_STATUS: ClassAnswers = ClassAnswers {
        invalid: (StatusCode::BAD_REQUEST, "rejected"),
        not_found: (StatusCode::NOT_FOUND, "not_found"),
        conflict: (StatusCode::CONFLICT, "conflict"),
        forbidden: (StatusCode::FORBIDDEN, "forbidden"),
        unavailable: "unavailable",
        internal: "internal",
    };

    /// The older routes (ledger, live ops) answer every refusal 400 `rejected`
    /// (documented so; clients tell them apart by message), store failures 503
    /// `store_unavailable`.
    pub(crate) const REJECTED: ClassAnswers = ClassAnswers {
        invalid: (StatusCode::BAD_REQUEST, "rejected"),
        not_found: (StatusCode::BAD_REQUEST, "rejected"),
        conflict: (StatusCode::BAD_REQUEST, "rejected"),
        forbidden: (StatusCode::BAD_REQUEST, "rejected"),
        unavailable: "store_unavailable",
        internal: "internal",
    };
}

/// The one place a backend error's class becomes an admin answer. Refusals
/// and unavailability keep the error's text (the caller is an operator or a
/// trusted service); internal errors do not (see [`ApiError::internal`]).
pub(crate) fn class_error<E: Classify + std::fmt::Display>(e: E, answers: &ClassAnswers) -> ApiError {
    let (status, code) = match e.class() {
        ErrorClass::Invalid => answers.invalid,
        ErrorClass::NotFound => answers.not_found,
        ErrorClass::Conflict => answers.conflict,
        ErrorClass::Forbidden => answers.forbidden,
        ErrorClass::Unavailable { retry_after } => {
            let mut a = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, answers.unavailable, e);
            a.retry_after = Some(retry_after);
            return a;
        }
        ErrorClass::Internal => return ApiError::internal(answers.internal, e),
    };
    ApiError::new(status, code, e)
}

/// The largest request body the admin API reads, in bytes (2 MiB, axum's
/// default, set explicitly in `serve` so that the early refusal below and the
/// limit agree). Admin bodies are flags, manifests and corrections: a few KiB.
pub(crate) const MAX_BODY_BYTES: usize = 2 << 20;

/// A JSON request body. Decoding errors are 400 `invalid_json` naming the
/// field (`rules[0].value: unknown variant ...`). A body over
/// [`MAX_BODY_BYTES`] is 413 `invalid_body`: at once when its `Content-Length`
/// says so (without it the answer waited for the body, which a client might
/// never send), else once that much was read. The content type is not
/// checked: every route needs the bearer token, which browsers never attach on
/// their own, so the usual cross-site-form concern does not apply.
pub(crate) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(len) = declared.filter(|&len| len > MAX_BODY_BYTES as u64) {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_body",
                format!("the body is {len} bytes; the limit is {MAX_BODY_BYTES}"),
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), "invalid_body", e.body_text()))?;
        decode(&bytes).map(JsonBody)
    }
}

/// Decodes `bytes` as one JSON document of type `T`.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path == "?" {
            ApiError::bad_request("invalid_json", format!("invalid JSON body: {inner}"))
        } else {
            ApiError::bad_request("invalid_json", format!("{path}: {inner}")).field(path)
        }
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request("invalid_json", format!("invalid JSON body: {e}")))?;
    Ok(value)
}

/// A query string; malformed ones are 400 `invalid_query`.
pub(crate) struct QueryOf<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryOf<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryOf(q.0))
            .map_err(|e| ApiError::new(e.status(), "invalid_query", e.body_text()))
    }
}

/// `Ok` as 200 JSON, `Err` through `map`.
pub(crate) fn reply<T: serde::Serialize, E>(r: Result<T, E>, map: impl FnOnce(E) -> ApiError) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => map(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        items: Vec<Inner>,
    }

    #[test]
    fn decoding_errors_name_the_field() {
        let e = decode::<Outer>(br#"{"items":[{"n":1},{"n":"x"}]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("items[1].n"));
        assert!(e.message.starts_with("items[1].n: invalid type"), "{}", e.message);
        let e = decode::<Outer>(b"{").unwrap_err();
        assert_eq!((e.code, e.field), ("invalid_json", None));
        assert!(decode::<Outer>(br#"{"items":[]} trailing"#).is_err());
    }
}

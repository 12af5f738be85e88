//! Server-side request metrics: how each channel request was answered and how
//! long it took, by channel and operation (the request body's variant, a fixed
//! set), so latency and error rates can be read per operation.

use std::time::Duration;

use outpost_schema::{ErrorCode, RequestBody};

use super::catalogue::{REQUESTS, REQUEST_SECONDS};

/// The `operation` label of a request: its body's variant name.
pub fn operation_name(body: &RequestBody) -> &'static str {
    body.operation_name()
}

/// The `operation` label of a request answered by the channel rules before
/// it reached its service (rate limit, in-flight bound).
pub const UNDISPATCHED: &str = "undispatched";

/// A request of `operation` on `channel` was answered after `took` with
/// `error` (`None`: a response).
pub fn answered(channel: &'static str, operation: &'static str, took: Duration, error: Option<ErrorCode>) {
    metrics::histogram!(REQUEST_SECONDS, "channel" => channel, "operation" => operation)
        .record(took.as_secs_f64());
    refused_or_ok(channel, operation, error);
}

/// Counts an answer without timing it (requests refused before dispatch).
pub fn refused_or_ok(channel: &'static str, operation: &'static str, error: Option<ErrorCode>) {
    let code = match error {
        None => "ok",
        Some(code) => code.variant_name().unwrap_or("unknown"),
    };
    metrics::counter!(REQUESTS, "channel" => channel, "operation" => operation, "code" => code).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_named_after_their_variant() {
        let body = RequestBody::StateGet { name: "x".into() };
        assert_eq!(operation_name(&body), "StateGet");
        assert!(format!("{body:?}").starts_with(operation_name(&body)));
        assert_eq!(operation_name(&RequestBody::Flags), "Flags");
    }
}

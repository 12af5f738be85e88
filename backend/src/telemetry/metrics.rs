//! Client telemetry as metrics, recorded through the [`metrics`] facade by the
//! [`TelemetryAggregator`](super::TelemetryAggregator) under the labels it
//! decided (bounded: beyond the series bounds they are `other`), so a client
//! cannot grow the exporter's cardinality. The gateway installs the recorder.

use super::aggregator::{ErrorLabels, LatencyLabels};

/// Client-reported errors (counter; `client_version`, `platform`, `code`).
pub const ERRORS: &str = "outpost_client_errors_total";
/// Client-reported latencies, ms (histogram; `client_version`, `platform`).
pub const LATENCY_MS: &str = "outpost_client_latency_ms";
/// Telemetry events refused as malformed (counter).
pub const REJECTED: &str = "outpost_client_telemetry_rejected_total";
/// Upper bounds of the exported latency histogram's buckets, ms (the default
/// [`TelemetryConfig::latency_buckets_ms`](super::TelemetryConfig::latency_buckets_ms)).
pub const LATENCY_BUCKETS_MS: &[f64] = &[
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// Registers the help texts with the installed recorder.
pub fn describe() {
    metrics::describe_counter!(
        ERRORS,
        "Errors reported by clients, by client version, platform and error code (`other` beyond the series bound)."
    );
    metrics::describe_histogram!(
        LATENCY_MS,
        "Operation latencies reported by clients, milliseconds, by client version and platform."
    );
    metrics::describe_counter!(
        REJECTED,
        "Client telemetry events refused as malformed (a negative or non-finite latency)."
    );
    let _ = metrics::counter!(REJECTED);
}

pub(super) fn error(l: &ErrorLabels) {
    metrics::counter!(ERRORS, "client_version" => l.client_version.clone(), "platform" => l.platform.clone(), "code" => l.code.clone())
        .increment(1);
}

pub(super) fn latency(l: &LatencyLabels, millis: f64) {
    metrics::histogram!(LATENCY_MS, "client_version" => l.client_version.clone(), "platform" => l.platform.clone())
        .record(millis);
}

pub(super) fn rejected() {
    metrics::counter!(REJECTED).increment(1);
}

//! Help texts of the gateway's own metrics (backend metrics, and the login
//! queue's in `crate::queue_metrics`, describe themselves next to their
//! recording code). One entry per metric name; the
//! recording call sites use the same literal names.

use metrics::{describe_counter, describe_gauge, describe_histogram};

/// `outpost_build_info{version}`: always 1.
pub const BUILD_INFO: &str = "outpost_build_info";
/// Requests answered per channel, operation and result code (`ok` or the wire error code).
pub const REQUESTS: &str = "outpost_requests_total";
/// Server-side request latency per channel and operation, seconds.
pub const REQUEST_SECONDS: &str = "outpost_request_duration_seconds";
/// Sessions kicked with `RateLimited`, by the bound they broke
/// (`crate::session::RateLimitCause::as_str`).
pub const RATE_LIMIT_KICKS: &str = "outpost_rate_limit_kicks_total";
/// Channel openings refused, by wire code, and streams the client ended
/// before their first frame (`code="EmptyStream"`, [`EMPTY_STREAM`]).
pub const CHANNELS_REFUSED: &str = "outpost_channels_refused_total";
/// The `code` of [`CHANNELS_REFUSED`] for a stream the client finished or
/// reset before its first frame. Not a wire code (nothing is sent on such a
/// stream), as `ConnectionLost` is not one in `outpost_session_closes_total`;
/// counted here because each is a failed channel (PROTOCOL.md §4) like the
/// refused ones, and the `failed_channels` kicks are otherwise unexplained.
pub const EMPTY_STREAM: &str = "EmptyStream";
/// `MatchNotFound` pushes sent to sessions, by `reason` (the backend's
/// `NoMatchReason::as_str`: `deadline`).
pub const MATCH_NOT_FOUND_PUSHED: &str = "outpost_mm_match_not_found_pushed_total";

const COUNTERS: &[(&str, &str)] = &[
    (
        REQUESTS,
        "Channel requests answered, by channel, operation and code (`ok`, or the wire error code sent).",
    ),
    (
        "outpost_handshakes_total",
        "QUIC/TLS handshakes, by result (ok, failed).",
    ),
    (
        "outpost_logins_total",
        "Logins answered, by result (welcome, resumed, reject) and, for rejects, the wire code.",
    ),
    (
        "outpost_session_closes_total",
        "Sessions closed, by the wire code of the close (ConnectionLost when the peer vanished).",
    ),
    (
        RATE_LIMIT_KICKS,
        "Sessions kicked with RateLimited, by cause (control_frames, refused_requests, failed_channels); outpost_session_closes_total{code=\"RateLimited\"} counts them all.",
    ),
    (
        "outpost_frames_rejected_total",
        "Frames refused as malformed or out of protocol, by wire code.",
    ),
    ("outpost_channels_opened_total", "Channels opened, by channel."),
    (
        CHANNELS_REFUSED,
        "Channel opens refused, by wire code; code EmptyStream: streams the client finished or reset before their first frame (nothing is answered on them).",
    ),
    (
        "outpost_quic_refused_total",
        "New QUIC connections refused before any TLS work, by reason (receive_drops: the receive path was behind, the kernel having dropped datagrams at the socket for 3 s of the last 4).",
    ),
    (
        "outpost_quic_retries_total",
        "QUIC Retry packets sent to validate client addresses (under handshake load).",
    ),
    (
        "outpost_resume_refreshes_total",
        "Resume-token refreshes sent to sessions, by result (ok, failed).",
    ),
    (
        "outpost_resumes_revoked_total",
        "Resume attempts refused because the token was revoked (kick or newer login).",
    ),
    (
        "outpost_tls_reloads_total",
        "Certificate reloads that put a new certificate in service.",
    ),
    (
        "outpost_tls_reload_failures_total",
        "Certificate reloads that failed (the previous certificate stays in service).",
    ),
    (
        "outpost_admin_unauthorized_total",
        "Admin API requests refused for a missing or wrong token, by reason.",
    ),
    (
        MATCH_NOT_FOUND_PUSHED,
        "MatchNotFound pushes sent to this process's sessions (a ticket reached its queue deadline without a match), by reason.",
    ),
    (
        "outpost_liveness_fenced_total",
        "Times this process found its liveness registration taken over (it stops serving).",
    ),
];

const GAUGES: &[(&str, &str)] = &[
    (
        BUILD_INFO,
        "Build of this gateway: always 1, the version in the label.",
    ),
    (
        "outpost_sessions_live",
        "Sessions held by this process (logged in, not yet closed).",
    ),
    (
        "outpost_sessions_admitted",
        "Session slots taken in this gateway's admission budget (including logins in progress).",
    ),
    (
        "outpost_draining",
        "1 once a drain began (POST /drain or SIGTERM), else absent or 0.",
    ),
    (
        "outpost_udp_recv_buffer_bytes",
        "UDP receive buffer the kernel granted the QUIC socket, bytes.",
    ),
    (
        "outpost_udp_send_buffer_bytes",
        "UDP send buffer the kernel granted the QUIC socket, bytes.",
    ),
    (
        "outpost_tls_cert_not_after_seconds",
        "Expiry of the certificate in service, Unix seconds.",
    ),
    (
        "outpost_sweep_incarnations_total",
        "Dead gateway incarnations swept by this process's orphan sweep (cumulative).",
    ),
    (
        "outpost_sweep_orphans_total",
        "Orphaned records the sweep handled, by kind (cumulative).",
    ),
    (
        "outpost_gc_collected_total",
        "Records the retention GC removed, by kind (cumulative).",
    ),
    (
        "outpost_gc_oldest_age_ms",
        "Age of the oldest record still waiting for the retention GC, by kind, milliseconds.",
    ),
    (
        "outpost_gc_cycle_ms",
        "How long the retention GC's last complete cycle over the region took on this gateway, by kind, milliseconds (0 until one completes).",
    ),
];

const HISTOGRAMS: &[(&str, &str)] = &[(
    REQUEST_SECONDS,
    "Server-side latency of channel requests, from dispatch to the answer being queued, by channel and operation, seconds.",
)];

/// Every gateway metric name with its help text (for tests and docs).
pub fn all() -> impl Iterator<Item = (&'static str, &'static str)> {
    COUNTERS.iter().chain(GAUGES).chain(HISTOGRAMS).copied()
}

/// Registers the help texts with the installed recorder.
pub(super) fn describe() {
    for (name, help) in COUNTERS {
        describe_counter!(*name, *help);
    }
    for (name, help) in GAUGES {
        describe_gauge!(*name, *help);
    }
    for (name, help) in HISTOGRAMS {
        describe_histogram!(*name, *help);
    }
    // Series that dashboards and alerts read before their first event.
    for result in ["ok", "failed"] {
        let _ = metrics::counter!("outpost_handshakes_total", "result" => result);
    }
    for result in ["welcome", "resumed"] {
        let _ = metrics::counter!("outpost_logins_total", "result" => result);
    }
    metrics::gauge!("outpost_sessions_live").increment(0.0);
    metrics::gauge!("outpost_draining").increment(0.0);
    for reason in ["missing", "malformed", "wrong"] {
        let _ = metrics::counter!("outpost_admin_unauthorized_total", "reason" => reason);
    }
    let _ = metrics::counter!("outpost_quic_retries_total");
    let _ = metrics::counter!("outpost_quic_refused_total", "reason" => "receive_drops");
    let _ = metrics::counter!(MATCH_NOT_FOUND_PUSHED, "reason" => "deadline");
    for cause in crate::session::RateLimitCause::ALL {
        let _ = metrics::counter!(RATE_LIMIT_KICKS, "cause" => cause.as_str());
    }
    let _ = metrics::counter!("outpost_tls_reload_failures_total");
    let _ = metrics::counter!("outpost_tls_reloads_total");
}

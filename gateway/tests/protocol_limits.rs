//! The numbers PROTOCOL.md promises are the ones the code uses: every documented
//! default and bound is parsed out of the markdown and compared with the config
//! defaults and constants, so the two cannot drift apart again (issue #12: the
//! spec's 65,536-byte documents did not fit its 65,536-byte frames).
//!
//! Each check names the sentence it reads; rewording one means updating its
//! anchor here, changing a number means changing the code too (or vice versa).

use outpost_backend::state::{MAX_DOCS_PER_PLAYER, MAX_DOC_BYTES, MAX_DOC_NAME_BYTES};
use outpost_gateway::channels::{echo, telemetry};
use outpost_gateway::session::REFUSAL_WINDOW;
use outpost_gateway::GatewayConfig;
use outpost_schema::{
    DEFAULT_MAX_FRAME_SIZE, HANDSHAKE_MAX_FRAME_SIZE, MAX_FRAME_SIZE_CEILING, MIN_MAX_FRAME_SIZE,
    STATE_DOC_OVERHEAD, STATE_FRAME_OVERHEAD, VERIFIER_MAX_DEPTH, VERIFIER_MAX_TABLES,
};

const PROTOCOL: &str = include_str!("../../schema/PROTOCOL.md");

/// The text with line breaks and indentation folded to single spaces, so an
/// anchor may span the markdown's wrapped lines.
fn folded() -> String {
    PROTOCOL.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The numbers (`65,536`, `1,000`, `20`) that follow `anchor`, in order.
fn numbers_after(anchor: &str) -> Vec<u64> {
    let text = folded();
    let start = text
        .find(anchor)
        .unwrap_or_else(|| panic!("PROTOCOL.md no longer says {anchor:?}"));
    let rest = &text[start + anchor.len()..];
    let mut out = Vec::new();
    let mut digits = String::new();
    let mut chars = rest.chars().take(160).peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else if c == ',' && !digits.is_empty() && chars.peek().is_some_and(char::is_ascii_digit) {
            // a thousands separator
        } else if !digits.is_empty() {
            out.push(digits.parse().unwrap());
            digits.clear();
        }
    }
    if !digits.is_empty() {
        out.push(digits.parse().unwrap());
    }
    out
}

fn first_after(anchor: &str) -> u64 {
    *numbers_after(anchor)
        .first()
        .unwrap_or_else(|| panic!("no number after {anchor:?}"))
}

/// The `default` cell of the section 4 limits table row whose first cell starts
/// with `limit`.
fn table_default(limit: &str) -> Vec<u64> {
    let row = PROTOCOL
        .lines()
        .find(|l| l.starts_with(&format!("| {limit}")))
        .unwrap_or_else(|| panic!("no limits row {limit:?}"));
    let cell = row.split('|').nth(2).expect("a default cell");
    // Thousands separators: "20,000" is one number.
    let cell = cell.replace(',', "");
    cell.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect()
}

#[test]
fn framing_limits_match_the_code() {
    let limits = GatewayConfig::default().limits;
    // Section 2.
    assert_eq!(
        first_after("Until `Welcome` is received, frames MUST NOT exceed"),
        u64::from(HANDSHAKE_MAX_FRAME_SIZE)
    );
    assert_eq!(first_after("(0 ="), u64::from(DEFAULT_MAX_FRAME_SIZE));
    assert_eq!(
        first_after("(the gateway's is"),
        u64::from(limits.max_frame_size),
        "the gateway proposes the protocol default"
    );
    assert_eq!(
        numbers_after("clamped to")[..2],
        [u64::from(MIN_MAX_FRAME_SIZE), u64::from(MAX_FRAME_SIZE_CEILING)]
    );
    assert_eq!(
        numbers_after("the gateway uses a maximum depth of")[..2],
        [VERIFIER_MAX_DEPTH as u64, VERIFIER_MAX_TABLES as u64]
    );
}

#[test]
fn session_and_transport_defaults_match_the_config() {
    let c = GatewayConfig::default();
    // Section 1.
    assert_eq!(first_after("Default port: UDP"), u64::from(c.listen.port()));
    assert_eq!(
        numbers_after("Transport limits announced by the gateway (defaults):")[..2],
        [
            u64::from(c.limits.max_channels) + 1,
            u64::from(c.limits.max_channels)
        ]
    );
    assert_eq!(
        first_after("no unidirectional streams, QUIC idle timeout") * 1000,
        c.transport.max_idle_timeout_ms
    );
    let floor = numbers_after("before its probe timeout's floor (default")[..3].to_vec();
    assert_eq!(floor[..2], [c.transport.min_probe_timeout_ms, 0]);
    let mut bound = GatewayConfig::default();
    bound.transport.min_probe_timeout_ms = floor[2];
    bound.validate().expect("the documented upper bound is accepted");
    bound.transport.min_probe_timeout_ms = floor[2] + 1;
    assert!(bound.validate().is_err(), "and nothing above it");
    assert_eq!(
        first_after("The SDK's clients apply the same floor to their own probes ("),
        outpost_client::MIN_PROBE_TIMEOUT.as_millis() as u64
    );
    // Section 3.
    assert_eq!(
        first_after("as the first frame of the control stream within") * 1000,
        c.session.hello_timeout_ms
    );
    assert_eq!(first_after("No Hello within") * 1000, c.session.hello_timeout_ms);
    assert_eq!(
        first_after("at least every `heartbeat_interval_ms` (default"),
        c.session.heartbeat_interval_ms
    );
    assert_eq!(
        first_after("for `idle_timeout_ms` (default"),
        c.session.idle_timeout_ms
    );
    assert_eq!(
        numbers_after("Control frames are rate limited (default")[..2],
        [
            c.limits.control_rate_per_sec as u64,
            c.limits.control_burst as u64
        ]
    );
    assert_eq!(
        first_after("the resume window (default"),
        c.session.resume_window_secs
    );
}

#[test]
fn channel_limits_table_matches_the_config() {
    let l = GatewayConfig::default().limits;
    assert_eq!(
        table_default("requests in flight"),
        [u64::from(l.max_in_flight_per_channel)]
    );
    assert_eq!(
        table_default("requests per second per session"),
        [l.request_rate_per_sec as u64, l.request_burst as u64]
    );
    assert_eq!(
        table_default("frames queued for the client"),
        [
            l.outbound_queue_frames as u64,
            (l.outbound_queue_bytes >> 20) as u64
        ],
        "frames, then MiB"
    );
    assert_eq!(l.outbound_queue_bytes % (1 << 20), 0, "the table says whole MiB");
    assert_eq!(
        table_default("channels open at once"),
        [u64::from(l.max_channels)]
    );
    assert_eq!(
        table_default("refused requests per session"),
        [
            u64::from(l.max_refused_requests_per_window),
            REFUSAL_WINDOW.as_secs()
        ],
        "refusals, then the window in seconds"
    );
    assert_eq!(REFUSAL_WINDOW.subsec_nanos(), 0, "the table says whole seconds");
    assert_eq!(
        table_default("failed channels per session"),
        [
            u64::from(l.max_failed_channels_per_window),
            REFUSAL_WINDOW.as_secs()
        ],
        "channels, then the window in seconds"
    );
    assert_eq!(
        first_after("takes a window over it (default"),
        u64::from(l.max_failed_channels_per_window)
    );
    // The prose on refused requests names the same limit and window, and
    // the most a client honouring retry_after_ms is refused.
    assert_eq!(first_after("counted, in windows of"), REFUSAL_WINDOW.as_secs());
    assert_eq!(
        first_after("takes a window over the limit (default"),
        u64::from(l.max_refused_requests_per_window)
    );
    assert_eq!(
        first_after("per request it is admitted (about"),
        l.request_rate_per_sec as u64 * REFUSAL_WINDOW.as_secs()
    );
    assert!(PROTOCOL.contains("256 frames or 1 MiB per channel"));
    // The prose on in-flight processing names the same limit.
    assert_eq!(
        first_after("while requests that wait on a backend are refused from the"),
        u64::from(l.max_in_flight_per_channel) + 1
    );
}

#[test]
fn service_bounds_match_the_code() {
    // 4.1 Echo.
    assert_eq!(first_after("`push_count` over"), u64::from(echo::MAX_ECHO_PUSHES));
    assert_eq!(
        first_after("or `delay_ms` over"),
        u64::from(echo::MAX_ECHO_DELAY_MS)
    );
    // 4.2 State.
    assert_eq!(numbers_after("(names:")[..2], [1, MAX_DOC_NAME_BYTES as u64]);
    assert_eq!(first_after("values: opaque bytes, at most"), MAX_DOC_BYTES as u64);
    assert!(folded().contains(&format!("at most {MAX_DOCS_PER_PLAYER} documents per player")));
    assert_eq!(
        numbers_after("A value of")[..2],
        [MAX_DOC_BYTES as u64, MAX_DOC_BYTES as u64 + 1]
    );
    assert_eq!(
        numbers_after("A player's documents (up to")[..2],
        [MAX_DOCS_PER_PLAYER as u64, MAX_DOC_BYTES as u64]
    );
    // 4.6 Telemetry.
    assert_eq!(
        numbers_after("The gateway reads at most")[..3],
        [
            telemetry::MAX_ERRORS_PER_REPORT as u64,
            u64::from(telemetry::MAX_COUNT_PER_ERROR),
            telemetry::MAX_LATENCIES_PER_REPORT as u64
        ]
    );
    assert_eq!(
        numbers_after("(so at most")[..4],
        [
            telemetry::MAX_ERRORS_PER_REPORT as u64,
            u64::from(telemetry::MAX_COUNT_PER_ERROR),
            telemetry::MAX_LATENCIES_PER_REPORT as u64,
            (telemetry::MAX_ERRORS_PER_REPORT as u64) * u64::from(telemetry::MAX_COUNT_PER_ERROR)
                + telemetry::MAX_LATENCIES_PER_REPORT as u64
        ]
    );
}

/// The limits are consistent with each other, not only with the text: the
/// largest document fits a default frame in a `StateSetRequest`, and a state
/// frame with one such document plus 63 entries without values fits too (what
/// a `StateListResponse` of a full player needs, section 4.2).
#[test]
fn the_documented_limits_fit_together() {
    let frame = DEFAULT_MAX_FRAME_SIZE as usize;
    let largest_set = outpost_schema::ChannelMsg::Request(outpost_schema::Request {
        request_id: u64::MAX,
        body: outpost_schema::RequestBody::StateSet {
            name: "n".repeat(MAX_DOC_NAME_BYTES),
            expected_version: u64::MAX,
            value: vec![0; MAX_DOC_BYTES],
        },
    });
    assert!(largest_set.encode().len() - outpost_schema::LENGTH_PREFIX_BYTES <= frame);
    let full_list = MAX_DOC_BYTES
        + MAX_DOCS_PER_PLAYER * (MAX_DOC_NAME_BYTES + STATE_DOC_OVERHEAD)
        + STATE_FRAME_OVERHEAD;
    assert!(full_list <= frame, "{full_list} > {frame}");
    let c = GatewayConfig::default();
    assert!(
        c.limits.outbound_queue_bytes >= 2 * frame,
        "a paced push fits half the queue"
    );
}

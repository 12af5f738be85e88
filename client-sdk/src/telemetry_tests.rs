//! Tests of the SDK's telemetry batching (`telemetry.rs`).
use super::*;
use outpost_schema::{ErrorCode, StateDocument};

fn rec(errors: usize, latencies: usize) -> Recorder {
    Recorder::new(TelemetryConfig {
        max_error_entries: errors,
        max_latency_samples: latencies,
        ..TelemetryConfig::default()
    })
}

fn request(b: Batch) -> (Vec<TelemetryErrorCount>, Vec<f64>) {
    match b.into_request() {
        RequestBody::Telemetry { errors, latencies_ms } => (errors, latencies_ms),
        other => panic!("{other:?}"),
    }
}

#[test]
fn errors_aggregate_by_code_and_overflow_is_dropped_and_counted() {
    let r = rec(2, 4);
    for _ in 0..3 {
        r.error("A");
    }
    r.error("B");
    r.error("C"); // a third distinct code does not fit
    r.error("B");
    let st = r.stats();
    assert_eq!((st.recorded, st.dropped), (5, 1));
    let (errors, lat) = request(r.take());
    assert_eq!(
        errors,
        vec![
            TelemetryErrorCount {
                code: "A".into(),
                count: 3
            },
            TelemetryErrorCount {
                code: "B".into(),
                count: 2
            },
        ]
    );
    assert!(lat.is_empty());
    // The batch was taken: room again.
    r.error("C");
    assert_eq!(request(r.take()).0.len(), 1);
}

#[test]
fn one_entry_never_claims_more_than_the_gateway_reads() {
    let r = rec(64, 256);
    for _ in 0..(MAX_COUNT_PER_ERROR + 10) {
        r.error("X");
    }
    assert_eq!(r.stats().dropped, 10);
    assert_eq!(request(r.take()).0[0].count, MAX_COUNT_PER_ERROR);
}

#[test]
fn latencies_are_bounded_and_invalid_samples_dropped() {
    let r = rec(64, 3);
    for ms in [1.0, f64::NAN, -1.0, 2.0, f64::INFINITY, 3.0, 4.0] {
        r.latency_ms(ms);
    }
    let st = r.stats();
    assert_eq!((st.recorded, st.dropped), (3, 4));
    assert_eq!(request(r.take()).1, vec![1.0, 2.0, 3.0]);
}

#[tokio::test]
async fn a_full_batch_wakes_the_flush_schedule() {
    let r = rec(64, 2);
    r.latency_ms(1.0);
    let early = tokio::time::timeout(Duration::from_millis(20), r.full.notified()).await;
    assert!(early.is_err(), "not full yet");
    r.latency_ms(2.0);
    // The permit is stored even though nobody waited when it filled.
    tokio::time::timeout(Duration::from_secs(1), r.full.notified())
        .await
        .expect("full batch signalled");
}

#[test]
fn codes_are_sanitized_and_bounded() {
    assert_eq!(sanitize("shop/buy: E 1"), "shop_buy__E_1");
    assert_eq!(sanitize(""), "unknown");
    assert_eq!(sanitize(&"x".repeat(200)).len(), MAX_CODE_BYTES);
    assert_eq!(sanitize("état"), "_tat");
}

#[test]
fn requests_are_recorded_with_channel_and_operation() {
    let r = rec(64, 256);
    let conflict = ClientError::Server(crate::ServerError {
        code: ErrorCode::Conflict,
        message: String::new(),
        retry_after: None,
    });
    let op = operation(&RequestBody::StateSet {
        name: "p".into(),
        expected_version: 0,
        value: vec![],
    });
    r.request(ChannelKind::State, op, &Err(conflict), Duration::ZERO);
    r.request(
        ChannelKind::State,
        "StateGet",
        &Err(ClientError::Timeout),
        Duration::ZERO,
    );
    r.request(
        ChannelKind::State,
        "StateGet",
        &Err(ClientError::Closed),
        Duration::ZERO,
    );
    let ok = Ok(ResponseBody::StateGet {
        document: Some(StateDocument {
            name: "p".into(),
            version: 1,
            updated_ms: 0,
            value: vec![],
            value_omitted: false,
        }),
    });
    r.request(ChannelKind::State, "StateGet", &ok, Duration::from_millis(7));
    // The telemetry channel's own requests are never recorded (no feedback loop).
    r.request(
        ChannelKind::Telemetry,
        "Telemetry",
        &Err(ClientError::Timeout),
        Duration::ZERO,
    );
    let (errors, lat) = request(r.take());
    let codes: Vec<&str> = errors.iter().map(|e| e.code.as_str()).collect();
    assert_eq!(codes, ["state.StateGet.ClientTimeout", "state.StateSet.Conflict"]);
    assert_eq!(lat, vec![7.0]);
}

#[test]
fn disabled_records_nothing_and_config_is_validated() {
    let r = Recorder::new(TelemetryConfig {
        enabled: false,
        ..TelemetryConfig::default()
    });
    r.error("A");
    r.latency_ms(1.0);
    assert!(r.take().is_empty());
    assert_eq!(r.stats(), TelemetryStats::default());

    assert!(TelemetryConfig::default().validate().is_ok());
    for bad in [
        TelemetryConfig {
            flush_interval: Duration::from_millis(1),
            ..Default::default()
        },
        TelemetryConfig {
            max_error_entries: 65,
            ..Default::default()
        },
        TelemetryConfig {
            max_latency_samples: 0,
            ..Default::default()
        },
    ] {
        assert!(matches!(bad.validate(), Err(ClientError::Config(_))), "{bad:?}");
    }
}

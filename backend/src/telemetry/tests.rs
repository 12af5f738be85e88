//! Telemetry tests: aggregation and its memory bounds, and cohort counters in
//! the real embedded store.

use super::*;
use super::{Cohort, CohortStats, GroupStats};
use crate::store::{Store, TxError};

fn err(version: &str, platform: &str, code: &str) -> TelemetryEvent {
    TelemetryEvent {
        client_version: version.parse().expect("version"),
        platform: platform.into(),
        kind: TelemetryKind::Error { code: code.into() },
        rollouts: vec![],
    }
}

fn lat(version: &str, platform: &str, millis: f64) -> TelemetryEvent {
    TelemetryEvent {
        kind: TelemetryKind::Latency { millis },
        ..err(version, platform, "x")
    }
}

fn small() -> TelemetryConfig {
    TelemetryConfig {
        max_error_series: 3,
        max_latency_series: 2,
        max_cohort_counters: 2,
        latency_buckets_ms: vec![10.0, 100.0],
    }
}

#[test]
fn config_validation() {
    TelemetryConfig::default().validate().expect("default is valid");
    for bad in [
        TelemetryConfig {
            max_error_series: 0,
            ..Default::default()
        },
        TelemetryConfig {
            latency_buckets_ms: vec![],
            ..Default::default()
        },
        TelemetryConfig {
            latency_buckets_ms: vec![10.0, 10.0],
            ..Default::default()
        },
        TelemetryConfig {
            latency_buckets_ms: vec![-1.0],
            ..Default::default()
        },
        TelemetryConfig {
            latency_buckets_ms: vec![f64::INFINITY],
            ..Default::default()
        },
    ] {
        assert!(TelemetryAggregator::new(bad).is_err());
    }
    let json: TelemetryConfig = serde_json::from_str(r#"{"max_error_series": 5}"#).expect("partial config");
    assert_eq!((json.max_error_series, json.max_latency_series), (5, 200));
}

#[test]
fn errors_and_latencies_aggregate_by_labels() -> anyhow::Result<()> {
    let mut agg = TelemetryAggregator::new(TelemetryConfig::default())?;
    for _ in 0..3 {
        agg.record(&err("1.2.0", "pc", "E_TIMEOUT"));
    }
    agg.record(&err("1.2.0", "ps5", "E_TIMEOUT"));
    agg.record(&err("1.2.0", "pc", "bad code with spaces"));
    for ms in [5.0, 10.0, 50.0, 5000.0, 20_000.0] {
        agg.record(&lat("1.2.0", "pc", ms));
    }
    agg.record(&lat("1.2.0", "pc", -1.0));
    agg.record(&lat("1.2.0", "pc", f64::NAN));
    let snap = agg.snapshot();
    let errors: Vec<_> = snap
        .errors
        .iter()
        .map(|(l, n)| (l.platform.as_str(), l.code.as_str(), *n))
        .collect();
    assert_eq!(
        errors,
        vec![
            ("pc", "E_TIMEOUT", 3),
            ("pc", "other", 1),
            ("ps5", "E_TIMEOUT", 1)
        ]
    );
    assert_eq!(snap.latencies.len(), 1);
    let h = &snap.latencies[0].1;
    assert_eq!(h.count, 5);
    assert_eq!(h.sum_ms, 25_065.0);
    let cum = |le: f64| h.buckets.iter().find(|(b, _)| *b == le).map(|(_, c)| *c);
    assert_eq!(cum(5.0), Some(1));
    assert_eq!(cum(10.0), Some(2), "bounds are inclusive (le)");
    assert_eq!(cum(50.0), Some(3));
    assert_eq!(cum(10_000.0), Some(4), "20 s only in +Inf");
    assert_eq!(snap.rejected_events, 2);
    Ok(())
}

#[test]
fn memory_is_bounded_with_an_other_bucket() -> anyhow::Result<()> {
    let mut agg = TelemetryAggregator::new(small())?;
    let mut total = 0u64;
    for v in 0..50u32 {
        for code in ["A", "B", "C", "D"] {
            agg.record(&err(&format!("1.{v}.0"), "pc", code));
            agg.record(&lat(&format!("1.{v}.0"), &format!("plat{v}"), 1.0));
            total += 1;
        }
    }
    let (errors, latencies) = agg.series();
    assert!(errors <= 3 + 1, "{errors} error series");
    assert!(latencies <= 2 + 1, "{latencies} latency series");
    let snap = agg.snapshot();
    // Nothing is lost: the overflow is counted under `other`.
    assert_eq!(snap.errors.iter().map(|(_, n)| n).sum::<u64>(), total);
    assert_eq!(snap.latencies.iter().map(|(_, h)| h.count).sum::<u64>(), total);
    let other = snap
        .errors
        .iter()
        .find(|(l, _)| l.code == OTHER && l.platform == OTHER)
        .expect("other series");
    assert_eq!(other.1, total - 3);
    Ok(())
}

#[test]
fn cohort_counts_are_bounded_taken_and_restored() -> anyhow::Result<()> {
    let mut agg = TelemetryAggregator::new(small())?;
    let mut e = err("1.0.0", "pc", "E");
    e.rollouts = vec![
        ("ro-a".into(), Cohort::Treatment),
        ("ro-b".into(), Cohort::Control),
    ];
    agg.record(&e);
    let mut ok = lat("1.0.0", "pc", 3.0);
    ok.rollouts = vec![
        ("ro-a".into(), Cohort::Treatment),
        ("ro-c".into(), Cohort::Control),
    ];
    agg.record(&ok);
    let d = agg.take_cohort_deltas();
    assert_eq!(
        d[&("ro-a".to_string(), Cohort::Treatment)],
        GroupStats {
            requests: 2,
            errors: 1
        }
    );
    assert_eq!(
        d[&("ro-b".to_string(), Cohort::Control)],
        GroupStats {
            requests: 1,
            errors: 1
        }
    );
    assert_eq!(d.len(), 2, "bound of 2 counters");
    assert_eq!(agg.snapshot().dropped_cohort_events, 1);
    assert!(agg.take_cohort_deltas().is_empty(), "taken");
    agg.restore_cohort_deltas(d.clone());
    assert_eq!(agg.take_cohort_deltas(), d);
    Ok(())
}

#[tokio::test]
async fn counters_from_many_gateways_sum_by_window() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = crate::store::testing::open_store(dir.path()).await?;
    let t0 = 1_700_000_000_000u64;
    let id = "ro-0123456789abcdef";
    let delta = |req: u64, errs: u64, cohort: Cohort| {
        let mut d = CohortDeltas::new();
        d.insert(
            (id.to_string(), cohort),
            GroupStats {
                requests: req,
                errors: errs,
            },
        );
        d
    };
    // Eight gateways flush concurrently into the same window.
    let mut tasks = Vec::new();
    for g in 0..8u64 {
        let store = store.clone();
        let (t, c) = (
            delta(100 + g, g, Cohort::Treatment),
            delta(50, 1, Cohort::Control),
        );
        tasks.push(tokio::spawn(async move {
            flush_cohort_deltas(&store, t0, &t).await?;
            flush_cohort_deltas(&store, t0 + 1, &c).await
        }));
    }
    for t in tasks {
        t.await??;
    }
    // A later window.
    flush_cohort_deltas(
        &store,
        t0 + 10 * COHORT_WINDOW_MS,
        &delta(1000, 500, Cohort::Treatment),
    )
    .await?;

    let read = |from: u64, to: u64| {
        let store = store.clone();
        async move {
            store
                .run(|tx| async move { Ok::<_, TxError>(read_cohort_stats(&tx, id, from, to).await?) })
                .await
        }
    };
    let first = read(t0, t0 + 1).await?;
    let treat_req: u64 = (0..8).map(|g| 100 + g).sum();
    let treat_err: u64 = (0..8).sum();
    assert_eq!(
        first,
        CohortStats {
            cohort: GroupStats {
                requests: treat_req,
                errors: treat_err
            },
            control: GroupStats {
                requests: 400,
                errors: 8
            },
        }
    );
    let all = read(t0, t0 + 10 * COHORT_WINDOW_MS).await?;
    assert_eq!(all.cohort.requests, treat_req + 1000);
    let later = read(t0 + 5 * COHORT_WINDOW_MS, t0 + 20 * COHORT_WINDOW_MS).await?;
    assert_eq!(
        later.cohort,
        GroupStats {
            requests: 1000,
            errors: 500
        }
    );
    assert_eq!(later.control, GroupStats::default());

    // Trimming old windows keeps the newer ones.
    store
        .run(|tx| async move { Ok::<_, TxError>(clear_cohort_stats(&tx, id, t0 + 5 * COHORT_WINDOW_MS)?) })
        .await?;
    assert_eq!(read(t0, t0 + 10 * COHORT_WINDOW_MS).await?, later);
    Ok(())
}

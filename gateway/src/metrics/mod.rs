//! The gateway's metrics: one process-wide registry, the `metrics` crate's
//! recorder from `metrics-exporter-prometheus`, rendered as Prometheus text on
//! the admin listener's `/metrics` and, if configured, on a separate metrics
//! listener ([`listener`]). Every gateway in the process records into it (tests
//! run several gateways in one process; their figures then add up).
//!
//! # Adding a metric
//!
//! 1. Record it where the event happens with the facade macros
//!    (`metrics::counter!(NAME, "label" => value).increment(1)`, `gauge!`,
//!    `histogram!`). Label values must come from a bounded set (an enum's
//!    name, a configured queue, never a player id or a client's free text).
//! 2. Give it a help text: gateway metrics in [`catalogue`] (one line each);
//!    backend metrics next to their recording code (`describe()` in
//!    `outpost_backend::{store,matchmaker,telemetry}::metrics`, called from
//!    [`install`]). A histogram also needs its buckets in [`BUCKETS`] unless the
//!    default seconds buckets fit. The metrics-exist test
//!    (`gateway/tests/observability.rs`) fails on a `# TYPE` without `# HELP`.
//! 3. If dashboards or alerts should see a labelled series before its first
//!    event, register it at zero at startup (`counter!(..).increment(0)`).
//!
//! Names: `outpost_` prefix, base units (`_seconds`, `_bytes`) for new metrics,
//! `_total` for counters. Older metrics in milliseconds (`_ms`) keep their names.

pub mod catalogue;
pub(crate) mod gauges;
pub mod listener;
pub mod process;
pub mod requests;
#[cfg(target_os = "linux")]
mod sock_diag;
pub mod udp;

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use outpost_backend::{matchmaker, store, telemetry};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Upper bounds of request and other latency histograms, seconds (the default
/// for every histogram not in [`BUCKETS`]).
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Histograms whose buckets differ from [`SECONDS_BUCKETS`].
pub const BUCKETS: &[(&str, &[f64])] = &[
    (matchmaker::metrics::WAIT_MS, matchmaker::metrics::WAIT_BUCKETS_MS),
    (
        matchmaker::metrics::SKILL_SPREAD,
        matchmaker::metrics::SPREAD_BUCKETS,
    ),
    (
        matchmaker::metrics::BACKFILL_FILL_SECONDS,
        matchmaker::metrics::FILL_BUCKETS_SECONDS,
    ),
    (
        telemetry::metrics::LATENCY_MS,
        telemetry::metrics::LATENCY_BUCKETS_MS,
    ),
    (
        store::metrics::COMMIT_SECONDS,
        store::metrics::COMMIT_BUCKETS_SECONDS,
    ),
    (
        store::metrics::JOURNAL_SYNC_SECONDS,
        store::metrics::COMMIT_BUCKETS_SECONDS,
    ),
    (store::metrics::SYNC_BATCH, store::metrics::BATCH_BUCKETS),
    (
        store::metrics::COMMIT_LOCK_HELD_SECONDS,
        store::metrics::COMMIT_BUCKETS_SECONDS,
    ),
];

/// How often histogram samples are folded into their buckets when nobody
/// scrapes (a scrape does it too), so unscraped samples do not pile up.
const UPKEEP: Duration = Duration::from_secs(5);

/// Installs the recorder once per process (a no-op afterwards) and registers
/// every help text and the build info. If another recorder was installed first
/// (an embedding application's), ours stays off.
pub fn install() {
    HANDLE.get_or_init(|| {
        let handle = builder().install_recorder().ok()?;
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(UPKEEP);
                upkeep.run_upkeep();
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histograms fold at scrapes only");
        }
        catalogue::describe();
        matchmaker::metrics::describe();
        telemetry::metrics::describe();
        process::describe();
        udp::describe();
        metrics::gauge!(catalogue::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        Some(handle)
    });
}

fn builder() -> PrometheusBuilder {
    let mut b = PrometheusBuilder::new()
        .set_buckets(SECONDS_BUCKETS)
        .expect("non-empty buckets");
    for (name, buckets) in BUCKETS {
        b = b
            .set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
            .expect("non-empty buckets");
    }
    b
}

/// The Prometheus text exposition of every metric recorded so far.
pub fn render() -> String {
    HANDLE
        .get()
        .and_then(|h| h.as_ref())
        .map(|h| h.render())
        .unwrap_or_default()
}

/// Updates what is read at scrape time (admitted sessions, matchmaking pool
/// depth and partitions, process figures), then renders. What `/metrics` serves
/// on both listeners.
pub async fn scrape(h: &crate::server::GatewayHandle) -> String {
    h.refresh_gauges().await;
    process::refresh();
    udp::refresh().await;
    render()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bucket_overrides_build() {
        // `expect` in `builder` would panic at startup on an empty bucket list.
        let _ = super::builder();
    }
}

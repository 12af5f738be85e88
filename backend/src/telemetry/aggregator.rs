//! The in-memory telemetry aggregator a gateway keeps: client-reported errors and
//! latencies by (client version, platform, error code), in bounded memory, plus
//! pending per-rollout cohort counts to flush to the store.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::cohort::Cohort;
use super::cohort::CohortDeltas;
use super::TelemetryError;
use crate::content::ClientVersion;
use crate::names::is_valid_platform;

/// The label value that replaces a series once the series bound is reached, and
/// any label value that is not well-formed.
pub const OTHER: &str = "other";
/// Longest error code, in bytes (`[A-Za-z0-9_.-]`).
pub const MAX_ERROR_CODE_BYTES: usize = 64;

/// Aggregator bounds. A plain serde struct (e.g. a `[telemetry]` table in the
/// gateway's config); check it once with [`validate`](Self::validate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Most distinct (client version, platform, error code) error series. New
    /// label sets beyond it are counted in the `other/other/other` series.
    /// Default 1,000.
    pub max_error_series: usize,
    /// Most distinct (client version, platform) latency histograms; beyond it,
    /// samples go to `other/other`. Default 200.
    pub max_latency_series: usize,
    /// Most distinct (rollout, cohort) counters pending between flushes; beyond
    /// it, events are not counted for rollouts (counted in
    /// [`TelemetrySnapshot::dropped_cohort_events`]). Default 128.
    pub max_cohort_counters: usize,
    /// Upper bounds of the latency histogram's buckets, in milliseconds,
    /// strictly increasing, finite, positive, at most 32 (an implicit `+Inf`
    /// bucket follows). Default 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000,
    /// 10000. The exported metric `outpost_client_latency_ms` always has the
    /// default buckets ([`super::metrics::LATENCY_BUCKETS_MS`]).
    pub latency_buckets_ms: Vec<f64>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            max_error_series: 1000,
            max_latency_series: 200,
            max_cohort_counters: 128,
            latency_buckets_ms: super::metrics::LATENCY_BUCKETS_MS.to_vec(),
        }
    }
}

impl TelemetryConfig {
    /// Checks the bounds: every maximum ≥ 1, the buckets as documented.
    pub fn validate(&self) -> Result<(), TelemetryError> {
        let bad = |m: &str| Err(TelemetryError::InvalidConfig(m.to_owned()));
        if self.max_error_series == 0 || self.max_latency_series == 0 || self.max_cohort_counters == 0 {
            return bad("max_error_series, max_latency_series and max_cohort_counters must be at least 1");
        }
        let b = &self.latency_buckets_ms;
        if b.is_empty() || b.len() > 32 {
            return bad("latency_buckets_ms needs 1..=32 bounds");
        }
        if b.iter().any(|x| !x.is_finite() || *x <= 0.0) || b.windows(2).any(|w| w[0] >= w[1]) {
            return bad("latency_buckets_ms must be finite, positive and strictly increasing");
        }
        Ok(())
    }
}

/// What a client reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TelemetryKind {
    /// An operation failed with `code` (the SDK's or the game's error code).
    Error {
        /// The code, `[A-Za-z0-9_.-]`, 1..=64 bytes (anything else is counted as
        /// `other`).
        code: String,
    },
    /// An operation succeeded after `millis` milliseconds.
    Latency {
        /// The latency, finite and ≥ 0.
        millis: f64,
    },
}

/// One client-reported event, as the gateway hands it to the aggregator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetryEvent {
    /// The client's build version (from the session, not from the report).
    pub client_version: ClientVersion,
    /// The client's platform (from the session).
    pub platform: String,
    /// What happened.
    pub kind: TelemetryKind,
    /// The session's side of each running rollout: fill it from the gateway's
    /// own [`FlagSnapshot::memberships`](crate::flags::FlagSnapshot::memberships),
    /// never from the client's claim.
    #[serde(default)]
    pub rollouts: Vec<(String, Cohort)>,
}

/// Labels of an error series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ErrorLabels {
    /// Client version (or `other`).
    pub client_version: String,
    /// Platform (or `other`).
    pub platform: String,
    /// Error code (or `other`).
    pub code: String,
}

/// Labels of a latency series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct LatencyLabels {
    /// Client version (or `other`).
    pub client_version: String,
    /// Platform (or `other`).
    pub platform: String,
}

/// A latency histogram in Prometheus form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    /// `(upper bound ms, cumulative count)` per configured bucket; the `+Inf`
    /// bucket is [`count`](Self::count).
    pub buckets: Vec<(f64, u64)>,
    /// Sum of all samples, milliseconds.
    pub sum_ms: f64,
    /// Number of samples.
    pub count: u64,
}

/// Everything aggregated so far (counters are cumulative since start, as
/// Prometheus expects).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TelemetrySnapshot {
    /// Error counts per series, in label order.
    pub errors: Vec<(ErrorLabels, u64)>,
    /// Latency histograms per series, in label order.
    pub latencies: Vec<(LatencyLabels, Histogram)>,
    /// Events refused as malformed (a latency that is negative or not finite).
    pub rejected_events: u64,
    /// Events whose rollout membership could not be counted (cohort counter
    /// bound reached).
    pub dropped_cohort_events: u64,
}

#[derive(Debug, Clone)]
struct Hist {
    counts: Vec<u64>, // per bucket, non-cumulative; last = +Inf
    sum_ms: f64,
}

/// The aggregator. Not internally synchronized: wrap it in a mutex, or keep one
/// per connection-handling task and merge.
#[derive(Debug)]
pub struct TelemetryAggregator {
    config: TelemetryConfig,
    errors: HashMap<ErrorLabels, u64>,
    latencies: HashMap<LatencyLabels, Hist>,
    cohort: CohortDeltas,
    rejected: u64,
    dropped_cohort: u64,
}

fn error_code_ok(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= MAX_ERROR_CODE_BYTES
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn or_other(ok: bool, s: &str) -> String {
    if ok {
        s.to_owned()
    } else {
        OTHER.to_owned()
    }
}

impl TelemetryAggregator {
    /// An empty aggregator with `config` (validated).
    pub fn new(config: TelemetryConfig) -> Result<Self, TelemetryError> {
        config.validate()?;
        Ok(TelemetryAggregator {
            config,
            errors: HashMap::new(),
            latencies: HashMap::new(),
            cohort: CohortDeltas::new(),
            rejected: 0,
            dropped_cohort: 0,
        })
    }

    /// Counts one event.
    pub fn record(&mut self, ev: &TelemetryEvent) {
        let version = ev.client_version.to_string();
        let platform = or_other(is_valid_platform(&ev.platform), &ev.platform);
        let is_error = match &ev.kind {
            TelemetryKind::Error { code } => {
                let mut labels = ErrorLabels {
                    client_version: version,
                    platform,
                    code: or_other(error_code_ok(code), code),
                };
                if !self.errors.contains_key(&labels) && self.errors.len() >= self.config.max_error_series {
                    labels = ErrorLabels {
                        client_version: OTHER.into(),
                        platform: OTHER.into(),
                        code: OTHER.into(),
                    };
                }
                super::metrics::error(&labels);
                *self.errors.entry(labels).or_insert(0) += 1;
                true
            }
            TelemetryKind::Latency { millis } => {
                if !millis.is_finite() || *millis < 0.0 {
                    self.rejected += 1;
                    super::metrics::rejected();
                    return;
                }
                let mut labels = LatencyLabels {
                    client_version: version,
                    platform,
                };
                if !self.latencies.contains_key(&labels)
                    && self.latencies.len() >= self.config.max_latency_series
                {
                    labels = LatencyLabels {
                        client_version: OTHER.into(),
                        platform: OTHER.into(),
                    };
                }
                super::metrics::latency(&labels, *millis);
                let n = self.config.latency_buckets_ms.len();
                let h = self.latencies.entry(labels).or_insert_with(|| Hist {
                    counts: vec![0; n + 1],
                    sum_ms: 0.0,
                });
                let idx = self.config.latency_buckets_ms.partition_point(|b| *b < *millis);
                h.counts[idx] += 1;
                h.sum_ms += millis;
                false
            }
        };
        for (id, cohort) in &ev.rollouts {
            let key = (id.clone(), *cohort);
            if !self.cohort.contains_key(&key) && self.cohort.len() >= self.config.max_cohort_counters {
                self.dropped_cohort += 1;
                continue;
            }
            let g = self.cohort.entry(key).or_default();
            g.requests += 1;
            g.errors += u64::from(is_error);
        }
    }

    /// Number of distinct error and latency series held (bounded by the config,
    /// plus one `other` series each).
    pub fn series(&self) -> (usize, usize) {
        (self.errors.len(), self.latencies.len())
    }

    /// The cumulative figures (each event is also recorded through the
    /// `metrics` facade as it is counted, see [`super::metrics`]).
    pub fn snapshot(&self) -> TelemetrySnapshot {
        let errors: BTreeMap<_, _> = self.errors.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let latencies: BTreeMap<_, _> = self
            .latencies
            .iter()
            .map(|(k, h)| {
                let mut cum = 0;
                let buckets = self
                    .config
                    .latency_buckets_ms
                    .iter()
                    .zip(&h.counts)
                    .map(|(b, c)| {
                        cum += c;
                        (*b, cum)
                    })
                    .collect();
                let count = h.counts.iter().sum();
                (
                    k.clone(),
                    Histogram {
                        buckets,
                        sum_ms: h.sum_ms,
                        count,
                    },
                )
            })
            .collect();
        TelemetrySnapshot {
            errors: errors.into_iter().collect(),
            latencies: latencies.into_iter().collect(),
            rejected_events: self.rejected,
            dropped_cohort_events: self.dropped_cohort,
        }
    }

    /// Takes the rollout counts gathered since the last call (for
    /// [`flush_cohort_deltas`](super::flush_cohort_deltas)); the pending map is
    /// empty afterwards. If the flush fails, hand them back with
    /// [`restore_cohort_deltas`](Self::restore_cohort_deltas).
    pub fn take_cohort_deltas(&mut self) -> CohortDeltas {
        std::mem::take(&mut self.cohort)
    }

    /// Adds counts back after a failed flush (within the counter bound; the rest
    /// are dropped and counted).
    pub fn restore_cohort_deltas(&mut self, deltas: CohortDeltas) {
        for (key, d) in deltas {
            if !self.cohort.contains_key(&key) && self.cohort.len() >= self.config.max_cohort_counters {
                self.dropped_cohort += d.requests;
                continue;
            }
            let g = self.cohort.entry(key).or_default();
            g.requests += d.requests;
            g.errors += d.errors;
        }
    }
}

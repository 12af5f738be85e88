//! Client telemetry: clients report their own errors and latencies; the gateway
//! aggregates them into metrics by client version, platform and error code, and
//! into per-rollout cohort counters that rollout health gates read.
//!
//! # Design
//!
//! - **In memory, bounded** ([`TelemetryAggregator`]): each gateway counts errors
//!   per (client version, platform, error code) and keeps a latency histogram per
//!   (client version, platform). The number of series is bounded
//!   ([`TelemetryConfig`]); once full, new label sets are counted under `other`,
//!   and malformed labels become `other` too, so no client can grow the gateway's
//!   memory or its Prometheus cardinality. Each counted event is also recorded
//!   through the `metrics` facade under the bounded labels ([`metrics`]), which
//!   the gateway exports; [`TelemetryAggregator::snapshot`] gives the same
//!   figures in memory.
//! - **Rollout health in the store** ([`cohort`]): every event also counts one
//!   request (and, for errors, one error) for each running rollout the session
//!   takes part in, on its side (treatment cohort or control). The gateway flushes
//!   these counts every few seconds with [`flush_cohort_deltas`]: atomic adds into
//!   10-second windows under `("g", "tm", "ro", rollout, window, group, metric)`
//!   ([`keys`]), conflict-free, so every gateway of every region contributes. The
//!   rollout controller ([`crate::flags::Rollouts::tick`]) sums the windows of its
//!   gate's look-back with snapshot reads. Global, because a rollout's cohort
//!   spans regions.
//! - **Trust.** Client version and platform come from the session (login), and
//!   rollout membership from the gateway's own flag evaluation, not from the
//!   report; only the error code and latency are the client's.
//!
//! The gateway's loop:
//!
//! ```ignore
//! // per report from a session
//! agg.lock().record(&TelemetryEvent {
//!     client_version: session.client_version,
//!     platform: session.platform.clone(),
//!     kind: TelemetryKind::Error { code: report.code },
//!     rollouts: session.rollouts.clone(),      // FlagSnapshot::memberships
//! });
//! // every 2 s
//! let deltas = agg.lock().take_cohort_deltas();
//! if let Err(e) = flush_cohort_deltas(&global_store, unix_ms(), &deltas).await {
//!     agg.lock().restore_cohort_deltas(deltas);
//! }
//! ```

pub mod aggregator;
pub mod cohort;
pub mod keys;
pub mod metrics;

pub use aggregator::{
    ErrorLabels, Histogram, LatencyLabels, TelemetryAggregator, TelemetryConfig, TelemetryEvent,
    TelemetryKind, TelemetrySnapshot, MAX_ERROR_CODE_BYTES, OTHER,
};
pub use cohort::{
    clear_cohort_stats, flush_cohort_deltas, read_cohort_stats, Cohort, CohortDeltas, CohortStats, GroupStats,
};
pub use keys::COHORT_WINDOW_MS;

/// An error from telemetry configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A [`TelemetryConfig`] that breaks a rule.
    #[error("invalid telemetry config: {0}")]
    InvalidConfig(String),
}

impl crate::error_class::Classify for TelemetryError {
    fn class(&self) -> crate::error_class::ErrorClass {
        match self {
            TelemetryError::InvalidConfig(_) => crate::error_class::ErrorClass::Invalid,
        }
    }
}

#[cfg(test)]
mod tests;

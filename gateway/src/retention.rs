//! Retention GC of the **global** keyspace's live-ops data, run by every
//! gateway at a low rate: audit-log records older than
//! `liveness.audit_retention_ms`, and rollout cohort counters that no running
//! rollout owns (see `outpost_backend::audit::retention` and
//! `outpost_backend::flags::retention`).
//!
//! No lease: both collections are idempotent blind clears of data nobody
//! writes any more, so two gateways collecting at once only repeat a read. At
//! the default interval (10 minutes, jittered so a fleet started together does
//! not collect together) a pass with nothing to do costs one single-page range
//! read of the audit log plus one short read per rollout id that has counters.

use std::time::Duration;

use outpost_backend::audit::retention as audit_gc;
use outpost_backend::flags::retention::collect_stale_cohort_counters;
use outpost_backend::store::AnyStore;
use outpost_backend::time::now_ms;
use rand::Rng;
use tokio::sync::broadcast;
use tracing::{debug, warn};

use crate::liveness::LivenessSettings;

/// Most audit pages one pass deletes (each its own transaction of up to
/// 1,000 records), so a first pass over a years-old log cannot run for long;
/// the next pass goes on.
const MAX_AUDIT_PAGES_PER_PASS: usize = 50;

/// Runs global retention passes until `stop`.
pub(crate) async fn run(global: AnyStore, settings: LivenessSettings, mut stop: broadcast::Receiver<()>) {
    if settings.global_gc_interval_ms == 0 {
        return;
    }
    let interval = Duration::from_millis(settings.global_gc_interval_ms);
    loop {
        // First pass after a random part of the interval, then every interval
        // with ±10% jitter.
        let jitter = rand::thread_rng().gen_range(0.1..=1.1);
        tokio::select! {
            _ = stop.recv() => return,
            _ = tokio::time::sleep(interval.mul_f64(jitter)) => {}
        }
        pass(&global, &settings, now_ms()).await;
    }
}

/// One pass; failures are logged and retried next pass.
pub(crate) async fn pass(global: &AnyStore, settings: &LivenessSettings, now_ms: u64) {
    if settings.audit_retention_ms > 0 {
        // Kept while its age is at most the retention.
        let cutoff = now_ms
            .saturating_sub(settings.audit_retention_ms)
            .saturating_sub(1);
        let mut collected = 0;
        for _ in 0..MAX_AUDIT_PAGES_PER_PASS {
            match audit_gc::collect(global, cutoff, outpost_backend::audit::MAX_AUDIT_PAGE).await {
                Ok(r) => {
                    collected += r.collected;
                    if let Some(at) = r.oldest_kept_ms {
                        metrics::gauge!("outpost_gc_oldest_age_ms", "kind" => "audit_record")
                            .set(now_ms.saturating_sub(at) as f64);
                    }
                    if !r.more {
                        break;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "audit retention pass failed; retrying next pass");
                    break;
                }
            }
        }
        metrics::counter!("outpost_gc_collected_total", "kind" => "audit_record").increment(collected as u64);
        debug!(collected, "audit retention pass");
    }
    match collect_stale_cohort_counters(global, 100).await {
        Ok(r) => {
            metrics::counter!("outpost_gc_collected_total", "kind" => "rollout_counters")
                .increment(r.rollouts_cleared as u64);
        }
        Err(e) => warn!(error = %e, "rollout counter retention failed; retrying next pass"),
    }
}

#[cfg(test)]
mod tests {
    use outpost_backend::audit::{read, AuditQuery};
    use outpost_backend::flags::{Flag, FlagValue, Flags};
    use outpost_backend::store::StoreConfig;

    use super::*;

    #[tokio::test]
    async fn a_pass_deletes_audit_records_past_the_configured_retention_only() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let global = AnyStore::open(&StoreConfig::embedded(dir.path().join("store"))).await?;
        let flag = Flag {
            key: "new_shop".into(),
            description: String::new(),
            default: FlagValue::Bool(false),
            rules: vec![],
            enabled: true,
        };
        Flags::new(global.clone()).set_flag("ops", flag, None).await?;
        let written_at = read(&global, &AuditQuery::default()).await?[0].record.at_ms;
        let settings = LivenessSettings::default();

        pass(&global, &settings, written_at + settings.audit_retention_ms).await;
        assert_eq!(
            read(&global, &AuditQuery::default()).await?.len(),
            1,
            "exactly at the edge: kept"
        );
        pass(&global, &settings, written_at + settings.audit_retention_ms + 1).await;
        assert!(
            read(&global, &AuditQuery::default()).await?.is_empty(),
            "past it: deleted"
        );
        Ok(())
    }
}

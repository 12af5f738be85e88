//! Per-rollout cohort and control counters in the store: written by every
//! gateway with conflict-free atomic adds, summed over a time range by the rollout
//! controller; and the types those counters are read into ([`Cohort`],
//! [`GroupStats`], [`CohortStats`]), which the rollout machine in `flags`
//! consumes (so flags depends on telemetry, never the reverse).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::keys::{self, COHORT_WINDOW_MS};
use crate::store::{Store, StoreError, Transaction, TxError};

/// Which side of a rollout a session is on (for telemetry and health gates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cohort {
    /// Matches the rolled-out rule's conditions and is inside its percentage:
    /// gets the new value.
    Treatment,
    /// Matches the rule's conditions but is outside its percentage: the
    /// comparison group.
    Control,
}

/// Requests and errors reported by one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GroupStats {
    /// Operations reported (successes and errors).
    pub requests: u64,
    /// Errors reported.
    pub errors: u64,
}

impl GroupStats {
    /// Errors per request, in percent (0 with no requests).
    pub fn error_rate_pct(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            100.0 * self.errors.min(self.requests) as f64 / self.requests as f64
        }
    }
}

/// Both groups' statistics over a gate's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CohortStats {
    /// Players inside the rollout percentage.
    pub cohort: GroupStats,
    /// Players matching the rule but outside the percentage.
    pub control: GroupStats,
}

/// Requests and errors to add to rollouts' counters: `(rollout id, cohort)` →
/// counts. Build it with [`TelemetryAggregator::take_cohort_deltas`](super::TelemetryAggregator::take_cohort_deltas).
pub type CohortDeltas = BTreeMap<(String, Cohort), GroupStats>;

/// Adds `deltas` to the counters of the window containing `now_ms`, in one
/// transaction of atomic adds (never conflicts; safe from any number of
/// gateways). An empty map writes nothing.
///
/// Idempotent across the store's reruns: the flush writes its random id into
/// one of [`keys::FLUSH_SLOTS`] slots in the same transaction as its adds, and a
/// rerun that finds its id there (the earlier attempt committed though its
/// result was unknown) adds nothing. The slot may be overwritten by another
/// flush in between (1 in 4,096 per intervening flush), in which case that rare
/// rerun would count twice: health gates compare rates over thousands of
/// samples, so that is accepted rather than keeping one key per flush.
pub async fn flush_cohort_deltas<S: Store>(
    store: &S,
    now_ms: u64,
    deltas: &CohortDeltas,
) -> Result<(), StoreError> {
    if deltas.is_empty() {
        return Ok(());
    }
    let window = now_ms / COHORT_WINDOW_MS;
    let mut adds: Vec<(Vec<u8>, i64)> = Vec::with_capacity(deltas.len() * 2);
    for ((id, cohort), d) in deltas {
        if d.requests > 0 {
            adds.push((keys::counter(id, window, *cohort, false), d.requests as i64));
        }
        if d.errors > 0 {
            adds.push((keys::counter(id, window, *cohort, true), d.errors as i64));
        }
    }
    // Idempotency of this flush across reruns (see `keys::flush_slot`).
    let flush_id: u128 = rand::random();
    let slot = keys::flush_slot(flush_id);
    store
        .run(|tx| {
            let (adds, slot) = (adds.clone(), slot.clone());
            async move {
                if tx.get(&slot).await?.as_deref() == Some(&flush_id.to_be_bytes()[..]) {
                    return Ok(()); // an earlier attempt committed
                }
                tx.set(&slot, &flush_id.to_be_bytes())?;
                for (key, delta) in &adds {
                    tx.atomic_add(key, *delta)?;
                }
                Ok::<_, TxError>(())
            }
        })
        .await
        .map_err(|e| match e {
            TxError::Store(s) => s,
            TxError::User(never) => match never {},
        })
}

/// Sums a rollout's counters over the windows overlapping `[from_ms, to_ms]`,
/// with snapshot reads (no conflicts with concurrent adds).
pub async fn read_cohort_stats<T: Transaction>(
    tx: &T,
    rollout_id: &str,
    from_ms: u64,
    to_ms: u64,
) -> Result<CohortStats, StoreError> {
    let begin = keys::window_start(rollout_id, from_ms / COHORT_WINDOW_MS);
    let end = keys::window_start(rollout_id, to_ms / COHORT_WINDOW_MS + 1);
    let sub = keys::rollout(rollout_id);
    let mut stats = CohortStats::default();
    for kv in tx.get_range_snapshot(&begin, &end, None, false).await? {
        let Ok((_, group, metric)) = sub.unpack::<(u64, String, String)>(&kv.key) else {
            continue;
        };
        let v = crate::codec::decode_counter(Some(&kv.value)).max(0) as u64;
        let g = match group.as_str() {
            "t" => &mut stats.cohort,
            "c" => &mut stats.control,
            _ => continue,
        };
        match metric.as_str() {
            "req" => g.requests += v,
            "err" => g.errors += v,
            _ => {}
        }
    }
    Ok(stats)
}

/// Clears a rollout's counters in windows before the one containing
/// `before_ms` (`u64::MAX`: all of them). A blind range clear: no conflicts.
pub fn clear_cohort_stats<T: Transaction>(
    tx: &T,
    rollout_id: &str,
    before_ms: u64,
) -> Result<(), StoreError> {
    let (begin, end) = keys::rollout(rollout_id).range();
    let end = if before_ms == u64::MAX {
        end
    } else {
        keys::window_start(rollout_id, before_ms / COHORT_WINDOW_MS)
    };
    tx.clear_range(&begin, &end)
}

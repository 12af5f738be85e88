//! Telemetry's keys in the **global** keyspace.
//!
//! # Key Schema
//!
//! ```text
//! ("g", "tm", "ro", rollout_id, window, group, metric) -> 8-byte LE counter (atomic add, no schema byte)
//! ("g", "tm", "fl", slot)                              -> 16-byte id of the last flush in that slot
//! ```
//!
//! - `slot`: `flush_id % FLUSH_SLOTS`. A flush reads its slot and writes its id
//!   there in the same transaction as its adds, so its own rerun after an unknown
//!   commit result finds its id and adds nothing twice. Bounded (4,096 keys); a
//!   rerun whose slot another flush took in between (1 in 4,096 per intervening
//!   flush) would add twice.
//!
//! - `window`: `unix_ms / COHORT_WINDOW_MS` (10-second windows), an integer, so a
//!   rollout's windows sort by time and a time range is one range read.
//! - `group`: `"t"` (treatment cohort) or `"c"` (control); `metric`: `"req"`
//!   (operations reported) or `"err"` (errors reported).
//! - Written by every gateway with atomic adds (never conflicting, so any number
//!   of gateways contribute); read with snapshot range reads by the rollout
//!   controller (so the constant stream of adds never conflicts with it either).
//!   The controller clears a rollout's counters when it finishes and trims
//!   windows older than the longest look-back while it runs.

use foundationdb_tuple::Subspace;

use super::cohort::Cohort;

/// Length of one counter window, in milliseconds.
pub const COHORT_WINDOW_MS: u64 = 10_000;

/// Telemetry's subspace `("g", "tm")`.
pub fn root() -> Subspace {
    crate::keyspace::global_family("tm")
}

/// Number of flush idempotency slots.
pub const FLUSH_SLOTS: u64 = 4096;

/// `("g", "tm", "fl", slot)`: the last flush written to that slot.
pub fn flush_slot(flush_id: u128) -> Vec<u8> {
    root().pack(&("fl", (flush_id % u128::from(FLUSH_SLOTS)) as u64))
}

/// `("g", "tm", "ro", rollout_id)`: all of a rollout's counters.
pub fn rollout(rollout_id: &str) -> Subspace {
    root().subspace(&("ro", rollout_id))
}

/// The first key of window `window` of a rollout (inclusive range bound).
pub fn window_start(rollout_id: &str, window: u64) -> Vec<u8> {
    rollout(rollout_id).subspace(&(window,)).range().0
}

/// `("g", "tm", "ro", rollout_id, window, group, metric)`.
pub fn counter(rollout_id: &str, window: u64, cohort: Cohort, errors: bool) -> Vec<u8> {
    let group = match cohort {
        Cohort::Treatment => "t",
        Cohort::Control => "c",
    };
    rollout(rollout_id).pack(&(window, group, if errors { "err" } else { "req" }))
}

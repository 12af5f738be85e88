//! Target-seeking widening: a queue may name a target wait (say "p95 of 12 s")
//! and the core then adapts, per *widening pool*, how fast a ticket walks
//! through the queue's expansion steps, from the waits it observes. Pure
//! logic on the caller's time, deterministic: the same inputs give the same
//! speeds.
//!
//! # How
//!
//! A widening pool is `(queue, home region, rating bucket)`, the bucket being
//! `floor(rating / rating_bucket)`: players at the edges of the rating
//! distribution are few and wait long, the crowd in the middle finds matches
//! at once, so one speed for all would either keep the crowd's windows wider
//! than needed or leave the edges waiting.
//!
//! Each pool has a *speed* `s` (1: the fixed schedule). A ticket that has
//! waited `w` gets the expansion step of the *effective wait* `w × s`: with
//! `s < 1` windows widen more slowly than the steps say (smaller skill spread,
//! longer waits), with `s > 1` faster. With a deadline
//! ([`super::deadline`]), the effective wait is at least
//! `w − (deadline − last step's after_ms)`, so the widest window still applies
//! before the deadline however slow the pool is.
//!
//! After each round, every ticket that left the pool (matched, or given its
//! deadline outcome) is an observation of its pool: is its wait above the
//! target? The pool's `ln s` moves by `gain × (share above − (1 − percentile))`
//! over that round's observations, clamped to `[ln min_speed, ln max_speed]`:
//! the stochastic-approximation rule for a quantile, whose fixed point is the
//! speed at which `1 − percentile` of the waits exceed the target. A pool
//! whose waits stay below the target slows down to the slowest speed, which
//! is how skill spread stays as small as the target allows.
//!
//! The observations are of finished tickets: a ticket still waiting counts
//! once it finishes, so a pool reacts to a sudden drought one wait later (the
//! deadline bounds that).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::config::{ConfigError, QueueConfig};

/// A queue's wait target (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetWait {
    /// Which wait percentile to hold at the target, in `(0, 1)`: `0.95` is
    /// p95. Default 0.95.
    #[serde(default = "default_percentile")]
    pub percentile: f64,
    /// The target wait at that percentile, milliseconds (> 0).
    pub wait_ms: u64,
    /// Width of a widening pool's rating bucket, rating points (> 0). Default
    /// 200. Narrower buckets adapt the edges of the rating distribution more
    /// precisely but see fewer observations each (noisier speeds).
    #[serde(default = "default_bucket")]
    pub rating_bucket: f64,
    /// Slowest schedule speed (`0 < min_speed <= 1`). Default 0.25: windows
    /// widen at most four times more slowly than the steps say.
    #[serde(default = "default_min_speed")]
    pub min_speed: f64,
    /// Fastest schedule speed (`>= 1`). Default 8.
    #[serde(default = "default_max_speed")]
    pub max_speed: f64,
    /// How far `ln speed` moves per round at most (`0 < gain <= 1`). Default
    /// 0.05. Higher reacts faster to a changing population but oscillates
    /// more.
    #[serde(default = "default_gain")]
    pub gain: f64,
}

fn default_percentile() -> f64 {
    0.95
}
fn default_bucket() -> f64 {
    200.0
}
fn default_min_speed() -> f64 {
    0.25
}
fn default_max_speed() -> f64 {
    8.0
}
fn default_gain() -> f64 {
    0.05
}

impl TargetWait {
    /// A target of `wait_ms` at `percentile`, other settings default.
    pub fn new(percentile: f64, wait_ms: u64) -> Self {
        TargetWait {
            percentile,
            wait_ms,
            rating_bucket: default_bucket(),
            min_speed: default_min_speed(),
            max_speed: default_max_speed(),
            gain: default_gain(),
        }
    }
}

/// Checks a queue's `target_wait`.
pub(crate) fn validate(q: &QueueConfig) -> Result<(), ConfigError> {
    let Some(t) = q.target_wait else {
        return Ok(());
    };
    let bad = |reason| {
        Err(ConfigError::Queue {
            queue: q.name.clone(),
            reason,
        })
    };
    if !(t.percentile > 0.0 && t.percentile < 1.0) {
        return bad("target_wait.percentile must be within (0, 1)");
    }
    if t.wait_ms == 0 {
        return bad("target_wait.wait_ms must be > 0");
    }
    if !(t.rating_bucket.is_finite() && t.rating_bucket > 0.0) {
        return bad("target_wait.rating_bucket must be finite and > 0");
    }
    if !(t.min_speed > 0.0 && t.min_speed <= 1.0) {
        return bad("target_wait.min_speed must be within (0, 1]");
    }
    if !(t.max_speed.is_finite() && t.max_speed >= 1.0) {
        return bad("target_wait.max_speed must be finite and >= 1");
    }
    if !(t.gain > 0.0 && t.gain <= 1.0) {
        return bad("target_wait.gain must be within (0, 1]");
    }
    Ok(())
}

/// A widening pool: `(queue index, home region index, rating bucket)`.
pub(crate) type PoolKey = (u16, u16, i64);

/// The speeds of every widening pool, and this round's observations (see the
/// [module docs](self)). Keep it across rounds: a store worker carries it
/// from one round's core to the next ([`super::MatchCore::take_widening`]).
#[derive(Debug, Clone, Default)]
pub struct Widening {
    /// `ln speed` per pool (absent: 0, the fixed schedule).
    log_speed: HashMap<PoolKey, f64>,
    /// `(waits above the target, observations)` since the last adaptation.
    pending: HashMap<PoolKey, (u32, u32)>,
}

impl Widening {
    /// The pool of a ticket with `rating` in queue `qi`, home `home`.
    pub(crate) fn key(t: &TargetWait, qi: usize, home: u16, rating: f64) -> PoolKey {
        (qi as u16, home, (rating / t.rating_bucket).floor() as i64)
    }

    /// The pool's speed (1 for a pool never adapted).
    pub(crate) fn speed(&self, key: PoolKey) -> f64 {
        self.log_speed.get(&key).map_or(1.0, |l| l.exp())
    }

    /// The effective wait of a ticket that waited `waited_ms` in a pool with
    /// `speed`, for queue `q` (see the [module docs](self)).
    pub(crate) fn effective_wait(q: &QueueConfig, speed: f64, waited_ms: u64) -> u64 {
        let scaled = (waited_ms as f64 * speed).min(u64::MAX as f64 / 2.0) as u64;
        match q.deadline_ms {
            Some(d) => {
                let last = q.expansions.last().map_or(0, |s| s.after_ms);
                scaled.max(waited_ms.saturating_sub(d.saturating_sub(last)))
            }
            None => scaled,
        }
    }

    /// Records that a ticket of pool `key` left the pool after `waited_ms`.
    pub(crate) fn observe(&mut self, t: &TargetWait, key: PoolKey, waited_ms: u64) {
        let e = self.pending.entry(key).or_default();
        e.0 += u32::from(waited_ms > t.wait_ms);
        e.1 += 1;
    }

    /// Moves every observed pool's speed (once per round). `target` gives
    /// each queue's target by queue index.
    pub(crate) fn adapt(&mut self, target: impl Fn(u16) -> Option<TargetWait>) {
        // Sorted, so the result does not depend on the map's iteration order
        // (floating-point sums are not associative; each pool is independent
        // here, but keep it obviously deterministic).
        let mut pending: Vec<(PoolKey, (u32, u32))> = self.pending.drain().collect();
        pending.sort_unstable_by_key(|(k, _)| *k);
        for (key, (over, n)) in pending {
            let Some(t) = target(key.0) else { continue };
            let share = f64::from(over) / f64::from(n.max(1));
            let l = self.log_speed.entry(key).or_insert(0.0);
            *l = (*l + t.gain * (share - (1.0 - t.percentile))).clamp(t.min_speed.ln(), t.max_speed.ln());
        }
    }

    /// Pools with a speed, and the speed (for reports and tests).
    pub fn speeds(&self) -> impl Iterator<Item = (PoolKey, f64)> + '_ {
        self.log_speed.iter().map(|(k, l)| (*k, l.exp()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_moves_towards_the_target_and_stays_clamped() {
        let t = TargetWait::new(0.95, 10_000);
        let mut w = Widening::default();
        let key = (0, 0, 7);
        for _ in 0..1_000 {
            w.observe(&t, key, 30_000);
            w.adapt(|_| Some(t));
        }
        assert!((w.speed(key) - t.max_speed).abs() < 1e-9, "{}", w.speed(key));
        // Down by gain × (1 − percentile) per round: slower, by design.
        for _ in 0..2_000 {
            w.observe(&t, key, 1_000);
            w.adapt(|_| Some(t));
        }
        assert!((w.speed(key) - t.min_speed).abs() < 1e-9, "{}", w.speed(key));
        assert_eq!(w.speed((0, 0, 8)), 1.0, "another pool is untouched");
    }
}

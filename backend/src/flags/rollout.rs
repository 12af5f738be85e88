//! The progressive rollout controller as a pure state machine: time and cohort
//! statistics go in, actions come out. No clock, no store, no randomness, so it
//! is tested on a fake clock; [`Rollouts`](super::Rollouts) is the store-backed
//! driver around it.
//!
//! # Model
//!
//! A rollout drives the percentage of one rule of one flag through a
//! [`RolloutPlan`]: stages of increasing percentage, each held for at least its
//! `min_dwell_ms`. While a stage runs, its optional [`HealthGate`] compares the
//! error rate of the **cohort** (players inside the percentage, who get the
//! rule's value) with the **control** group (players matching the rule's
//! conditions but outside the percentage), over the gate's look-back window:
//!
//! - if both groups have at least `min_samples` requests and the cohort's error
//!   rate exceeds the control's by more than `max_excess_error_pp` percentage
//!   points, the rollout is **rolled back**: percentage → 0, state
//!   [`RolloutState::RolledBack`], for good (start a new rollout to retry);
//! - a gated stage advances only when its dwell time is over **and** the gate saw
//!   enough samples in both groups and found them healthy at that moment; with
//!   too few samples it holds (an operator may [`promote`](Rollout::promote) it);
//! - after the last stage's dwell the rollout is [`RolloutState::Completed`] and
//!   the percentage stays at the last stage's.
//!
//! A stage at 100 % has no control group, so it cannot be gated (refused by
//! [`RolloutPlan::validate`]). [`Rollout::kill`] is the kill switch: percentage
//! → 0 at once, state [`RolloutState::Killed`].

use serde::{Deserialize, Serialize};

use super::errors::RolloutError;
use super::types::FULL_BP;
use crate::telemetry::CohortStats;

/// Most stages in a plan.
pub const MAX_STAGES: usize = 16;
/// Longest dwell of one stage: 30 days.
pub const MAX_DWELL_MS: u64 = 30 * 24 * 3600 * 1000;
/// Shortest health-gate look-back: 10 s (one telemetry window).
pub const MIN_LOOKBACK_MS: u64 = 10_000;
/// Longest health-gate look-back: 1 hour (bounds the statistics read per tick).
pub const MAX_LOOKBACK_MS: u64 = 3600 * 1000;

/// A stage's health gate: when the cohort's error rate is worse than the
/// control's by more than the threshold, roll back.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthGate {
    /// How much higher the cohort's error rate may be than the control's, in
    /// percentage points (e.g. `2.0`: 3 % vs 1 % is fine, 3.5 % vs 1 % rolls
    /// back). 0..=100.
    pub max_excess_error_pp: f64,
    /// Requests each group needs in the look-back window before the gate
    /// decides anything (≥ 1). Default 100.
    #[serde(default = "default_min_samples")]
    pub min_samples: u64,
    /// How far back the gate looks (milliseconds, never before the stage
    /// started), 10 s..=1 h. Default 300,000 (5 min).
    #[serde(default = "default_lookback_ms")]
    pub lookback_ms: u64,
}

fn default_min_samples() -> u64 {
    100
}

fn default_lookback_ms() -> u64 {
    300_000
}

/// One stage of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// The rule's percentage during this stage, basis points (1..=10,000).
    pub percentage_bp: u32,
    /// Minimum time at this stage before the next (milliseconds, ≤ 30 days).
    pub min_dwell_ms: u64,
    /// Optional health gate (not allowed at 10,000: no control group).
    #[serde(default)]
    pub gate: Option<HealthGate>,
}

/// A rollout plan: stages with non-decreasing percentages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutPlan {
    /// The stages, 1..=16.
    pub stages: Vec<Stage>,
}

impl RolloutPlan {
    /// Checks the plan: 1..=16 stages, percentages in 1..=10,000 and
    /// non-decreasing, dwell ≤ 30 days, gates with a finite threshold in 0..=100
    /// pp, `min_samples` ≥ 1, look-back within 10 s..=1 h, no gate at 100 %.
    pub fn validate(&self) -> Result<(), RolloutError> {
        let bad = |m: String| Err(RolloutError::InvalidPlan(m));
        if self.stages.is_empty() || self.stages.len() > MAX_STAGES {
            return bad(format!("{} stages, need 1..={MAX_STAGES}", self.stages.len()));
        }
        let mut prev = 0;
        for (i, s) in self.stages.iter().enumerate() {
            if s.percentage_bp == 0 || s.percentage_bp > FULL_BP {
                return bad(format!(
                    "stage {i}: percentage_bp {} not in 1..={FULL_BP}",
                    s.percentage_bp
                ));
            }
            if s.percentage_bp < prev {
                return bad(format!(
                    "stage {i}: percentage_bp {} is below the previous stage's {prev}",
                    s.percentage_bp
                ));
            }
            prev = s.percentage_bp;
            if s.min_dwell_ms > MAX_DWELL_MS {
                return bad(format!("stage {i}: min_dwell_ms over 30 days"));
            }
            if let Some(g) = &s.gate {
                if s.percentage_bp == FULL_BP {
                    return bad(format!(
                        "stage {i}: a stage at 100% has no control group and cannot be gated"
                    ));
                }
                if !g.max_excess_error_pp.is_finite() || !(0.0..=100.0).contains(&g.max_excess_error_pp) {
                    return bad(format!("stage {i}: max_excess_error_pp must be in 0..=100"));
                }
                if g.min_samples == 0 {
                    return bad(format!("stage {i}: min_samples must be at least 1"));
                }
                if !(MIN_LOOKBACK_MS..=MAX_LOOKBACK_MS).contains(&g.lookback_ms) {
                    return bad(format!(
                        "stage {i}: lookback_ms must be in {MIN_LOOKBACK_MS}..={MAX_LOOKBACK_MS}"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Where a rollout is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RolloutState {
    /// At stage `stage` since `stage_started_ms`.
    Running {
        /// Index into the plan's stages.
        stage: usize,
        /// When the stage began (unix ms).
        stage_started_ms: u64,
    },
    /// Finished its last stage; the percentage stays at the last stage's.
    Completed {
        /// When (unix ms).
        at_ms: u64,
    },
    /// The health gate rolled it back; percentage 0.
    RolledBack {
        /// When (unix ms).
        at_ms: u64,
        /// The stage it was at.
        stage: usize,
        /// The statistics that crossed the threshold.
        stats: CohortStats,
    },
    /// An operator killed it; percentage 0.
    Killed {
        /// When (unix ms).
        at_ms: u64,
        /// Who.
        by: String,
    },
}

/// What a transition did; the driver applies and audits each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RolloutAction {
    /// Set the rule's percentage.
    SetPercentage {
        /// Before (basis points).
        from_bp: u32,
        /// After (basis points).
        to_bp: u32,
    },
    /// Moved to another stage.
    EnterStage {
        /// The stage left.
        from: usize,
        /// The stage entered.
        to: usize,
    },
    /// The gate tripped: the cohort's error rate exceeded the control's by
    /// `excess_pp` percentage points.
    RollBack {
        /// The stage.
        stage: usize,
        /// The statistics.
        stats: CohortStats,
        /// Cohort rate minus control rate, percentage points.
        excess_pp: f64,
    },
    /// The last stage's dwell is over.
    Complete,
    /// The kill switch.
    Kill {
        /// Who pulled it.
        by: String,
    },
}

/// A rollout of one rule of one flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// Id: `ro-` + 16 lowercase hex.
    pub id: String,
    /// The flag.
    pub flag: String,
    /// The rule whose percentage it drives.
    pub rule: String,
    /// The plan.
    pub plan: RolloutPlan,
    /// Where it is.
    pub state: RolloutState,
    /// Who started it.
    pub created_by: String,
    /// When (unix ms).
    pub created_ms: u64,
    /// +1 per stored change.
    pub version: u64,
}

impl Rollout {
    /// A rollout at its first stage, started at `now_ms`.
    pub fn new(
        id: String,
        flag: String,
        rule: String,
        plan: RolloutPlan,
        created_by: String,
        now_ms: u64,
    ) -> Self {
        Rollout {
            id,
            flag,
            rule,
            plan,
            state: RolloutState::Running {
                stage: 0,
                stage_started_ms: now_ms,
            },
            created_by,
            created_ms: now_ms,
            version: 1,
        }
    }

    /// The rule's percentage in this state (basis points).
    pub fn percentage_bp(&self) -> u32 {
        match &self.state {
            RolloutState::Running { stage, .. } => self.plan.stages[*stage].percentage_bp,
            RolloutState::Completed { .. } => self.plan.stages.last().map_or(0, |s| s.percentage_bp),
            RolloutState::RolledBack { .. } | RolloutState::Killed { .. } => 0,
        }
    }

    /// Whether it is still running (owns its rule's percentage, reads stats).
    pub fn is_running(&self) -> bool {
        matches!(self.state, RolloutState::Running { .. })
    }

    /// The window `[from_ms, now_ms]` whose statistics the current stage's gate
    /// needs, or `None` if there is no gate to evaluate.
    pub fn stats_window(&self, now_ms: u64) -> Option<(u64, u64)> {
        let RolloutState::Running {
            stage,
            stage_started_ms,
        } = self.state
        else {
            return None;
        };
        let gate = self.plan.stages[stage].gate?;
        Some((
            stage_started_ms.max(now_ms.saturating_sub(gate.lookback_ms)),
            now_ms,
        ))
    }

    /// One controller step at `now_ms`, with `stats` over
    /// [`stats_window`](Self::stats_window). Returns what changed (nothing if
    /// nothing did).
    pub fn advance(&mut self, now_ms: u64, stats: &CohortStats) -> Vec<RolloutAction> {
        let RolloutState::Running {
            stage,
            stage_started_ms,
        } = self.state
        else {
            return Vec::new();
        };
        let current = self.plan.stages[stage];
        let healthy = match current.gate {
            None => true,
            Some(g) => {
                let enough =
                    stats.cohort.requests >= g.min_samples && stats.control.requests >= g.min_samples;
                if !enough {
                    false
                } else {
                    let excess = stats.cohort.error_rate_pct() - stats.control.error_rate_pct();
                    if excess > g.max_excess_error_pp {
                        let from_bp = self.percentage_bp();
                        self.state = RolloutState::RolledBack {
                            at_ms: now_ms,
                            stage,
                            stats: *stats,
                        };
                        return vec![
                            RolloutAction::RollBack {
                                stage,
                                stats: *stats,
                                excess_pp: excess,
                            },
                            RolloutAction::SetPercentage { from_bp, to_bp: 0 },
                        ];
                    }
                    true
                }
            }
        };
        if !healthy || now_ms < stage_started_ms.saturating_add(current.min_dwell_ms) {
            return Vec::new();
        }
        self.next_stage(now_ms, stage)
    }

    fn next_stage(&mut self, now_ms: u64, stage: usize) -> Vec<RolloutAction> {
        let from_bp = self.percentage_bp();
        if stage + 1 == self.plan.stages.len() {
            self.state = RolloutState::Completed { at_ms: now_ms };
            return vec![RolloutAction::Complete];
        }
        self.state = RolloutState::Running {
            stage: stage + 1,
            stage_started_ms: now_ms,
        };
        let to_bp = self.percentage_bp();
        let mut actions = vec![RolloutAction::EnterStage {
            from: stage,
            to: stage + 1,
        }];
        if to_bp != from_bp {
            actions.push(RolloutAction::SetPercentage { from_bp, to_bp });
        }
        actions
    }

    /// An operator moves the rollout to its next stage now, skipping the rest of
    /// the dwell time and the gate's verdict on this stage (the next stage's gate
    /// still applies). Refused at the last stage and once finished.
    pub fn promote(&mut self, now_ms: u64) -> Result<Vec<RolloutAction>, RolloutError> {
        let RolloutState::Running { stage, .. } = self.state else {
            return Err(RolloutError::Finished(self.id.clone()));
        };
        if stage + 1 == self.plan.stages.len() {
            return Err(RolloutError::AtLastStage(self.id.clone()));
        }
        Ok(self.next_stage(now_ms, stage))
    }

    /// The kill switch: percentage → 0 at once, state [`RolloutState::Killed`].
    /// Refused once finished: after completion the rule belongs to the flag
    /// again (switch it off with the flag's own kill switch, `enabled: false`).
    pub fn kill(&mut self, now_ms: u64, by: &str) -> Result<Vec<RolloutAction>, RolloutError> {
        if !self.is_running() {
            return Err(RolloutError::Finished(self.id.clone()));
        }
        let from_bp = self.percentage_bp();
        self.state = RolloutState::Killed {
            at_ms: now_ms,
            by: by.to_owned(),
        };
        Ok(vec![
            RolloutAction::Kill { by: by.to_owned() },
            RolloutAction::SetPercentage { from_bp, to_bp: 0 },
        ])
    }
}

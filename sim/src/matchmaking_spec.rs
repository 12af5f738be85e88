//! The `[matchmaking]` section of a scenario (model mode's matchmaker, and
//! the local gateway's pool): its types and validation.

use serde::{Deserialize, Serialize};

use crate::dist::Dist;
use crate::scenario::{Scenario, ScenarioError};

/// One expansion step of the skill window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpansionSpec {
    /// Wait after which this step applies, seconds (the first step: 0).
    pub after_s: f64,
    /// Widest accepted rating spread in a match, rating points.
    pub max_skill_diff: f64,
}

/// Cross-region fallback.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrossRegionSpec {
    /// Wait after which a ticket may play in a neighbour region, seconds.
    pub after_s: f64,
    /// Highest round-trip time to that region a ticket accepts, ms.
    pub max_latency_ms: u32,
}

/// The matchmaking part of model mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchmakingSpec {
    /// Queue name (`[a-z0-9_-]`). Default `default`.
    #[serde(default = "default_queue")]
    pub queue: String,
    /// Teams per match.
    pub teams: u32,
    /// Players per team.
    pub team_size: u32,
    /// Skill window steps (first `after_s = 0`, increasing).
    pub expansions: Vec<ExpansionSpec>,
    /// Cross-region fallback; none by default.
    #[serde(default)]
    pub cross_region: Option<CrossRegionSpec>,
    /// Period of matching rounds, ms of virtual time. Default 1,000.
    #[serde(default = "thousand")]
    pub round_interval_ms: u64,
    /// Player skill rating.
    pub skill: Dist,
    /// Rating uncertainty. Default fixed 0.
    #[serde(default = "zero")]
    pub uncertainty: Dist,
    /// Extra skill window per point of uncertainty. Default 0.
    #[serde(default)]
    pub uncertainty_widening: f64,
    /// Length of a match, seconds; the player is busy meanwhile.
    pub match_duration_s: Dist,
    /// Bounded wait, seconds: a ticket still waiting this long ends without a
    /// match (the player goes back to the lobby). Default none.
    #[serde(default)]
    pub deadline_s: Option<f64>,
    /// Target-seeking widening (backend `QueueConfig::target_wait`). Default
    /// none: the fixed steps.
    #[serde(default)]
    pub target_wait: Option<TargetWaitSpec>,
}

/// A queue's wait target (backend `matchmaker::widening`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetWaitSpec {
    /// Wait percentile to hold at the target, in (0, 1). Default 0.95.
    #[serde(default = "p95")]
    pub percentile: f64,
    /// Target wait at that percentile, seconds.
    pub wait_s: f64,
    /// Rating points per widening pool. Default 200.
    #[serde(default = "two_hundred")]
    pub rating_bucket: f64,
}

fn p95() -> f64 {
    0.95
}

fn two_hundred() -> f64 {
    200.0
}

fn thousand() -> u64 {
    1_000
}
fn zero() -> Dist {
    Dist::Fixed { value: 0.0 }
}
fn default_queue() -> String {
    "default".into()
}

impl Scenario {
    pub(crate) fn validate_matchmaking(&self, m: &MatchmakingSpec) -> Result<(), ScenarioError> {
        let bad = |m: String| Err(ScenarioError::Invalid(m));
        let players = u64::from(m.teams) * u64::from(m.team_size);
        if m.teams == 0 || m.team_size == 0 || !(2..=200).contains(&players) {
            return bad(
                "matchmaking: teams and team_size must be >= 1 with 2..=200 players per match".into(),
            );
        }
        if m.round_interval_ms == 0 {
            return bad("matchmaking.round_interval_ms must be > 0".into());
        }
        let first_ok = m.expansions.first().is_some_and(|e| e.after_s == 0.0);
        let ordered = m
            .expansions
            .windows(2)
            .all(|w| w[1].after_s > w[0].after_s && w[1].max_skill_diff >= w[0].max_skill_diff);
        let finite = m
            .expansions
            .iter()
            .all(|e| e.after_s.is_finite() && e.max_skill_diff.is_finite() && e.max_skill_diff >= 0.0);
        if !(first_ok && ordered && finite) {
            return bad("matchmaking.expansions: the first step has after_s = 0; after_s strictly increases and max_skill_diff never decreases".into());
        }
        if !(m.uncertainty_widening.is_finite() && m.uncertainty_widening >= 0.0) {
            return bad("matchmaking.uncertainty_widening must be >= 0".into());
        }
        if m.cross_region
            .is_some_and(|c| !(c.after_s.is_finite() && c.after_s >= 0.0))
        {
            return bad("matchmaking.cross_region.after_s must be >= 0".into());
        }
        for (what, d) in [
            ("skill", &m.skill),
            ("uncertainty", &m.uncertainty),
            ("match_duration_s", &m.match_duration_s),
        ] {
            d.validate()
                .or_else(|e| bad(format!("matchmaking.{what}: {e}")))?;
        }
        Ok(())
    }
}

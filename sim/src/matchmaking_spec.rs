//! The `[matchmaking]` section of a scenario (model mode's matchmaker, and
//! the local gateway's pool): its types and validation.

use outpost_backend::matchmaker::{
    CrossRegionConfig, ExpansionStep, MatchmakerConfig, QueueConfig, RegionConfig, TargetWait,
};
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
    /// Model mode only: run the real store-backed pool (embedded store,
    /// partitions, workers with leases) instead of the core alone
    /// (`src/model_store.rs`). Default none; `outpost-sim model --store`
    /// switches it on.
    #[serde(default)]
    pub store: Option<StoreSpec>,
}

/// `[matchmaking.store]`: model mode through the store-backed pool.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSpec {
    /// Skill-band partitions per region (band edges at the quantiles of
    /// `skill`), one worker with its own lease per partition. Default 1.
    #[serde(default = "one")]
    pub partitions: u32,
    /// Match commits in flight per partition round. Default 64.
    #[serde(default = "sixty_four")]
    pub commit_concurrency: usize,
}

impl Default for StoreSpec {
    fn default() -> Self {
        StoreSpec {
            partitions: one(),
            commit_concurrency: sixty_four(),
        }
    }
}

fn one() -> u32 {
    1
}

fn sixty_four() -> usize {
    64
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
        if m.store
            .is_some_and(|st| !(1..=256).contains(&st.partitions) || st.commit_concurrency == 0)
        {
            return bad("matchmaking.store: partitions must be 1..=256 and commit_concurrency > 0".into());
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

/// The backend matchmaker configuration a scenario describes.
pub fn matchmaker_config(s: &Scenario, m: &MatchmakingSpec) -> MatchmakerConfig {
    let ms = |s: f64| (s * 1000.0).round() as u64;
    MatchmakerConfig {
        regions: s
            .regions
            .iter()
            .map(|r| RegionConfig {
                name: r.name.clone(),
                neighbours: r.neighbours.iter().map(|n| n.name.clone()).collect(),
            })
            .collect(),
        queues: vec![QueueConfig {
            name: m.queue.clone(),
            teams: m.teams,
            team_size: m.team_size,
            expansions: m
                .expansions
                .iter()
                .map(|e| ExpansionStep {
                    after_ms: ms(e.after_s),
                    max_skill_diff: e.max_skill_diff,
                })
                .collect(),
            uncertainty_widening: m.uncertainty_widening,
            cross_region: m.cross_region.map(|c| CrossRegionConfig {
                after_ms: ms(c.after_s),
                max_latency_ms: c.max_latency_ms,
            }),
            skill_bands: m.store.map_or_else(Vec::new, |st| {
                crate::model_store::band_edges(&m.skill, st.partitions)
            }),
            band_borrow_after_ms: None,
            deadline_ms: m.deadline_s.map(ms),
            target_wait: m.target_wait.map(|t| TargetWait {
                rating_bucket: t.rating_bucket,
                ..TargetWait::new(t.percentile, ms(t.wait_s))
            }),
        }],
    }
}

//! Matchmaker configuration: regions and queues as plain serde structs, validated
//! once by [`MatchmakerConfig::validate`] (the core and the store-backed
//! matchmaker refuse an unvalidated config by calling it themselves).
//!
//! ```toml
//! [[regions]]
//! name = "eu-west"
//! neighbours = ["eu-central"]
//!
//! [[regions]]
//! name = "eu-central"
//! neighbours = ["eu-west"]
//!
//! [[queues]]
//! name = "ranked-5v5"
//! teams = 2
//! team_size = 5
//! skill_bands = [1200.0, 1800.0]      # three bands: < 1200, 1200..1800, >= 1800
//! expansions = [
//!   { after_ms = 0,      max_skill_diff = 50.0 },
//!   { after_ms = 5_000,  max_skill_diff = 150.0 },
//!   { after_ms = 15_000, max_skill_diff = 400.0 },
//! ]
//! cross_region = { after_ms = 20_000, max_latency_ms = 80 }
//! ```

use serde::{Deserialize, Serialize};

use crate::keyspace::RegionName;

/// Most players one match may hold (teams × team size).
pub const MAX_MATCH_PLAYERS: u32 = 200;
/// Most skill bands (partitions per queue and region).
pub const MAX_SKILL_BANDS: usize = 64;

/// One step of a queue's skill window: from `after_ms` of waiting on, a ticket
/// accepts matches whose skill spread (highest minus lowest ticket rating) is at
/// most `max_skill_diff` (as GameLift FlexMatch expansions).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpansionStep {
    /// Wait (milliseconds since the ticket was created) from which this step
    /// applies. The first step must have `after_ms = 0`; later steps strictly
    /// increase.
    pub after_ms: u64,
    /// Widest accepted rating spread in the match, in rating points. Must not
    /// decrease from one step to the next.
    pub max_skill_diff: f64,
}

/// Cross-region fallback of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrossRegionConfig {
    /// Wait (milliseconds) after which a ticket may be matched in a neighbour of
    /// its home region.
    pub after_ms: u64,
    /// Highest measured latency (milliseconds) to the neighbour region a ticket
    /// accepts. A ticket's own `max_latency_ms`, if lower, wins.
    pub max_latency_ms: u32,
}

/// One queue (game mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Queue name: 1..=32 characters of `[a-z0-9_-]`.
    pub name: String,
    /// Number of teams in a match (1v1 and 5v5: 2; battle royale squads: 25).
    pub teams: u32,
    /// Players per team (1v1: 1; 5v5: 5; squads: 4). A match is always full:
    /// `teams × team_size` players, at most [`MAX_MATCH_PLAYERS`].
    pub team_size: u32,
    /// Skill window steps, by wait time (see [`ExpansionStep`]).
    pub expansions: Vec<ExpansionStep>,
    /// Extra window per point of a ticket's rating uncertainty (window =
    /// step's `max_skill_diff + uncertainty_widening × uncertainty`). Default 0.
    #[serde(default)]
    pub uncertainty_widening: f64,
    /// Cross-region fallback; `None` (default): tickets only play in their home
    /// region.
    #[serde(default)]
    pub cross_region: Option<CrossRegionConfig>,
    /// Rating boundaries that split the queue's pool into skill bands (store
    /// partitions), strictly increasing; band `i` holds ratings in
    /// `[skill_bands[i-1], skill_bands[i])`. Default: empty (one band).
    #[serde(default)]
    pub skill_bands: Vec<f64>,
    /// Wait (milliseconds) after which a worker also considers a ticket from the
    /// adjacent skill band, so that tickets near a band boundary still meet.
    /// Default (`None`): the `after_ms` of the second expansion step (never, if
    /// there is one step).
    #[serde(default)]
    pub band_borrow_after_ms: Option<u64>,
    /// Bounded wait, milliseconds: a ticket still waiting this long gets a
    /// final "no match" outcome (reason `deadline`) pushed to its players
    /// instead of waiting on in silence (see [`super::deadline`]). Must come
    /// after the last expansion step's `after_ms` and after
    /// `cross_region.after_ms`, so the widest window and the fallback get
    /// their chance first; at most one day. Default `None`: tickets wait
    /// until matched, cancelled or removed. Trade-off: a short deadline bounds
    /// every wait but sends players with rare ratings or from small regions
    /// back to the menu more often; it should be well above the wait a queue
    /// targets (e.g. 120 s for a 12 s p95).
    #[serde(default)]
    pub deadline_ms: Option<u64>,
    /// Target-seeking widening: adapt per pool how fast tickets walk through
    /// `expansions` so that the given wait percentile meets its target,
    /// keeping skill spread as small as that allows (see
    /// [`super::widening`]). Default `None`: the fixed steps.
    #[serde(default)]
    pub target_wait: Option<super::widening::TargetWait>,
}

/// One region of the matchmaker (a place game servers run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// Region name (a [`RegionName`]).
    pub name: String,
    /// Regions a ticket of this region may fall back to (see
    /// [`CrossRegionConfig`]). Every name must be a configured region.
    #[serde(default)]
    pub neighbours: Vec<String>,
}

/// The whole matchmaker configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchmakerConfig {
    /// Regions tickets may be matched in (at least one, at most 1,000).
    pub regions: Vec<RegionConfig>,
    /// Queues (at least one).
    pub queues: Vec<QueueConfig>,
}

/// An invalid [`MatchmakerConfig`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No regions or no queues.
    #[error("matchmaker config: at least one region and one queue are required")]
    Empty,
    /// Too many regions.
    #[error("matchmaker config: at most 1000 regions")]
    TooManyRegions,
    /// A region name breaks the [`RegionName`] rules, or repeats.
    #[error("matchmaker config: invalid or duplicate region {0:?}")]
    Region(String),
    /// A neighbour that is not a configured region, or the region itself.
    #[error("matchmaker config: region {region:?} has unknown or self neighbour {neighbour:?}")]
    Neighbour {
        /// The region.
        region: String,
        /// The bad neighbour.
        neighbour: String,
    },
    /// A queue name outside `[a-z0-9_-]{1,32}`, or a repeated one.
    #[error("matchmaker config: invalid or duplicate queue name {0:?}")]
    QueueName(String),
    /// Team count or size out of range.
    #[error(
        "matchmaker config: queue {0:?}: teams and team_size must be >= 1, with 2..=200 players per match"
    )]
    TeamShape(String),
    /// Expansion steps out of order or invalid.
    #[error("matchmaker config: queue {queue:?}: expansions: {reason}")]
    Expansions {
        /// The queue.
        queue: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Skill band boundaries out of order, not finite, or too many.
    #[error("matchmaker config: queue {0:?}: skill_bands must be finite, strictly increasing, at most 63 boundaries")]
    SkillBands(String),
    /// `uncertainty_widening` negative or not finite, or cross-region bound zero.
    #[error("matchmaker config: queue {queue:?}: {reason}")]
    Queue {
        /// The queue.
        queue: String,
        /// What is wrong.
        reason: &'static str,
    },
}

fn valid_queue_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

impl QueueConfig {
    /// Players in one full match.
    pub fn match_players(&self) -> u32 {
        self.teams * self.team_size
    }

    /// Number of skill bands (partitions per region).
    pub fn band_count(&self) -> usize {
        self.skill_bands.len() + 1
    }

    /// The skill band of a rating (0-based).
    pub fn band_of(&self, rating: f64) -> usize {
        self.skill_bands.partition_point(|&b| b <= rating)
    }

    /// Index of the expansion step in force after waiting `waited_ms`.
    pub fn step_at(&self, waited_ms: u64) -> usize {
        self.expansions
            .partition_point(|s| s.after_ms <= waited_ms)
            .saturating_sub(1)
    }

    /// When a worker borrows tickets from adjacent bands (see
    /// [`band_borrow_after_ms`](Self::band_borrow_after_ms)); `None`: never.
    pub fn effective_band_borrow_after_ms(&self) -> Option<u64> {
        self.band_borrow_after_ms
            .or_else(|| self.expansions.get(1).map(|s| s.after_ms))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let q = || self.name.clone();
        let players = u64::from(self.teams) * u64::from(self.team_size);
        if self.teams == 0 || self.team_size == 0 || !(2..=u64::from(MAX_MATCH_PLAYERS)).contains(&players) {
            return Err(ConfigError::TeamShape(q()));
        }
        let exp = |reason| ConfigError::Expansions { queue: q(), reason };
        let first = self
            .expansions
            .first()
            .ok_or_else(|| exp("at least one step is required"))?;
        if first.after_ms != 0 {
            return Err(exp("the first step must have after_ms = 0"));
        }
        for s in &self.expansions {
            if !s.max_skill_diff.is_finite() || s.max_skill_diff < 0.0 {
                return Err(exp("max_skill_diff must be finite and >= 0"));
            }
        }
        for w in self.expansions.windows(2) {
            if w[1].after_ms <= w[0].after_ms {
                return Err(exp("after_ms must strictly increase"));
            }
            if w[1].max_skill_diff < w[0].max_skill_diff {
                return Err(exp("max_skill_diff must not decrease"));
            }
        }
        if !self.uncertainty_widening.is_finite() || self.uncertainty_widening < 0.0 {
            return Err(ConfigError::Queue {
                queue: q(),
                reason: "uncertainty_widening must be finite and >= 0",
            });
        }
        if self.cross_region.is_some_and(|c| c.max_latency_ms == 0) {
            return Err(ConfigError::Queue {
                queue: q(),
                reason: "cross_region.max_latency_ms must be > 0",
            });
        }
        let bands_ok = self.skill_bands.len() < MAX_SKILL_BANDS
            && self.skill_bands.iter().all(|b| b.is_finite())
            && self.skill_bands.windows(2).all(|w| w[0] < w[1]);
        if !bands_ok {
            return Err(ConfigError::SkillBands(q()));
        }
        super::deadline::validate(self)?;
        super::widening::validate(self)
    }
}

impl MatchmakerConfig {
    /// Checks every rule stated on the fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.regions.is_empty() || self.queues.is_empty() {
            return Err(ConfigError::Empty);
        }
        if self.regions.len() > 1000 {
            return Err(ConfigError::TooManyRegions);
        }
        let mut names = std::collections::HashSet::new();
        for r in &self.regions {
            if RegionName::new(r.name.clone()).is_err() || !names.insert(r.name.as_str()) {
                return Err(ConfigError::Region(r.name.clone()));
            }
        }
        for r in &self.regions {
            for n in &r.neighbours {
                if n == &r.name || !names.contains(n.as_str()) {
                    return Err(ConfigError::Neighbour {
                        region: r.name.clone(),
                        neighbour: n.clone(),
                    });
                }
            }
        }
        let mut queues = std::collections::HashSet::new();
        for q in &self.queues {
            if !valid_queue_name(&q.name) || !queues.insert(q.name.as_str()) {
                return Err(ConfigError::QueueName(q.name.clone()));
            }
            q.validate()?;
        }
        Ok(())
    }

    /// The queue named `name`.
    pub fn queue(&self, name: &str) -> Option<&QueueConfig> {
        self.queues.iter().find(|q| q.name == name)
    }

    /// The region named `name`.
    pub fn region(&self, name: &str) -> Option<&RegionConfig> {
        self.regions.iter().find(|r| r.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn five_v_five() -> QueueConfig {
        QueueConfig {
            name: "ranked-5v5".into(),
            teams: 2,
            team_size: 5,
            expansions: vec![
                ExpansionStep {
                    after_ms: 0,
                    max_skill_diff: 50.0,
                },
                ExpansionStep {
                    after_ms: 5_000,
                    max_skill_diff: 150.0,
                },
            ],
            uncertainty_widening: 0.0,
            cross_region: None,
            skill_bands: vec![1000.0, 2000.0],
            band_borrow_after_ms: None,
            deadline_ms: None,
            target_wait: None,
        }
    }

    #[test]
    fn parses_toml_like_json_and_validates() {
        let cfg: MatchmakerConfig = serde_json::from_str(
            r#"{"regions":[{"name":"eu","neighbours":["us"]},{"name":"us"}],
                "queues":[{"name":"duel","teams":2,"team_size":1,
                           "expansions":[{"after_ms":0,"max_skill_diff":10.0}],
                           "cross_region":{"after_ms":1000,"max_latency_ms":90}}]}"#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.queue("duel").unwrap().band_count(), 1);
        assert_eq!(cfg.queue("duel").unwrap().effective_band_borrow_after_ms(), None);
    }

    #[test]
    fn rejects_bad_configs() {
        let base = MatchmakerConfig {
            regions: vec![RegionConfig {
                name: "eu".into(),
                neighbours: vec![],
            }],
            queues: vec![five_v_five()],
        };
        base.validate().unwrap();
        let mut c = base.clone();
        c.regions[0].neighbours.push("nowhere".into());
        assert!(matches!(c.validate(), Err(ConfigError::Neighbour { .. })));
        let mut c = base.clone();
        c.queues[0].expansions[1].after_ms = 0;
        assert!(matches!(c.validate(), Err(ConfigError::Expansions { .. })));
        let mut c = base.clone();
        c.queues[0].expansions[1].max_skill_diff = 10.0;
        assert!(matches!(c.validate(), Err(ConfigError::Expansions { .. })));
        let mut c = base.clone();
        c.queues[0].expansions[0].after_ms = 1;
        assert!(matches!(c.validate(), Err(ConfigError::Expansions { .. })));
        let mut c = base.clone();
        c.queues[0].team_size = 0;
        assert!(matches!(c.validate(), Err(ConfigError::TeamShape(_))));
        let mut c = base.clone();
        c.queues[0].teams = 101;
        assert!(matches!(c.validate(), Err(ConfigError::TeamShape(_))));
        let mut c = base.clone();
        c.queues[0].skill_bands = vec![2.0, 1.0];
        assert!(matches!(c.validate(), Err(ConfigError::SkillBands(_))));
        let mut c = base.clone();
        c.queues.push(five_v_five());
        assert!(matches!(c.validate(), Err(ConfigError::QueueName(_))));
        let mut c = base.clone();
        c.queues[0].deadline_ms = Some(5_000);
        assert!(
            matches!(c.validate(), Err(ConfigError::Queue { .. })),
            "deadline at the last step"
        );
        c.queues[0].deadline_ms = Some(5_001);
        c.validate().unwrap();
        c.queues[0].target_wait = Some(super::super::widening::TargetWait::new(1.0, 1_000));
        assert!(
            matches!(c.validate(), Err(ConfigError::Queue { .. })),
            "percentile 1"
        );
        let mut c = base;
        c.regions[0].name = "EU".into();
        assert!(matches!(c.validate(), Err(ConfigError::Region(_))));
    }

    #[test]
    fn steps_and_bands() {
        let q = five_v_five();
        assert_eq!(q.step_at(0), 0);
        assert_eq!(q.step_at(4_999), 0);
        assert_eq!(q.step_at(5_000), 1);
        assert_eq!(q.band_of(999.0), 0);
        assert_eq!(q.band_of(1000.0), 1);
        assert_eq!(q.band_of(5000.0), 2);
        assert_eq!(q.effective_band_borrow_after_ms(), Some(5_000));
    }
}

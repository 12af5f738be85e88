//! Launch rehearsal: the patterns real launches met, as changes to a
//! scenario's forecast (`[rehearsal]`, every key optional).
//!
//! ```toml
//! [rehearsal]
//! # Demand is `factor` times the forecast from `from_s` on (the curves stay
//! # the forecast: the report shows both).
//! surprise = { factor = 10, from_s = 0 }
//! # The whole capacity fills within minutes: from `at_s`, every region's
//! # target rises to at least its share of `players` (shares in proportion to
//! # the regions' forecast peaks) within `within_s`, until its curve ends.
//! fill = { players = 20000, at_s = 60, within_s = 180 }
//! # Old clients: this share of players retries failed logins (and storm
//! # reconnects) in lockstep every `interval_ms` since the start, without
//! # jitter, backoff or honouring retry_after.
//! old_clients = { share = 0.3, interval_ms = 1000 }
//! # A region outage: at `at_s`, `share` of `region`'s players lose their
//! # connection and `share` of its target moves to the neighbour `to` for
//! # `duration_s` (the moved players log in there anew), then returns.
//! outage = { region = "eu-west", to = "us-east", at_s = 120, duration_s = 300, share = 1.0 }
//! ```
//!
//! Player counts are scaled by `--scale` like the curves. Effects by mode:
//! the curve changes (surprise, fill, outage) apply in live and model mode
//! (queue mode follows the first region's changed curve); old clients and
//! the outage's dropped connections in live and model mode.

use serde::{Deserialize, Serialize};

use crate::curve::{Curve, Mod, Storm, StormMode};
use crate::scenario::Scenario;

/// The `[rehearsal]` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RehearsalSpec {
    /// Demand a multiple of the forecast.
    pub surprise: Option<Surprise>,
    /// The whole capacity fills within minutes.
    pub fill: Option<Fill>,
    /// Old clients retrying in lockstep without jitter.
    pub old_clients: Option<OldClients>,
    /// A region outage moving players to a neighbour.
    pub outage: Option<Outage>,
}

/// `surprise = { factor, from_s }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Surprise {
    /// Demand over forecast, > 0 (10: ten times the forecast). Below 1: a
    /// launch that draws fewer players than planned.
    pub factor: f64,
    /// From when, seconds. Default 0.
    #[serde(default)]
    pub from_s: f64,
}

/// `fill = { players, at_s, within_s }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fill {
    /// The capacity filled, concurrent players over all regions, > 0.
    pub players: f64,
    /// When the fill starts, seconds. Default 0.
    #[serde(default)]
    pub at_s: f64,
    /// How long until the capacity is full, seconds, > 0 (minutes: 60..600).
    pub within_s: f64,
}

/// `old_clients = { share, interval_ms }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OldClients {
    /// Share of players on the old client, 0..=1.
    pub share: f64,
    /// Their fixed retry period, ms, > 0. Default 1,000.
    #[serde(default = "thousand")]
    pub interval_ms: u64,
}

/// `outage = { region, to, at_s, duration_s, share }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outage {
    /// The region that goes down.
    pub region: String,
    /// The neighbour (listed in the region's `neighbours`) its players move to.
    pub to: String,
    /// When, seconds.
    pub at_s: f64,
    /// How long, seconds, > 0.
    pub duration_s: f64,
    /// Share of the region's players and target affected, (0, 1]. Default 1.
    #[serde(default = "one")]
    pub share: f64,
}

fn thousand() -> u64 {
    1_000
}
fn one() -> f64 {
    1.0
}

impl RehearsalSpec {
    /// Whether the curves differ from the forecast.
    pub fn changes_curves(&self) -> bool {
        self.surprise.is_some() || self.fill.is_some() || self.outage.is_some()
    }

    /// Checks ranges and names against `s`.
    pub fn validate(&self, s: &Scenario) -> Result<(), String> {
        let fin = |v: f64| v.is_finite() && v >= 0.0;
        let pos = |v: f64| v.is_finite() && v > 0.0;
        if let Some(x) = &self.surprise {
            if !(pos(x.factor) && fin(x.from_s)) {
                return Err("rehearsal.surprise: factor must be > 0 and from_s >= 0".into());
            }
        }
        if let Some(f) = &self.fill {
            if !(pos(f.players) && fin(f.at_s) && pos(f.within_s)) {
                return Err("rehearsal.fill: players and within_s must be > 0, at_s >= 0".into());
            }
        }
        if let Some(o) = &self.old_clients {
            if !(0.0..=1.0).contains(&o.share) || o.interval_ms == 0 {
                return Err("rehearsal.old_clients: share within 0..=1, interval_ms > 0".into());
            }
        }
        if let Some(o) = &self.outage {
            let Some(r) = s.regions.iter().find(|r| r.name == o.region) else {
                return Err(format!("rehearsal.outage: no region {:?}", o.region));
            };
            if !r.neighbours.iter().any(|n| n.name == o.to) {
                return Err(format!(
                    "rehearsal.outage: {:?} is not a neighbour of {:?} (its `neighbours`)",
                    o.to, o.region
                ));
            }
            if !(fin(o.at_s) && pos(o.duration_s) && o.share > 0.0 && o.share <= 1.0) {
                return Err("rehearsal.outage: at_s >= 0, duration_s > 0, share within (0, 1]".into());
            }
        }
        Ok(())
    }

    /// The curves players follow: `forecast` (one per region, already
    /// multiplied by `scale`) with the surprise, the fill and the outage applied.
    pub fn apply(&self, s: &Scenario, mut curves: Vec<Curve>, scale: f64) -> Vec<Curve> {
        let peaks: Vec<f64> = curves.iter().map(Curve::peak).collect();
        let total: f64 = peaks.iter().sum();
        for (i, c) in curves.iter_mut().enumerate() {
            if let Some(x) = self.surprise {
                c.push_mod(Mod::Factor {
                    from_s: x.from_s,
                    factor: x.factor,
                });
            }
            if let Some(f) = self.fill {
                let share = if total > 0.0 {
                    peaks[i] / total
                } else {
                    1.0 / peaks.len() as f64
                };
                c.push_mod(Mod::Floor {
                    at_s: f.at_s,
                    within_s: f.within_s,
                    level: f.players * scale * share,
                });
            }
        }
        if let Some(o) = &self.outage {
            let from = s.regions.iter().position(|r| r.name == o.region);
            let to = s.regions.iter().position(|r| r.name == o.to);
            if let (Some(from), Some(to)) = (from, to) {
                let until_s = o.at_s + o.duration_s;
                let source = Box::new(curves[from].clone());
                curves[from].push_mod(Mod::Cut {
                    from_s: o.at_s,
                    until_s,
                    share: o.share,
                });
                curves[from].push_storm(Storm {
                    at_s: o.at_s,
                    until_s,
                    share: o.share,
                    mode: StormMode::Lockstep,
                    interval_ms: 1_000,
                    moved: true,
                });
                curves[to].push_mod(Mod::Gain {
                    from_s: o.at_s,
                    until_s,
                    share: o.share,
                    source,
                });
            }
        }
        curves
    }
}

/// Whether a player drawn with `u` (uniform in [0, 1)) runs the old client.
pub fn is_old_client(spec: &RehearsalSpec, u: f64) -> bool {
    spec.old_clients.is_some_and(|o| u < o.share)
}

#[cfg(test)]
#[path = "rehearsal_tests.rs"]
mod tests;

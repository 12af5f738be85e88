//! The `[login_queue]` section of a scenario (queue mode, [`crate::queue_model`]).

use serde::{Deserialize, Serialize};

use crate::dist::Dist;

/// The region's login queue in queue mode: the budget, the gateways' cadence,
/// and how queued players behave. Budget figures are multiplied by `--scale`
/// with the curves (at least 1), so a scaled run keeps the launch's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginQueueSpec {
    /// Region budget: most slots in use (sessions, untaken admissions,
    /// re-entry reservations).
    pub max_sessions: u32,
    /// Region budget: most admissions per second.
    pub max_admissions_per_sec: u32,
    /// Gateways of the region: each runs an admission tick every
    /// `admit_tick_ms` and holds an equal share of the connections; a player
    /// who reconnects goes to the next one. Default 3.
    #[serde(default = "three")]
    pub gateways: u32,
    /// Admission tick interval of each gateway, ms. Default 250.
    #[serde(default = "two_fifty")]
    pub admit_tick_ms: u64,
    /// Interval of `Queued` updates (a view of the queue per gateway), ms.
    /// Default 5,000.
    #[serde(default = "five_thousand")]
    pub update_interval_ms: u64,
    /// Window of the measured admission rate the ETA uses, s. Default 30.
    #[serde(default = "thirty")]
    pub eta_window_s: u64,
    /// How long a place survives its holder's disconnect, s. Default 120.
    #[serde(default = "one_twenty")]
    pub place_grace_s: u64,
    /// Share of queued players whose connection drops once while they wait
    /// (they come back with their queue token through another gateway).
    /// Default 0.1.
    #[serde(default = "tenth")]
    pub drop_share: f64,
    /// When, after enqueueing, that drop happens, s. Default uniform 5..120.
    #[serde(default = "drop_after")]
    pub drop_after_s: Dist,
    /// How long a dropped player takes to come back, s. Default uniform 1..30
    /// (longer than `place_grace_s`: the place expires, which is not a loss).
    #[serde(default = "reconnect_after")]
    pub reconnect_after_s: Dist,
    /// Share of queued players who give up while waiting (close the game and
    /// never come back: their places expire after the grace). Default 0.02.
    #[serde(default = "fiftieth")]
    pub give_up_share: f64,
    /// When, after enqueueing, they give up, s. Default uniform 10..300.
    #[serde(default = "give_up_after")]
    pub give_up_after_s: Dist,
}

fn three() -> u32 {
    3
}
fn two_fifty() -> u64 {
    250
}
fn five_thousand() -> u64 {
    5_000
}
fn thirty() -> u64 {
    30
}
fn one_twenty() -> u64 {
    120
}
fn tenth() -> f64 {
    0.1
}
fn fiftieth() -> f64 {
    0.02
}
fn drop_after() -> Dist {
    Dist::Uniform { min: 5.0, max: 120.0 }
}
fn reconnect_after() -> Dist {
    Dist::Uniform { min: 1.0, max: 30.0 }
}
fn give_up_after() -> Dist {
    Dist::Uniform {
        min: 10.0,
        max: 300.0,
    }
}

impl LoginQueueSpec {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.gateways == 0 || self.gateways > 64 {
            return Err("login_queue.gateways must be in 1..=64".into());
        }
        if !(50..=10_000).contains(&self.admit_tick_ms) {
            return Err("login_queue.admit_tick_ms must be in 50..=10000".into());
        }
        if !(500..=60_000).contains(&self.update_interval_ms)
            || self.update_interval_ms % self.admit_tick_ms != 0
        {
            return Err(
                "login_queue.update_interval_ms must be in 500..=60000 and a multiple of admit_tick_ms"
                    .into(),
            );
        }
        if self.eta_window_s == 0 || self.place_grace_s == 0 {
            return Err("login_queue.eta_window_s and place_grace_s must be > 0".into());
        }
        for (what, v) in [
            ("drop_share", self.drop_share),
            ("give_up_share", self.give_up_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("login_queue.{what} must be in 0..=1"));
            }
        }
        if self.drop_share + self.give_up_share > 1.0 {
            return Err("login_queue.drop_share + give_up_share must be at most 1".into());
        }
        for (what, d) in [
            ("drop_after_s", &self.drop_after_s),
            ("reconnect_after_s", &self.reconnect_after_s),
            ("give_up_after_s", &self.give_up_after_s),
        ] {
            d.validate().map_err(|e| format!("login_queue.{what}: {e}"))?;
        }
        Ok(())
    }
}

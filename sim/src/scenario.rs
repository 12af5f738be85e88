//! Scenario files: what a run simulates, as one TOML file, parsed with serde
//! and validated once ([`Scenario::from_file`] / [`Scenario::parse`]).
//!
//! Units are in the field names: `_s` seconds, `_ms` milliseconds; player
//! counts are concurrent players. Unknown keys are errors (a typo must not
//! silently fall back to a default). Every key, with an example, is in
//! `sim/README.md`; the presets in `sim/scenarios/` are working examples.
//!
//! ```toml
//! name = "smoke"
//! seed = 7
//!
//! [[regions]]
//! name = "eu-west"
//! rtt_ms = { kind = "normal", mean = 35, stddev = 10, min = 5 }
//! curve = [
//!   { kind = "ramp", to = 20, duration_s = 2 },
//!   { kind = "hold", duration_s = 3 },
//!   { kind = "drain", duration_s = 1 },
//! ]
//!
//! [session]
//! length_s = { kind = "log_normal", median = 30, sigma = 0.5 }
//! think_ms = { kind = "exponential", mean = 200 }
//!
//! [behaviour]            # relative weights of what a player does after each think time
//! ping = 1
//! echo = 1
//! state_load = 1
//! state_save = 1
//! matchmaking = 0        # queue and wait for a match (live: through the gateway)
//! inventory = 1          # an inventory operation, as the [inventory] mix says
//!
//! [inventory]            # relative weights within inventory operations (see crate::inventory)
//! balances = 4
//! history = 1
//! grant = 2              # needs inventory.client_grants on the gateway (--local turns it on)
//! purchase = 1
//! replay = 0.5
//!
//! [slo]
//! login_p99_ms = 2000
//! error_rate = 0.01
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::accounting::AccountingSpec;
use crate::curve::{Curve, Segment};
use crate::dist::Dist;
use crate::inventory::InventorySpec;
pub use crate::matchmaking_spec::{
    CrossRegionSpec, ExpansionSpec, MatchmakingSpec, StoreSpec, TargetWaitSpec,
};
pub use crate::queue_spec::LoginQueueSpec;
use crate::rehearsal::RehearsalSpec;

/// A scenario that cannot be used, with the reason.
#[derive(Debug, Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// The TOML does not parse or does not match the format (unknown key,
    /// wrong type, missing field).
    #[error("cannot parse scenario: {0}")]
    Parse(#[from] toml::de::Error),
    /// The values parse but do not make sense together.
    #[error("invalid scenario: {0}")]
    Invalid(String),
}

/// A whole scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used for the output folder: `[A-Za-z0-9_-]`, 1..=64 characters.
    pub name: String,
    /// Free text shown in the report.
    #[serde(default)]
    pub description: String,
    /// Seed of every random draw, so a run can be repeated. Default 1.
    #[serde(default = "one")]
    pub seed: u64,
    /// How often the timeline is sampled (players, rates, percentiles), in ms.
    /// Default 1,000.
    #[serde(default = "thousand")]
    pub sample_interval_ms: u64,
    /// Regions, each with its own traffic curve (at least one).
    pub regions: Vec<RegionSpec>,
    /// Session lengths and pacing.
    pub session: SessionSpec,
    /// What players do within a session.
    #[serde(default)]
    pub behaviour: BehaviourMix,
    /// What a player does when a login fails.
    #[serde(default)]
    pub retry: RetrySpec,
    /// Bounds of live mode.
    #[serde(default)]
    pub live: LiveSpec,
    /// Matchmaking (model mode): queue shape, skill window, match length.
    #[serde(default)]
    pub matchmaking: Option<MatchmakingSpec>,
    /// What an inventory action is (live mode; the defaults when absent).
    #[serde(default)]
    pub inventory: InventorySpec,
    /// The region login queue (queue mode; see [`crate::queue_model`]).
    #[serde(default)]
    pub login_queue: Option<LoginQueueSpec>,
    /// Objectives that decide the exit code.
    #[serde(default)]
    pub slo: SloSpec,
    /// Which failure codes are expected outcomes rather than errors
    /// (see [`crate::accounting`]).
    #[serde(default)]
    pub accounting: AccountingSpec,
    /// Launch rehearsal: a surprise over forecast, a fill of the capacity,
    /// old clients retrying in lockstep, a region outage (see
    /// [`crate::rehearsal`]). None by default.
    #[serde(default)]
    pub rehearsal: RehearsalSpec,
}

/// One region: its traffic curve and how far its players are from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSpec {
    /// Region name (`[a-z0-9-]`, 1..=32 characters, as the backend's region names).
    pub name: String,
    /// Target concurrent players over time (see [`crate::curve`]).
    pub curve: Vec<Segment>,
    /// Round-trip time of this region's players to their home region, ms
    /// (model mode: ticket latencies). Default fixed 30.
    #[serde(default = "default_rtt")]
    pub rtt_ms: Dist,
    /// Regions this region's players may fall back to for matchmaking, each
    /// with the players' round-trip time to it.
    #[serde(default)]
    pub neighbours: Vec<NeighbourSpec>,
    /// Live mode: this region's players follow this action mix instead of
    /// the scenario's `[behaviour]` (e.g. a region on an older client).
    #[serde(default)]
    pub behaviour: Option<BehaviourMix>,
    /// Live mode: this region's inventory mix instead of `[inventory]`.
    #[serde(default)]
    pub inventory: Option<InventorySpec>,
}

/// A fallback region and the latency to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighbourSpec {
    /// A region of this scenario.
    pub name: String,
    /// Round-trip time from the home region's players to it, ms.
    pub rtt_ms: Dist,
}

/// Session length and the pause between actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSpec {
    /// How long a player stays, seconds. When it ends the player logs out and
    /// (while the curve still wants them) a new player arrives in their place.
    pub length_s: Dist,
    /// Pause between two actions of a player, ms.
    pub think_ms: Dist,
    /// Live mode: after this many actions a player stays connected without
    /// acting (away from keyboard) until its session ends. Default: no limit.
    #[serde(default)]
    pub max_actions: Option<u32>,
}

/// Relative weights of the actions a player picks after each think time
/// (they need not sum to 1; all zero means players only stay connected).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BehaviourMix {
    /// Ping on the control stream (round-trip time). Default 1.
    pub ping: f64,
    /// Echo request of `echo_bytes` on the echo channel. Default 1.
    pub echo: f64,
    /// Load the player's state documents (`StateList`). Default 1.
    pub state_load: f64,
    /// Save a state document (read-modify-write with compare-and-set). Default 0.5.
    pub state_save: f64,
    /// Queue for a match and wait for it (model mode: tickets; live mode:
    /// through the gateway's matchmaking channel). Default 0.
    pub matchmaking: f64,
    /// An inventory operation, drawn from the `[inventory]` mix (live mode;
    /// model mode does not model it). Default 0. Expected inventory operations
    /// per player-minute: `60,000 / mean think_ms × inventory / sum of weights`.
    pub inventory: f64,
    /// Payload of an echo request, bytes. Default 64.
    pub echo_bytes: usize,
    /// Size of a saved state document, bytes. Default 256.
    pub state_bytes: usize,
}

impl Default for BehaviourMix {
    fn default() -> Self {
        BehaviourMix {
            ping: 1.0,
            echo: 1.0,
            state_load: 1.0,
            state_save: 0.5,
            matchmaking: 0.0,
            inventory: 0.0,
            echo_bytes: 64,
            state_bytes: 256,
        }
    }
}

impl BehaviourMix {
    /// The weights of the actions, in this order: ping, echo, state_load,
    /// state_save, matchmaking, inventory.
    pub fn weights(&self) -> [f64; 6] {
        [
            self.ping,
            self.echo,
            self.state_load,
            self.state_save,
            self.matchmaking,
            self.inventory,
        ]
    }
}

/// How failing logins are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryMode {
    /// Exponential backoff with full jitter (the SDK's reconnect policy):
    /// attempt n waits uniformly in `[0, min(max_ms, initial_ms × 2^(n-1))]`.
    Backoff,
    /// A uniformly random wait in `[0, interval_ms]` before every attempt.
    Jitter,
    /// Every failing player retries at the same instants: the next multiple of
    /// `interval_ms` since the run started (a fixed retry timer in the game).
    Lockstep,
}

/// What a player does when a login fails (Reject, timeout, network error).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySpec {
    /// Retry pattern. Default `backoff`.
    pub mode: RetryMode,
    /// First backoff ceiling, ms. Default 200.
    pub initial_ms: u64,
    /// Largest backoff ceiling, ms. Default 30,000.
    pub max_ms: u64,
    /// Period of `jitter` and `lockstep`, ms. Default 1,000.
    pub interval_ms: u64,
    /// Attempts (including the first) before a player gives up. Default 8.
    pub max_attempts: u32,
    /// Wait at least the `retry_after` a gateway asks for. Default true.
    pub honour_retry_after: bool,
    /// Share (0..=1) of impatient players who ignore all of the above and
    /// retry every `impatient_interval_ms`. Default 0.
    pub impatient_share: f64,
    /// Retry period of impatient players, ms. Default 250.
    pub impatient_interval_ms: u64,
}

impl Default for RetrySpec {
    fn default() -> Self {
        RetrySpec {
            mode: RetryMode::Backoff,
            initial_ms: 200,
            max_ms: 30_000,
            interval_ms: 1_000,
            max_attempts: 8,
            honour_retry_after: true,
            impatient_share: 0.0,
            impatient_interval_ms: 250,
        }
    }
}

/// Bounds of live mode: a run never holds more players or starts logins
/// faster than this, whatever the curve asks (`--max-players` overrides).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveSpec {
    /// Most virtual players alive at once (all regions). Default 1,000.
    pub max_players: usize,
    /// Most new players started per second (all regions). Default 500.
    pub max_arrivals_per_sec: f64,
    /// SDK request timeout (requests, pings, login), ms. Default 10,000.
    pub request_timeout_ms: u64,
    /// How often the driver compares players with the curve, ms. Default 100.
    pub control_interval_ms: u64,
    /// After the curve ends, how long players get to log out, ms. Default 5,000.
    pub shutdown_grace_ms: u64,
    /// QUIC endpoints (UDP sockets) the players share, 0..=256. Default 0:
    /// every player binds its own socket, as a game does (a storm's dropped
    /// connection then goes silent). Above a few thousand players use a few
    /// per core (e.g. 8): one socket per player costs a file descriptor and a
    /// kernel buffer each, while a shared endpoint's packets are handled by
    /// one task, and a storm closes a shared connection with a
    /// CONNECTION_CLOSE instead of silence.
    pub endpoints: usize,
    /// Receive and send buffer of each shared endpoint's socket, bytes, at
    /// least 65,536. Default 8 MiB (the kernel caps it at `net.core.rmem_max`
    /// / `wmem_max`): a login burst of thousands of players must not
    /// overflow it, or dropped handshake packets wait for a retransmission.
    pub endpoint_buffer_bytes: usize,
}

impl Default for LiveSpec {
    fn default() -> Self {
        LiveSpec {
            max_players: 1_000,
            max_arrivals_per_sec: 500.0,
            request_timeout_ms: 10_000,
            control_interval_ms: 100,
            shutdown_grace_ms: 5_000,
            endpoints: 0,
            endpoint_buffer_bytes: 8 * 1024 * 1024,
        }
    }
}

/// Service level objectives. Any that is set and missed makes the run exit
/// with status 2. Every one set is listed in every mode; one a mode cannot
/// measure is shown as "not measured in this mode" (see [`crate::slo`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SloSpec {
    /// 99th percentile of successful login time (connect + Welcome), ms.
    pub login_p99_ms: Option<f64>,
    /// 99th percentile of every request type (ping, echo, state), ms.
    pub request_p99_ms: Option<f64>,
    /// Errors over attempts, every operation (logins, requests, match waits,
    /// sessions), expected outcomes not counted as errors (0..=1; see
    /// [`crate::accounting`]).
    pub error_rate: Option<f64>,
    /// Players who logged in over players who tried (0..=1).
    pub login_success_rate: Option<f64>,
    /// 95th percentile of matchmaking wait, seconds (model mode, and live
    /// mode when players queue for matches).
    pub match_wait_p95_s: Option<f64>,
    /// 99.9th percentile of matchmaking wait, seconds (as `match_wait_p95_s`;
    /// a deadline outcome counts with its wait).
    pub match_wait_p999_s: Option<f64>,
    /// Longest matchmaking wait, seconds (as `match_wait_p95_s`).
    pub match_wait_max_s: Option<f64>,
    /// Most admissions out of FIFO order plus positions that went up (queue
    /// mode; the queue promises 0).
    pub queue_fifo_violations: Option<f64>,
    /// Most places lost: a player who neither gave up nor stayed away past
    /// the place grace finds its place gone (queue mode; promised 0).
    pub queue_lost_places: Option<f64>,
    /// 95th percentile of |first ETA − actual wait| at admission, seconds
    /// (queue mode).
    pub queue_eta_error_p95_s: Option<f64>,
}

fn one() -> u64 {
    1
}
fn thousand() -> u64 {
    1_000
}
fn default_rtt() -> Dist {
    Dist::Fixed { value: 30.0 }
}

impl Scenario {
    /// Reads, parses and validates a scenario file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Scenario::parse(&text)
    }

    /// Parses and validates scenario TOML.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text)?;
        s.validate()?;
        Ok(s)
    }

    /// The region curves the players follow, player counts multiplied by
    /// `scale`: the forecast changed by `[rehearsal]` (surprise, fill, outage).
    pub fn curves(&self, scale: f64) -> Vec<Curve> {
        self.rehearsal.apply(self, self.forecast_curves(scale), scale)
    }

    /// The region curves as the scenario forecasts them, before `[rehearsal]`.
    pub fn forecast_curves(&self, scale: f64) -> Vec<Curve> {
        self.regions.iter().map(|r| Curve::new(&r.curve, scale)).collect()
    }

    /// Length of the run: the longest region curve, seconds.
    pub fn duration_s(&self) -> f64 {
        self.forecast_curves(1.0)
            .iter()
            .map(Curve::duration_s)
            .fold(0.0, f64::max)
    }

    /// The action mix of `region`'s players (its own, or `[behaviour]`).
    pub fn behaviour_of(&self, region: usize) -> &BehaviourMix {
        self.regions[region].behaviour.as_ref().unwrap_or(&self.behaviour)
    }

    /// The inventory mix of `region`'s players (its own, or `[inventory]`).
    pub fn inventory_of(&self, region: usize) -> &InventorySpec {
        self.regions[region].inventory.as_ref().unwrap_or(&self.inventory)
    }

    /// Checks everything serde cannot: ranges, names, cross references.
    /// Sections are checked in a fixed order and the first error is reported
    /// (the checks themselves are in `scenario_validate.rs`).
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let invalid = ScenarioError::Invalid;
        self.validate_identity()?;
        self.validate_regions()?;
        self.validate_session()?;
        self.validate_behaviour()?;
        self.inventory.validate(false).map_err(invalid)?;
        if self.session.max_actions == Some(0) {
            return Err(invalid(
                "session.max_actions must be > 0 (leave it out for no limit)".into(),
            ));
        }
        self.accounting.validate().map_err(invalid)?;
        self.rehearsal.validate(self).map_err(invalid)?;
        self.validate_retry()?;
        self.validate_live()?;
        if let Some(q) = &self.login_queue {
            q.validate().map_err(invalid)?;
        }
        if let Some(m) = &self.matchmaking {
            self.validate_matchmaking(m)?;
        }
        self.validate_slo()
    }
}

#[cfg(test)]
#[path = "scenario_tests.rs"]
mod tests;

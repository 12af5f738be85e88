//! # outpost-sim: launch-curve simulations
//!
//! QA drive Outpost with the traffic *shape* of a launch (a pre-launch queue
//! released at once, the herd of the first minutes, retry storms, spikes at a
//! content drop, regional evening peaks), not a synthetic peak.
//!
//! - [`scenario`]: the TOML scenario format, validated once; [`curve`] the
//!   traffic curves (`Curve::target_at`), [`dist`] the distributions.
//! - [`live`]: virtual players as tokio tasks driving real gateways over QUIC
//!   through `outpost-client`, exactly as a game would (the player itself is
//!   in `player.rs`; [`inventory`] its ledger operations).
//! - [`model`]: the backend's matchmaker core on virtual time, for launches of
//!   millions of players that no single machine could host over sockets;
//!   with `--store`, [`model_store`]: the real store-backed pool (embedded
//!   store, partitions, workers with leases), its work on real time.
//! - [`queue_model`]: queue mode, the backend's real login queue on an
//!   embedded store and virtual time (the launch-queue preset).
//! - [`record`], [`results`], [`report`]: HDR histograms and counters, the
//!   JSON result, the HTML report; [`accounting`] how every attempt ended
//!   (success, error, expected outcome), the one source of every error count;
//!   [`slo`] the objectives, judged in every mode; [`units`] how durations
//!   print; [`annotations`] what the report draws beside the timeline
//!   (phases, the gateway's CPU and memory from [`gateway_probe`], model
//!   mode's worst tickets); [`cost`] the gateway's cost per concurrent player
//!   (CPU-seconds per player-minute, RSS per player) from those samples.
//! - [`rehearsal`]: launch rehearsal knobs (a surprise over forecast, a fill
//!   of the capacity, old clients in lockstep, a region outage).
//! - [`compare`]: `outpost-sim compare BASE.json NEW.json`, the differences
//!   between two runs and whether they are a regression.
//! - [`local`]: `--local` / `--spawn-gateway`, one in-process gateway on
//!   loopback for one-command demos and tests.
//!
//! Run it with the `outpost-sim` binary (see `sim/README.md`).
#![forbid(unsafe_code)]

pub mod accounting;
pub mod annotations;
pub mod compare;
mod compare_report;
pub mod cost;
pub mod curve;
pub mod dist;
pub mod gateway_probe;
pub mod inventory;
pub mod live;
pub mod local;
mod matchmaking_spec;
pub mod model;
mod model_engine;
pub mod model_store;
mod model_store_summary;
pub mod pause;
mod player;
pub mod queue_model;
mod queue_report;
pub mod queue_spec;
pub mod record;
pub mod rehearsal;
pub mod report;
mod report_chart;
mod report_sections;
pub mod results;
pub mod retry;
pub mod scenario;
mod scenario_validate;
pub mod self_probe;
pub mod slo;
pub mod spread;
pub mod units;

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Options of one run that come from the command line, not the scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Multiplies every player count of the curves (e.g. 0.01 to run a launch
    /// preset at 1% in live mode). Default 1.
    pub scale: f64,
    /// Overrides `live.max_players`.
    pub max_players: Option<usize>,
    /// Stops the run after this long (wall time in live mode, virtual time in
    /// model mode), even if the curves go on.
    pub max_duration: Option<Duration>,
    /// Print a progress line per sample to stderr.
    pub progress: bool,
    /// Live mode: where to read the gateway's CPU and memory at each sample
    /// (`None`: not measured).
    pub gateway_probe: Option<gateway_probe::GatewayProbe>,
    /// Also keep every progress line here (whether printed or not), e.g.
    /// for a test that checks them against the result.
    pub progress_log: Option<Arc<Mutex<Vec<String>>>>,
    /// Live mode: pause this gateway process (its pid) once during the run
    /// ([`pause`]); the run's notes say when it was stopped and resumed.
    pub gateway_pause: Option<(u32, pause::GatewayPause)>,
}

impl RunOptions {
    /// Prints `line` to stderr (with `progress`) and keeps it in `progress_log`.
    pub fn report_progress(&self, line: String) {
        if self.progress {
            eprintln!("{line}");
        }
        if let Some(log) = &self.progress_log {
            log.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            scale: 1.0,
            max_players: None,
            max_duration: None,
            progress: false,
            progress_log: None,
            gateway_probe: None,
            gateway_pause: None,
        }
    }
}

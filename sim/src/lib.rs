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
//!   millions of players that no single machine could host over sockets.
//! - [`queue_model`]: queue mode, the backend's real login queue on an
//!   embedded store and virtual time (the launch-queue preset).
//! - [`record`], [`results`], [`report`]: HDR histograms and counters, the
//!   JSON result, the HTML report.
//! - [`local`]: `--local` / `--spawn-gateway`, one in-process gateway on
//!   loopback for one-command demos and tests.
//!
//! Run it with the `outpost-sim` binary (see `sim/README.md`).
#![forbid(unsafe_code)]

pub mod curve;
pub mod dist;
pub mod inventory;
pub mod live;
pub mod local;
pub mod model;
mod player;
pub mod queue_model;
mod queue_report;
pub mod queue_spec;
pub mod record;
pub mod report;
pub mod results;
pub mod retry;
pub mod scenario;
pub mod spread;

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
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            scale: 1.0,
            max_players: None,
            max_duration: None,
            progress: false,
        }
    }
}

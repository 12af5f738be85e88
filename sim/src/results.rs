//! The JSON result of a run (`result.json`), its SLO verdicts, and writing
//! the output folder (`result.json` + `report.html`).
//!
//! # Format (`"format": "outpost-sim-result/1"`)
//!
//! - `operations.<op>`: one [`HistSummary`] per operation that happened
//!   (`login`, `ping`, `echo`, `state_load`, `state_save`, `match_wait`,
//!   `inventory_balances`, `inventory_history`, `inventory_grant`,
//!   `inventory_purchase`, `inventory_replay`): `count`, and `min`,
//!   `mean`, `max`, `p50`, `p90`, `p95`, `p99`, `p999` **in milliseconds**,
//!   plus `hdr`: the full HDR histogram in the HdrHistogram **V2 encoding,
//!   base64** (standard alphabet, padded), whose values are in `hdr_unit`
//!   (`us` for requests, `ms` for match waits). Any HdrHistogram library
//!   decodes it (Rust: `hdrhistogram::serialization::Deserializer`).
//! - `totals`: counters ([`crate::record::Totals`]); `attempts`, `errors`
//!   and `outcomes` sum the accounting over every operation.
//! - `accounting.<op>`: how the attempts of each operation ended
//!   ([`OpAccount`]: `attempts`, `ok`, `errors` and `outcomes` by code;
//!   `attempts = ok + errors + outcomes`). Errors are failures the scenario
//!   does not list as expected (`expected_outcomes`, from `[accounting]`);
//!   codes are protocol `ErrorCode` names such as `ServerBusy`, or SDK kinds
//!   such as `ClientTimeout`, `ConnectFailed`. `errors` (by code) and
//!   `errors_by_op` are views of the same errors.
//! - `timeline`: one [`Sample`] per `sample_interval_ms`.
//! - `slo`: one [`SloResult`] per objective set in the scenario, in every
//!   mode: `measured: false` when this mode cannot measure it.
//! - `notes`: what the run could not do (e.g. skipped actions), in words.
//! - `model_store`: model mode with `--store` ([`crate::model_store`]).
//! - `phases`, `gateway_source`, `model_tail` and the per-region and
//!   `gateway` fields of the timeline: see [`crate::annotations`]; the
//!   timeline's `sim` field (live): how late the sim's own timers ran and its
//!   CPU, see [`crate::self_probe`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use hdrhistogram::serialization::{Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::accounting::OpAccount;
use crate::annotations::{GatewaySample, GatewaySource, ModelTail, Phase};
use crate::record::{Op, Totals};
use crate::scenario::Scenario;
pub use crate::slo::{SloResult, SloStatus};

/// Identifies this JSON format.
pub const FORMAT: &str = "outpost-sim-result/1";

/// Percentiles of one operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistSummary {
    /// Samples recorded.
    pub count: u64,
    /// Milliseconds.
    pub min: f64,
    pub mean: f64,
    pub max: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    /// Unit of the values inside `hdr` (`us` or `ms`).
    pub hdr_unit: String,
    /// HdrHistogram V2 encoding, base64.
    pub hdr: String,
}

impl HistSummary {
    /// Summarises `h`, whose values are in `unit` (`us` or `ms`).
    pub fn new(h: &Histogram<u64>, unit: &str) -> HistSummary {
        let to_ms = if unit == "us" { 1e-3 } else { 1.0 };
        let q = |q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 * to_ms
            }
        };
        let mut buf = Vec::new();
        V2Serializer::new()
            .serialize(h, &mut buf)
            .expect("serialising to memory does not fail");
        HistSummary {
            count: h.len(),
            min: if h.is_empty() { 0.0 } else { h.min() as f64 * to_ms },
            mean: h.mean() * to_ms,
            max: h.max() as f64 * to_ms,
            p50: q(0.5),
            p90: q(0.9),
            p95: q(0.95),
            p99: q(0.99),
            p999: q(0.999),
            hdr_unit: unit.into(),
            hdr: base64::engine::general_purpose::STANDARD.encode(buf),
        }
    }

    /// Decodes `hdr` back into a histogram.
    pub fn decode(&self) -> anyhow::Result<Histogram<u64>> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(&self.hdr)?;
        let mut d = hdrhistogram::serialization::Deserializer::new();
        Ok(d.deserialize(&mut bytes.as_slice())?)
    }
}

/// One region at one sample time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegionSample {
    /// What the curve asks for (after `--scale`, before the `max_players` cap).
    pub target: u64,
    /// Players logged in (live) or online (model).
    pub players: u64,
    /// Live: players connecting or retrying. Model: tickets waiting.
    pub waiting: u64,
    /// What the curve forecast before `[rehearsal]` changed it (a surprise
    /// over forecast, a fill, an outage); absent without those.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<u64>,
    /// Live: this region's successful logins per second over the interval.
    #[serde(default)]
    pub logins_per_s: Option<f64>,
    /// Live: this region's failed requests and login attempts per second.
    #[serde(default)]
    pub errors_per_s: Option<f64>,
    /// Live: this region's request latency percentiles over the interval, ms.
    #[serde(default)]
    pub p50_ms: Option<f64>,
    #[serde(default)]
    pub p99_ms: Option<f64>,
}

/// The run at one point in time. Rates are per second over the last interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the start (virtual time in model mode).
    pub t_s: f64,
    /// Per region, in scenario order.
    pub regions: Vec<RegionSample>,
    /// Requests per second (live) or operations per second (model estimate).
    pub requests_per_s: f64,
    /// Failed requests and logins per second.
    pub errors_per_s: f64,
    /// Successful logins per second.
    pub logins_per_s: f64,
    /// Request latency percentiles over the interval, ms (live).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Match wait percentiles of the tickets matched in the interval, seconds (model).
    pub match_wait_p50_s: Option<f64>,
    pub match_wait_p95_s: Option<f64>,
    /// Matches formed per second (model).
    pub matches_per_s: Option<f64>,
    /// The login queue (queue mode).
    #[serde(default)]
    pub queue: Option<QueueSample>,
    /// The gateway's CPU and memory (live mode, when the sim can see the
    /// gateway; see `Results::gateway_source`).
    #[serde(default)]
    pub gateway: Option<GatewaySample>,
    /// The sim's own timer lateness and CPU (live mode; see
    /// [`crate::self_probe`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim: Option<crate::self_probe::SimSample>,
}

/// The login queue at one sample time (queue mode). Waits and ETA errors are
/// of the players admitted in the interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueSample {
    /// Places waiting (the last view).
    pub length: u64,
    /// Region slots in use.
    pub slots_used: u64,
    /// Admissions per second over the interval.
    pub admissions_per_s: f64,
    /// Wait percentiles, seconds.
    pub wait_p50_s: Option<f64>,
    pub wait_p95_s: Option<f64>,
    /// |first ETA − wait| percentiles, seconds.
    pub eta_error_p50_s: Option<f64>,
    pub eta_error_p95_s: Option<f64>,
}

/// What queue mode counted over the whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueSummary {
    /// Players who arrived (each logs in once, unless dropped).
    pub arrivals: u64,
    /// Admitted without queueing (the budget had room and nobody waited).
    pub direct: u64,
    /// Given a place.
    pub queued: u64,
    /// Admitted from the queue.
    pub admitted_from_queue: u64,
    /// Connections dropped while queued.
    pub drops: u64,
    /// Of those, reconnects (with the token, through another gateway) that got
    /// their place (or its admission) back.
    pub places_kept: u64,
    /// Reconnects after the place grace: the place had expired (not a loss).
    pub expired_while_away: u64,
    /// Players who gave up while queued.
    pub gave_up: u64,
    /// Places the region counted as abandoned (expired).
    pub abandoned: u64,
    /// Admissions out of FIFO order (a later enqueue admitted before an earlier one).
    pub fifo_violations: u64,
    /// Times a player's position went up between two updates.
    pub position_increases: u64,
    /// Places lost: gone although their player neither gave up nor stayed away too long.
    pub lost_places: u64,
    /// Most places waiting at once.
    pub peak_length: u64,
    /// Most admissions in one rate window (one second of virtual time).
    pub max_admissions_per_window: u64,
    /// The budget in force (after `--scale`).
    pub budget_max_sessions: u32,
    pub budget_admissions_per_sec: u32,
}

/// Everything a run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub format: String,
    /// `live` or `model`.
    pub mode: String,
    pub scenario: String,
    pub description: String,
    /// Player-count multiplier of the run.
    pub scale: f64,
    /// Region names, in the order of every per-region list.
    pub regions: Vec<String>,
    /// Run start, Unix ms.
    pub started_unix_ms: u64,
    /// Wall-clock length of the run, seconds.
    pub wall_s: f64,
    /// Simulated length, seconds (equals wall time in live mode).
    pub sim_s: f64,
    /// Where live mode sent its players (addresses), or `in-process` for model mode.
    pub target: String,
    pub totals: Totals,
    pub operations: BTreeMap<String, HistSummary>,
    /// Errors by code: the errors of `accounting`, all operations together.
    pub errors: BTreeMap<String, u64>,
    /// Errors by operation, then code (the errors of `accounting`).
    pub errors_by_op: BTreeMap<String, BTreeMap<String, u64>>,
    /// How every operation's attempts ended: successes, errors and expected
    /// outcomes by code ([`OpAccount`]). The one source of every error count.
    #[serde(default)]
    pub accounting: BTreeMap<String, OpAccount>,
    /// The scenario's `[accounting] expected` codes this run classified as
    /// outcomes.
    #[serde(default)]
    pub expected_outcomes: Vec<String>,
    pub timeline: Vec<Sample>,
    pub slo: Vec<SloResult>,
    pub notes: Vec<String>,
    /// Queue mode's counts.
    #[serde(default)]
    pub login_queue: Option<QueueSummary>,
    /// The scenario's phases (storms, spikes, ...), shaded on the charts.
    #[serde(default)]
    pub phases: Vec<Phase>,
    /// Where the timeline's gateway figures come from (`None`: not measured).
    #[serde(default)]
    pub gateway_source: Option<GatewaySource>,
    /// Model mode: peak concurrency and the worst tickets.
    #[serde(default)]
    pub model_tail: Option<ModelTail>,
    /// Model mode through the store-backed pool (`--store`): what the store did.
    #[serde(default)]
    pub model_store: Option<crate::model_store::StoreSummary>,
}

impl Results {
    /// Whether every objective was met (one not measured in this mode does
    /// not count as missed).
    pub fn slo_ok(&self) -> bool {
        self.slo.iter().all(|s| s.ok)
    }

    /// Fills `slo` with every objective the scenario sets: measured, or
    /// marked as not measured in this mode ([`crate::slo`]).
    pub fn evaluate_slos(&mut self, scenario: &Scenario) {
        self.slo = crate::slo::evaluate(self, scenario);
    }

    /// The error rate `slo.error_rate` is judged on: errors over attempts,
    /// every operation (`None`: nothing attempted).
    pub fn error_rate(&self) -> Option<f64> {
        let t = &self.totals;
        (t.attempts > 0).then(|| t.errors as f64 / t.attempts as f64)
    }

    /// Most concurrent players (all regions) at any sample.
    pub fn peak_players(&self) -> u64 {
        self.timeline
            .iter()
            .map(|s| s.regions.iter().map(|x| x.players).sum::<u64>())
            .max()
            .unwrap_or(0)
    }

    /// Writes `result.json` and `report.html` into `dir` (created if needed);
    /// returns their paths.
    pub fn write(&self, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = dir.join("result.json");
        std::fs::write(&json, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", json.display()))?;
        let html = dir.join("report.html");
        std::fs::write(&html, crate::report::render(self))
            .with_context(|| format!("writing {}", html.display()))?;
        Ok((json, html))
    }

    /// Reads a `result.json`.
    pub fn read(path: &Path) -> anyhow::Result<Results> {
        let r: Results = serde_json::from_slice(&std::fs::read(path)?)?;
        anyhow::ensure!(r.format == FORMAT, "unknown result format {:?}", r.format);
        Ok(r)
    }
}

/// Operation summaries for every non-empty histogram.
pub fn summarise(hists: impl IntoIterator<Item = (Op, Histogram<u64>)>) -> BTreeMap<String, HistSummary> {
    hists
        .into_iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(op, h)| (op.name().to_owned(), HistSummary::new(&h, op.unit())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hdr_round_trips_through_base64() {
        let mut h = crate::record::new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 100).unwrap();
        }
        let s = HistSummary::new(&h, "us");
        assert_eq!(s.count, 1000);
        assert!((s.p50 - 50.0).abs() < 0.1, "p50 {} ms", s.p50);
        let back = s.decode().unwrap();
        assert_eq!(back.len(), 1000);
        assert_eq!(back.value_at_quantile(0.99), h.value_at_quantile(0.99));
    }
}

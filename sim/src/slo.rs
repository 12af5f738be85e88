//! Service level objectives: every objective the scenario's `[slo]` sets is
//! evaluated in every mode. Where the mode measures it, the verdict is met or
//! missed (missed also when the mode could measure it but the run recorded
//! nothing, e.g. no successful login); where the mode cannot measure it (a
//! login latency in model mode), it is listed as **not measured in this
//! mode**: never dropped, never counted as missed.
//!
//! | objective | live | model | queue |
//! |---|---|---|---|
//! | `login_p99_ms`, `request_p99_ms`, `login_success_rate` | yes | – | – |
//! | `error_rate` (errors / attempts, [`crate::accounting`]) | yes | – | – |
//! | `match_wait_p95_s`, `match_wait_p999_s`, `match_wait_max_s` | yes (players that queue) | yes | – |
//! | `queue_fifo_violations`, `queue_lost_places`, `queue_eta_error_p95_s` | – | – | yes |

use serde::{Deserialize, Serialize};

use crate::record::Op;
use crate::results::{HistSummary, Results};
use crate::scenario::{Scenario, SloSpec};

/// One objective's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloResult {
    /// Objective name as in the scenario's `[slo]` (e.g. `login_p99_ms`).
    pub name: String,
    /// The limit.
    pub limit: f64,
    /// What the run measured (`None`: nothing measured).
    pub actual: Option<f64>,
    /// Whether the objective was met (true when not measured in this mode:
    /// only a measured miss fails the run).
    pub ok: bool,
    /// Whether this mode measures the objective (false: "not measured in
    /// this mode"). Absent in older results: true.
    #[serde(default = "yes")]
    pub measured: bool,
    /// Why there is no figure, in words (empty when there is one).
    #[serde(default)]
    pub note: String,
}

fn yes() -> bool {
    true
}

/// The three verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SloStatus {
    Met,
    Missed,
    NotMeasured,
}

impl SloStatus {
    /// How consoles and reports print it.
    pub fn label(self) -> &'static str {
        match self {
            SloStatus::Met => "met",
            SloStatus::Missed => "MISSED",
            SloStatus::NotMeasured => "not measured in this mode",
        }
    }
}

impl SloResult {
    /// Met, missed, or not measured in this mode.
    pub fn status(&self) -> SloStatus {
        if !self.measured {
            SloStatus::NotMeasured
        } else if self.ok {
            SloStatus::Met
        } else {
            SloStatus::Missed
        }
    }
}

/// What a mode can say about an objective.
enum Measure {
    Value(f64),
    /// Measurable in this mode, but the run recorded nothing: missed.
    NoData(&'static str),
    /// This mode cannot measure it (the reason, or "" for the mode itself).
    NotInMode(&'static str),
}

/// One objective: its name, the scenario's limit (`None`: not set), whether
/// lower is better, and what this run measured.
type Objective = (&'static str, Option<f64>, bool, Measure);

/// Every objective `scenario` sets, judged on `r`.
pub fn evaluate(r: &Results, scenario: &Scenario) -> Vec<SloResult> {
    let s = &scenario.slo;
    let mut table = live_objectives(r, s);
    table.extend(match_wait_objectives(r, scenario));
    table.extend(queue_objectives(r, s));
    table
        .into_iter()
        .filter_map(|(name, limit, lower_is_better, m)| Some(judge(r, name, limit?, lower_is_better, m)))
        .collect()
}

/// The operation's latency summary, if it recorded anything.
fn op<'r>(r: &'r Results, name: &str) -> Option<&'r HistSummary> {
    r.operations.get(name).filter(|h| h.count > 0)
}

/// Logins, requests and errors: live mode only.
fn live_objectives(r: &Results, s: &SloSpec) -> Vec<Objective> {
    let live_only = |m: Measure| {
        if r.mode == "live" {
            m
        } else {
            Measure::NotInMode("")
        }
    };
    let t = &r.totals;
    let req_p99 = Op::ALL
        .iter()
        .filter(|o| o.is_request())
        .filter_map(|o| op(r, o.name()).map(|h| h.p99))
        .reduce(f64::max);
    let tried = t.players_logged_in + t.players_gave_up;
    vec![
        (
            "login_p99_ms",
            s.login_p99_ms,
            true,
            live_only(
                op(r, "login").map_or(Measure::NoData("no successful login"), |h| Measure::Value(h.p99)),
            ),
        ),
        (
            "request_p99_ms",
            s.request_p99_ms,
            true,
            live_only(req_p99.map_or(Measure::NoData("no successful request"), Measure::Value)),
        ),
        (
            "error_rate",
            s.error_rate,
            true,
            live_only(
                r.error_rate()
                    .map_or(Measure::NoData("nothing attempted"), Measure::Value),
            ),
        ),
        (
            "login_success_rate",
            s.login_success_rate,
            false,
            live_only(if tried > 0 {
                Measure::Value(t.players_logged_in as f64 / tried as f64)
            } else {
                Measure::NoData("no player finished logging in")
            }),
        ),
    ]
}

/// Match waits: live and model mode, when the scenario's players queue.
fn match_wait_objectives(r: &Results, scenario: &Scenario) -> Vec<Objective> {
    let s = &scenario.slo;
    let queues = scenario.behaviour.matchmaking > 0.0
        || scenario
            .regions
            .iter()
            .any(|x| x.behaviour.as_ref().is_some_and(|b| b.matchmaking > 0.0));
    let wait = |pick: fn(&HistSummary) -> f64| {
        if !(r.mode == "live" || r.mode == "model") {
            Measure::NotInMode("")
        } else if !queues || scenario.matchmaking.is_none() {
            Measure::NotInMode("the scenario's players do not queue for matches")
        } else {
            op(r, "match_wait").map_or(Measure::NoData("no ticket was matched"), |h| {
                Measure::Value(pick(h) / 1000.0)
            })
        }
    };
    vec![
        ("match_wait_p95_s", s.match_wait_p95_s, true, wait(|h| h.p95)),
        ("match_wait_p999_s", s.match_wait_p999_s, true, wait(|h| h.p999)),
        ("match_wait_max_s", s.match_wait_max_s, true, wait(|h| h.max)),
    ]
}

/// The login queue's order, places and ETAs: queue mode only.
fn queue_objectives(r: &Results, s: &SloSpec) -> Vec<Objective> {
    let queue_only = |m: Measure| {
        if r.mode == "queue" {
            m
        } else {
            Measure::NotInMode("")
        }
    };
    let q = r.login_queue.clone().unwrap_or_default();
    vec![
        (
            "queue_fifo_violations",
            s.queue_fifo_violations,
            true,
            queue_only(Measure::Value((q.fifo_violations + q.position_increases) as f64)),
        ),
        (
            "queue_lost_places",
            s.queue_lost_places,
            true,
            queue_only(Measure::Value(q.lost_places as f64)),
        ),
        (
            "queue_eta_error_p95_s",
            s.queue_eta_error_p95_s,
            true,
            queue_only(
                op(r, "queue_eta_error")
                    .map_or(Measure::NoData("no player was admitted from the queue"), |h| {
                        Measure::Value(h.p95 / 1000.0)
                    }),
            ),
        ),
    ]
}

/// Judges one set objective: met or missed when measured; an objective the
/// mode cannot measure is neither (it counts as `ok` so that it never fails a
/// run, and `measured: false` says why).
fn judge(r: &Results, name: &str, limit: f64, lower_is_better: bool, m: Measure) -> SloResult {
    let (actual, ok, measured, note) = match m {
        Measure::Value(a) => {
            let ok = if lower_is_better { a <= limit } else { a >= limit };
            (Some(a), ok, true, String::new())
        }
        Measure::NoData(why) => (None, false, true, why.to_owned()),
        Measure::NotInMode(why) => {
            let note = if why.is_empty() {
                format!("not measured in {} mode", r.mode)
            } else {
                format!("not measured: {why}")
            };
            (None, true, false, note)
        }
    };
    SloResult {
        name: name.into(),
        limit,
        actual,
        ok,
        measured,
        note,
    }
}

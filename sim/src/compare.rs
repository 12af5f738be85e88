//! `outpost-sim compare BASE.json NEW.json`: what changed between two runs
//! (latency percentiles by operation, error rates, waits, SLO verdicts), and
//! whether it is a regression beyond the [`Thresholds`], so CI or QA can gate
//! a build on it (exit status 2 on a regression).
//!
//! A metric is judged only where both runs measured it with enough samples
//! (`min_count`); the rest is shown for information. A latency or wait is a
//! regression when it grew by more than `*_pct` percent **and** by more than
//! its floor (small absolute changes are noise); an error rate when it grew by
//! more than `error_rate_abs` (absolute, 0.005 = half a percentage point); the
//! login success rate when it fell by more than `success_rate_abs`; an SLO
//! when it was met and is now missed. Thresholds come from a TOML file
//! (`--thresholds FILE`, the keys of [`Thresholds`]) and flags, flags winning.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::results::{Results, SloStatus};

/// When a change is a regression. The defaults suit a rerun on the same
/// machine; loosen them for noisy shared runners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Request and login latency percentiles: relative growth, percent. Default 20.
    pub latency_pct: f64,
    /// ... and absolute growth, ms, both needed. Default 5.
    pub latency_floor_ms: f64,
    /// Waits (match wait, queue wait and ETA error): relative growth, percent. Default 20.
    pub wait_pct: f64,
    /// ... and absolute growth, seconds, both needed. Default 1.
    pub wait_floor_s: f64,
    /// Error rate (overall and per operation): absolute growth. Default 0.005.
    pub error_rate_abs: f64,
    /// Login success rate: absolute fall. Default 0.01.
    pub success_rate_abs: f64,
    /// Fewest samples (or attempts) in both runs for a metric to be judged. Default 20.
    pub min_count: u64,
    /// Whether an SLO met in BASE and missed in NEW is a regression. Default true.
    pub slo_verdicts: bool,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            latency_pct: 20.0,
            latency_floor_ms: 5.0,
            wait_pct: 20.0,
            wait_floor_s: 1.0,
            error_rate_abs: 0.005,
            success_rate_abs: 0.01,
            min_count: 20,
            slo_verdicts: true,
        }
    }
}

impl Thresholds {
    /// Checks every figure is a finite number >= 0.
    pub fn validate(&self) -> Result<(), String> {
        let v = [
            ("latency_pct", self.latency_pct),
            ("latency_floor_ms", self.latency_floor_ms),
            ("wait_pct", self.wait_pct),
            ("wait_floor_s", self.wait_floor_s),
            ("error_rate_abs", self.error_rate_abs),
            ("success_rate_abs", self.success_rate_abs),
        ];
        for (k, x) in v {
            if !(x.is_finite() && x >= 0.0) {
                return Err(format!("threshold {k} must be a number >= 0"));
            }
        }
        Ok(())
    }
}

/// What a row says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Within the thresholds.
    Same,
    /// Better beyond the thresholds.
    Better,
    /// Worse beyond the thresholds: fails the comparison.
    Regression,
    /// Shown, not judged (too few samples, measured in one run only, a count).
    Info,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Same => "same",
            Verdict::Better => "better",
            Verdict::Regression => "REGRESSION",
            Verdict::Info => "",
        }
    }
}

/// One compared metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// `latency`, `wait`, `errors`, `logins`, `slo`, `totals`.
    pub group: &'static str,
    pub metric: String,
    pub base: Option<f64>,
    pub new: Option<f64>,
    /// `ms`, `s`, `share`, `count` or `slo` (1 met, 0 missed).
    pub unit: &'static str,
    pub verdict: Verdict,
}

/// Two runs compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub base: String,
    pub new: String,
    pub rows: Vec<Row>,
    pub thresholds: Thresholds,
}

impl Comparison {
    /// Rows that are regressions.
    pub fn regressions(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.verdict == Verdict::Regression)
    }

    /// The comparison as console text, one row a line.
    pub fn text(&self) -> String {
        let mut out = format!("compare {} → {}\n", self.base, self.new);
        out += &format!(
            "  {:<34} {:>12} {:>12} {:>9}  verdict\n",
            "metric", "base", "new", "change"
        );
        for r in &self.rows {
            out += &format!(
                "  {:<34} {:>12} {:>12} {:>9}  {}\n",
                format!("{} {}", r.group, r.metric),
                value(r.base, r.unit),
                value(r.new, r.unit),
                change(r),
                r.verdict.label()
            );
        }
        let n = self.regressions().count();
        out += &if n == 0 {
            "no regression beyond the thresholds\n".to_owned()
        } else {
            format!("{n} regression(s) beyond the thresholds\n")
        };
        out
    }
}

/// A value in its unit, for text and HTML.
pub fn value(v: Option<f64>, unit: &str) -> String {
    match (v, unit) {
        (None, _) => "–".into(),
        (Some(v), "ms") => crate::units::fmt_ms(v),
        (Some(v), "s") => crate::units::fmt_s(v),
        (Some(v), "share") => format!("{:.3}%", v * 100.0),
        (Some(v), "slo") => if v >= 1.0 { "met" } else { "missed" }.into(),
        (Some(v), _) => format!("{v:.0}"),
    }
}

/// The change of a row in words: relative for latencies, points for shares.
pub fn change(r: &Row) -> String {
    match (r.base, r.new, r.unit) {
        (Some(b), Some(n), "share") => format!("{:+.3}pp", (n - b) * 100.0),
        (Some(b), Some(n), "slo") if b != n => if n > b { "fixed" } else { "broken" }.into(),
        (Some(_), Some(_), "slo") => String::new(),
        (Some(b), Some(n), _) if b > 0.0 => format!("{:+.1}%", (n - b) / b * 100.0),
        (Some(b), Some(n), _) if b == n => "+0%".into(),
        (Some(_), Some(_), _) => "new".into(),
        _ => String::new(),
    }
}

/// Judges a growth: regression past both the relative and the absolute
/// threshold, better past both the other way, else the same.
fn judge_growth(b: f64, n: f64, pct: f64, floor: f64) -> Verdict {
    if n > b * (1.0 + pct / 100.0) && n - b > floor {
        Verdict::Regression
    } else if n < b * (1.0 - pct / 100.0) && b - n > floor {
        Verdict::Better
    } else {
        Verdict::Same
    }
}

/// Reads one percentile of a summary.
type Pick = fn(&crate::results::HistSummary) -> f64;
/// Reads one count of a result.
type Count = fn(&Results) -> u64;

/// Compares `new` with `base`.
pub fn compare(base: &Results, new: &Results, th: &Thresholds) -> Comparison {
    let mut rows = Vec::new();
    latency_rows(&mut rows, base, new, th);
    error_rows(&mut rows, base, new, th);
    rows.push(login_row(base, new, th));
    slo_rows(&mut rows, base, new, th);
    count_rows(&mut rows, base, new);
    Comparison {
        base: format!("{} ({} mode)", base.scenario, base.mode),
        new: format!("{} ({} mode)", new.scenario, new.mode),
        rows,
        thresholds: th.clone(),
    }
}

/// Latencies and waits, per operation and percentile (the maximum for
/// information only: one outlier is not a trend).
fn latency_rows(rows: &mut Vec<Row>, base: &Results, new: &Results, th: &Thresholds) {
    let ops: BTreeSet<&String> = base.operations.keys().chain(new.operations.keys()).collect();
    for op in ops {
        let (b, n) = (base.operations.get(op.as_str()), new.operations.get(op.as_str()));
        let wait = op == "match_wait" || op.starts_with("queue_");
        let enough = b
            .zip(n)
            .is_some_and(|(b, n)| b.count >= th.min_count && n.count >= th.min_count);
        let pcts: [(&str, Pick); 5] = [
            ("p50", |h| h.p50),
            ("p95", |h| h.p95),
            ("p99", |h| h.p99),
            ("p99.9", |h| h.p999),
            ("max", |h| h.max),
        ];
        for (name, f) in pcts {
            let (bv, nv) = (b.map(f), n.map(f));
            let verdict = match (bv, nv) {
                (Some(x), Some(y)) if enough && name != "max" => {
                    if wait {
                        judge_growth(x / 1e3, y / 1e3, th.wait_pct, th.wait_floor_s)
                    } else {
                        judge_growth(x, y, th.latency_pct, th.latency_floor_ms)
                    }
                }
                _ => Verdict::Info,
            };
            rows.push(Row {
                group: if wait { "wait" } else { "latency" },
                metric: format!("{op} {name}"),
                base: bv,
                new: nv,
                unit: "ms",
                verdict,
            });
        }
    }
}

/// Error rates: overall, then per operation.
fn error_rows(rows: &mut Vec<Row>, base: &Results, new: &Results, th: &Thresholds) {
    let judge_rate = |b: Option<f64>, n: Option<f64>, enough: bool| match (b, n) {
        (Some(b), Some(n)) if enough => {
            if n - b > th.error_rate_abs {
                Verdict::Regression
            } else if b - n > th.error_rate_abs {
                Verdict::Better
            } else {
                Verdict::Same
            }
        }
        _ => Verdict::Info,
    };
    let enough = base.totals.attempts >= th.min_count && new.totals.attempts >= th.min_count;
    rows.push(Row {
        group: "errors",
        metric: "error rate (all operations)".into(),
        base: base.error_rate(),
        new: new.error_rate(),
        unit: "share",
        verdict: judge_rate(base.error_rate(), new.error_rate(), enough),
    });
    let ops: BTreeSet<&String> = base.accounting.keys().chain(new.accounting.keys()).collect();
    for op in ops {
        let rate = |r: &Results| {
            r.accounting
                .get(op.as_str())
                .filter(|a| a.attempts > 0)
                .map(|a| (a.error_count() as f64 / a.attempts as f64, a.attempts))
        };
        let (b, n) = (rate(base), rate(new));
        let enough = b
            .zip(n)
            .is_some_and(|(b, n)| b.1 >= th.min_count && n.1 >= th.min_count);
        rows.push(Row {
            group: "errors",
            metric: format!("{op} error rate"),
            base: b.map(|x| x.0),
            new: n.map(|x| x.0),
            unit: "share",
            verdict: judge_rate(b.map(|x| x.0), n.map(|x| x.0), enough),
        });
    }
}

/// Login success (live mode only: the others have no logins).
fn login_row(base: &Results, new: &Results, th: &Thresholds) -> Row {
    let success = |r: &Results| {
        let tried = r.totals.players_logged_in + r.totals.players_gave_up;
        (r.mode == "live" && tried > 0).then(|| (r.totals.players_logged_in as f64 / tried as f64, tried))
    };
    let (b, n) = (success(base), success(new));
    let verdict = match (b, n) {
        (Some(b), Some(n)) if b.1 >= th.min_count && n.1 >= th.min_count => {
            if b.0 - n.0 > th.success_rate_abs {
                Verdict::Regression
            } else if n.0 - b.0 > th.success_rate_abs {
                Verdict::Better
            } else {
                Verdict::Same
            }
        }
        _ => Verdict::Info,
    };
    Row {
        group: "logins",
        metric: "login success rate".into(),
        base: b.map(|x| x.0),
        new: n.map(|x| x.0),
        unit: "share",
        verdict,
    }
}

/// SLO verdicts: met in BASE and missed in NEW (or missed in NEW with no
/// verdict in BASE) is a regression when `slo_verdicts` is on.
fn slo_rows(rows: &mut Vec<Row>, base: &Results, new: &Results, th: &Thresholds) {
    let names: BTreeSet<&String> = base.slo.iter().chain(&new.slo).map(|s| &s.name).collect();
    for name in names {
        let get = |r: &Results| {
            r.slo
                .iter()
                .find(|s| s.name == **name)
                .map(|s| s.status())
                .filter(|s| *s != SloStatus::NotMeasured)
                .map(|s| if s == SloStatus::Met { 1.0 } else { 0.0 })
        };
        let (b, n) = (get(base), get(new));
        let verdict = match (b, n) {
            (Some(b), Some(n)) if b > n && th.slo_verdicts => Verdict::Regression,
            (Some(b), Some(n)) if b < n => Verdict::Better,
            (Some(_), Some(_)) => Verdict::Same,
            // Missed in NEW without a verdict in BASE: still a miss to show.
            (None, Some(n)) if n < 1.0 && th.slo_verdicts => Verdict::Regression,
            _ => Verdict::Info,
        };
        rows.push(Row {
            group: "slo",
            metric: name.clone(),
            base: b,
            new: n,
            unit: "slo",
            verdict,
        });
    }
}

/// Counts, for information.
fn count_rows(rows: &mut Vec<Row>, base: &Results, new: &Results) {
    let counts: [(&str, Count); 4] = [
        ("peak concurrent players", Results::peak_players),
        ("attempts", |r| r.totals.attempts),
        ("errors", |r| r.totals.errors),
        ("expected outcomes", |r| r.totals.outcomes),
    ];
    for (metric, f) in counts {
        rows.push(Row {
            group: "totals",
            metric: metric.into(),
            base: Some(f(base) as f64),
            new: Some(f(new) as f64),
            unit: "count",
            verdict: Verdict::Info,
        });
    }
}

/// Renders the comparison as a self-contained HTML page.
pub fn render(c: &Comparison) -> String {
    crate::compare_report::render(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_needs_both_thresholds() {
        assert_eq!(judge_growth(100.0, 130.0, 20.0, 5.0), Verdict::Regression);
        assert_eq!(
            judge_growth(1.0, 3.0, 20.0, 5.0),
            Verdict::Same,
            "tripled but 2 ms: noise"
        );
        assert_eq!(judge_growth(100.0, 110.0, 20.0, 5.0), Verdict::Same);
        assert_eq!(judge_growth(100.0, 70.0, 20.0, 5.0), Verdict::Better);
        assert!(Thresholds::default().validate().is_ok());
        let bad = Thresholds {
            wait_pct: -1.0,
            ..Thresholds::default()
        };
        assert!(bad.validate().unwrap_err().contains("wait_pct"));
    }
}

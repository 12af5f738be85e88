//! The HTML report: one self-contained page (inline CSS and SVG, no scripts,
//! nothing fetched from the network) rendered from [`Results`].
//!
//! Sections: verdict and SLOs, totals, over time (players per region against
//! the curve's target, the scenario's phases shaded and labelled, SLO limits
//! as lines; request rate, latency and errors in live mode, match waits in
//! model mode), per region (tabs: players, logins, latency, errors), the
//! gateway's CPU and memory beside the sim's own CPU and timer lateness
//! (live), peak and tail waits with the worst
//! tickets (model), latency by operation (one unit per table), errors by
//! code, notes. Charts and formatting are in `report_chart.rs`, the sections
//! over time in `report_sections.rs`.

use std::fmt::Write;

use crate::accounting::ranked;
pub(crate) use crate::report_chart::{bar, fmt_time, series, PALETTE};
pub use crate::report_chart::{esc, fmt_ms, fmt_num, line_chart, Chart, Series, Unit};
use crate::results::{Results, SloStatus};

/// The error table and the expected-outcome table (by operation and code,
/// most frequent first), from the run's accounting. Older results without
/// an accounting fall back to `errors_by_op`.
pub fn accounting_tables(r: &Results) -> String {
    let mut h = String::new();
    let errors: Vec<(String, String, u64)> = if r.accounting.is_empty() {
        let mut v: Vec<_> = r
            .errors_by_op
            .iter()
            .flat_map(|(op, m)| m.iter().map(move |(c, n)| (op.clone(), c.clone(), *n)))
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.2));
        v
    } else {
        ranked(&r.accounting, false)
    };
    let outcomes = ranked(&r.accounting, true);
    let t = &r.totals;
    let rate = r.error_rate().map_or(String::new(), |e| {
        format!(
            " · error rate {:.3}% of {} attempts",
            e * 100.0,
            fmt_num(t.attempts as f64)
        )
    });
    let _ = write!(
        h,
        "<h2>Errors <small>{} errors · {} expected outcomes{rate}</small></h2>",
        fmt_num(errors.iter().map(|e| e.2).sum::<u64>() as f64),
        fmt_num(outcomes.iter().map(|e| e.2).sum::<u64>() as f64)
    );
    let table = |h: &mut String, id: &str, rows: &[(String, String, u64)], color: &str, empty: &str| {
        if rows.is_empty() {
            let _ = write!(h, "<p class=\"empty\" id=\"{id}\">{empty}</p>");
            return;
        }
        let max = rows.iter().map(|e| e.2).max().unwrap_or(1) as f64;
        let _ = write!(
            h,
            "<table id=\"{id}\"><tr><th>operation</th><th>code</th><th class=\"n\">count</th><th class=\"n\">of attempts</th><th class=\"w\"></th></tr>"
        );
        for (op, code, n) in rows {
            let share = r
                .accounting
                .get(op)
                .filter(|a| a.attempts > 0)
                .map_or("–".into(), |a| {
                    format!("{:.2}%", *n as f64 * 100.0 / a.attempts as f64)
                });
            let _ = write!(
                h,
                "<tr data-op=\"{op}\" data-code=\"{code}\" data-count=\"{n}\"><td>{op}</td><td>{code}</td><td class=\"n\">{}</td><td class=\"n\">{share}</td><td>{}</td></tr>",
                fmt_num(*n as f64),
                bar(*n as f64, max, color),
                op = esc(op),
                code = esc(code),
            );
        }
        h.push_str("</table>");
    };
    table(&mut h, "errors", &errors, PALETTE[1], "no errors");
    if !outcomes.is_empty() || !r.expected_outcomes.is_empty() {
        let _ = write!(
            h,
            "<h3>Expected outcomes <small>(handled by the game, not errors: {})</small></h3>",
            esc(&r.expected_outcomes.join(", "))
        );
        table(&mut h, "outcomes", &outcomes, PALETTE[3], "none");
    }
    h
}

/// Renders the whole report.
pub fn render(r: &Results) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>outpost-sim: {name}</title><style>{CSS}</style></head><body><main>",
        name = esc(&r.scenario)
    );
    header(&mut h, r);
    slo_table(&mut h, r);
    total_cards(&mut h, r);

    h.push_str(&crate::report_sections::over_time(r));
    h.push_str(&crate::report_sections::regions(r));
    h.push_str(&crate::report_sections::gateway(r));
    h.push_str(&crate::report_sections::model_tail(r));
    h.push_str(&crate::report_sections::model_store(r));
    h.push_str(&crate::report_sections::operations(r));

    // Errors and expected outcomes, by operation and code: the accounting,
    // with the same counts as the console and result.json.
    h.push_str(&accounting_tables(r));
    if !r.notes.is_empty() {
        h.push_str("<h2>Notes</h2><ul>");
        for n in &r.notes {
            let _ = write!(h, "<li>{}</li>", esc(n));
        }
        h.push_str("</ul>");
    }
    h.push_str("<footer>outpost-sim · data: result.json next to this file (format outpost-sim-result/1)</footer></main></body></html>");
    h
}

/// The title, the SLO verdict and the run's facts.
fn header(h: &mut String, r: &Results) {
    let count = |st: SloStatus| r.slo.iter().filter(|s| s.status() == st).count();
    let (missed, unmeasured) = (count(SloStatus::Missed), count(SloStatus::NotMeasured));
    let measured = r.slo.len() - unmeasured;
    let mut verdict = if r.slo.is_empty() {
        "<span class=\"pill none\">no SLOs set</span>".to_owned()
    } else if measured == 0 {
        String::new()
    } else if missed == 0 {
        format!("<span class=\"pill ok\">all {measured} measured SLOs met</span>")
    } else {
        format!("<span class=\"pill bad\">{missed} of {measured} measured SLOs missed</span>")
    };
    if unmeasured > 0 {
        let _ = write!(
            verdict,
            " <span class=\"pill none\">{unmeasured} not measured in this mode</span>"
        );
    }
    let _ = write!(
        h,
        "<header><h1>{} <small>{} mode</small> {verdict}</h1><p>{}</p><p class=\"meta\">scale {} · simulated {} · wall {} · target {}</p></header>",
        esc(&r.scenario),
        esc(&r.mode),
        esc(&r.description),
        fmt_num(r.scale),
        fmt_time(r.sim_s, r.sim_s),
        fmt_time(r.wall_s, r.wall_s),
        esc(&r.target)
    );
}

/// SLOs: every objective the scenario sets, measured or not in this mode.
fn slo_table(h: &mut String, r: &Results) {
    if r.slo.is_empty() {
        return;
    }
    h.push_str("<h2>Service level objectives</h2><table id=\"slo\"><tr><th>objective</th><th class=\"n\">limit</th><th class=\"n\">measured</th><th></th></tr>");
    for s in &r.slo {
        let (pill, measured) = match s.status() {
            SloStatus::Met => (
                "<span class=\"pill ok\">met</span>",
                s.actual.map_or("–".into(), fmt_num),
            ),
            SloStatus::Missed => (
                "<span class=\"pill bad\">missed</span>",
                s.actual.map_or_else(|| format!("– ({})", esc(&s.note)), fmt_num),
            ),
            SloStatus::NotMeasured => (
                "<span class=\"pill none\">not measured in this mode</span>",
                esc(&s.note),
            ),
        };
        let _ = write!(
            h,
            "<tr data-slo=\"{}\"><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{measured}</td><td>{pill}</td></tr>",
            esc(&s.name),
            esc(&s.name),
            fmt_num(s.limit),
        );
    }
    h.push_str("</table>");
}

/// Totals as cards: what the mode counts.
fn total_cards(h: &mut String, r: &Results) {
    let t = &r.totals;
    let peak_players = r
        .timeline
        .iter()
        .map(|s| s.regions.iter().map(|x| x.players).sum::<u64>())
        .max()
        .unwrap_or(0);
    let mut cards: Vec<(&str, String)> = vec![("peak concurrent", fmt_num(peak_players as f64))];
    if r.mode == "live" {
        cards.extend([
            ("players started", fmt_num(t.players_started as f64)),
            ("logins ok", fmt_num(t.logins_ok as f64)),
            ("login failures", fmt_num(t.login_failures as f64)),
            ("gave up", fmt_num(t.players_gave_up as f64)),
            (
                "reconnects (resumed)",
                format!("{} ({})", fmt_num(t.reconnects as f64), fmt_num(t.resumed as f64)),
            ),
            ("storm drops", fmt_num(t.storm_drops as f64)),
            ("requests", fmt_num(t.requests as f64)),
            ("request errors", fmt_num(t.request_errors as f64)),
        ]);
        if t.inventory_ops > 0 {
            cards.extend([
                ("inventory operations", fmt_num(t.inventory_ops as f64)),
                ("purchases declined", fmt_num(t.purchases_declined as f64)),
                ("replays verified", fmt_num(t.replays_verified as f64)),
            ]);
        }
    } else if let Some(q) = &r.login_queue {
        cards.extend(crate::queue_report::cards(q));
    } else {
        cards.extend([
            ("players arrived", fmt_num(t.players_started as f64)),
            ("tickets", fmt_num(t.tickets as f64)),
            ("matches", fmt_num(t.matches as f64)),
            ("storm drops", fmt_num(t.storm_drops as f64)),
        ]);
    }
    h.push_str("<div class=\"cards\">");
    for (k, v) in cards {
        let _ = write!(h, "<div><b>{v}</b><span>{k}</span></div>");
    }
    h.push_str("</div>");
}

const CSS: &str = "
body{margin:0;background:#f6f7f9;color:#111827;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}
main{max-width:920px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h1 small{font-weight:400;color:#6b7280;font-size:14px;margin-right:8px}
h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #e5e7eb;padding-bottom:4px}
h3{font-size:13px;margin:0 0 4px;color:#374151;font-weight:600}
.meta{color:#6b7280;font-size:12px;margin:0}
.pill{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;vertical-align:middle}
.ok{background:#dcfce7;color:#166534}.bad{background:#fee2e2;color:#991b1b}.none{background:#e5e7eb;color:#374151}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(130px,1fr));gap:8px;margin-top:16px}
.cards div{background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:8px 10px}
.cards b{display:block;font-size:18px}.cards span{color:#6b7280;font-size:12px}
.chart{background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:10px 10px 6px;margin:10px 0}
svg{display:block;max-width:100%;height:auto}
.grid{stroke:#eef0f3}.tick{stroke:#9ca3af}.axis{stroke:#6b7280}
.yl{font-size:11px;fill:#4b5563;text-anchor:end}.xl{font-size:11px;fill:#4b5563;text-anchor:middle}.unit{font-size:11px;fill:#6b7280}
.legend{display:flex;flex-wrap:wrap;gap:14px;font-size:12px;color:#374151;padding:2px 0 0 64px}
.legend i{display:inline-block;width:22px;margin-right:6px;vertical-align:middle}
.legend i.shade{height:10px;background:#fee2e2;border:0}
.pl{font-size:10px;font-weight:600}.sl{font-size:10px;fill:#991b1b;text-anchor:end}
.tabs{margin-top:8px}.tabs>input{position:absolute;opacity:0;pointer-events:none}
.tabs>label{display:inline-block;padding:4px 14px;margin-right:4px;border:1px solid #e5e7eb;border-radius:6px 6px 0 0;background:#f3f4f6;cursor:pointer;font-size:13px}
.tabs>.panel{display:none;border-top:1px solid #e5e7eb;padding-top:4px}
.warn{background:#fef3c7;color:#92400e;border:1px solid #fde68a;border-radius:6px;padding:6px 10px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #e5e7eb}
th,td{padding:5px 8px;border-bottom:1px solid #f0f1f3;text-align:left;font-size:13px}th{background:#f9fafb;font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}.w{width:30%}
.bar{background:#f3f4f6;height:10px;border-radius:2px}.bar b{display:block;height:10px;border-radius:2px}
.empty{color:#6b7280;font-style:italic}
footer{margin-top:32px;color:#9ca3af;font-size:12px}
";

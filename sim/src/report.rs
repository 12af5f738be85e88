//! The HTML report: one self-contained page (inline CSS and SVG, no scripts,
//! nothing fetched from the network) rendered from [`Results`].
//!
//! Sections: verdict and SLOs, totals, concurrent players per region over
//! time (actual solid, target dashed), request rate and errors over time,
//! request latency p50/p99 over time (live) or match wait p50/p95 over time
//! (model), operation latency percentiles, errors by code, notes.

use std::fmt::Write;

use crate::accounting::ranked;
use crate::results::{Results, Sample, SloStatus};

pub(crate) const PALETTE: [&str; 8] = [
    "#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563",
];
const W: f64 = 880.0;
const H: f64 = 240.0;
const ML: f64 = 64.0;
const MR: f64 = 16.0;
const MT: f64 = 26.0;
const MB: f64 = 34.0;

/// One line of a chart; `None` y values leave a gap.
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub dashed: bool,
    pub points: Vec<(f64, Option<f64>)>,
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" tick step (1, 2 or 5 × 10^k) for about `n` ticks over `range`.
fn nice_step(range: f64, n: f64) -> f64 {
    if range <= 0.0 || !range.is_finite() {
        return 1.0;
    }
    let raw = range / n;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Compact number: 1234 → "1.2k", 2_000_000 → "2M", 0.25 → "0.25".
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    };
    if a >= 1e6 {
        format!("{}M", trim(format!("{:.2}", v / 1e6)))
    } else if a >= 1e4 {
        format!("{}k", trim(format!("{:.1}", v / 1e3)))
    } else if a >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if a >= 1.0 {
        trim(format!("{v:.1}"))
    } else {
        trim(format!("{v:.3}"))
    }
}

/// A time axis label: seconds, or minutes past 10 minutes.
fn fmt_time(s: f64, span: f64) -> String {
    if span > 600.0 {
        format!("{}m", fmt_num(s / 60.0))
    } else {
        format!("{}s", fmt_num(s))
    }
}

/// An SVG line chart with axes, grid and an HTML legend.
pub fn line_chart(title: &str, unit: &str, series: &[Series]) -> String {
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    for (x, y) in pts {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        if let Some(y) = y {
            y1 = y1.max(*y);
        }
    }
    let mut out = String::new();
    let _ = write!(out, "<section class=\"chart\"><h3>{}</h3>", esc(title));
    if !x0.is_finite() {
        out.push_str("<p class=\"empty\">no data</p></section>");
        return out;
    }
    x0 = x0.min(0.0);
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let ystep = nice_step(if y1 > 0.0 { y1 } else { 1.0 }, 4.0);
    let ymax = ((y1 / ystep).ceil() * ystep).max(ystep);
    // Ticks at round minutes when the axis is labelled in minutes.
    let xstep = if x1 - x0 > 600.0 {
        nice_step((x1 - x0) / 60.0, 8.0) * 60.0
    } else {
        nice_step(x1 - x0, 8.0)
    };
    let px = |x: f64| ML + (x - x0) / (x1 - x0) * (W - ML - MR);
    let py = |y: f64| MT + (1.0 - y / ymax) * (H - MT - MB);
    let _ = write!(
        out,
        "<svg viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{}\">",
        esc(title)
    );
    // Grid and y labels.
    let mut y = 0.0;
    while y <= ymax + ystep * 1e-9 {
        let _ = write!(
            out,
            "<line x1=\"{ML}\" x2=\"{}\" y1=\"{y_}\" y2=\"{y_}\" class=\"grid\"/><text x=\"{}\" y=\"{}\" class=\"yl\">{}</text>",
            W - MR,
            ML - 6.0,
            py(y) + 4.0,
            fmt_num(y),
            y_ = py(y)
        );
        y += ystep;
    }
    let mut x = (x0 / xstep).ceil() * xstep;
    while x <= x1 + xstep * 1e-9 {
        let _ = write!(
            out,
            "<line x1=\"{x_}\" x2=\"{x_}\" y1=\"{}\" y2=\"{}\" class=\"tick\"/><text x=\"{x_}\" y=\"{}\" class=\"xl\">{}</text>",
            H - MB,
            H - MB + 4.0,
            H - MB + 18.0,
            fmt_time(x, x1 - x0),
            x_ = px(x)
        );
        x += xstep;
    }
    let _ = write!(
        out,
        "<line x1=\"{ML}\" x2=\"{ML}\" y1=\"{MT}\" y2=\"{}\" class=\"axis\"/><line x1=\"{ML}\" x2=\"{}\" y1=\"{b}\" y2=\"{b}\" class=\"axis\"/>",
        H - MB,
        W - MR,
        b = H - MB
    );
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"14\" class=\"unit\">{}</text>",
        2.0,
        esc(unit)
    );
    for s in series {
        // One path with gaps where values are missing.
        let mut d = String::new();
        let mut pen = false;
        let mut lone = Vec::new();
        for (i, (x, y)) in s.points.iter().enumerate() {
            match y {
                Some(y) => {
                    let _ = write!(d, "{}{:.1},{:.1} ", if pen { "L" } else { "M" }, px(*x), py(*y));
                    let next_missing = s.points.get(i + 1).is_none_or(|p| p.1.is_none());
                    if !pen && next_missing {
                        lone.push((px(*x), py(*y)));
                    }
                    pen = true;
                }
                None => pen = false,
            }
        }
        let dash = if s.dashed { " stroke-dasharray=\"6 4\"" } else { "" };
        let _ = write!(
            out,
            "<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{}\"{dash}/>",
            d.trim_end(),
            s.color,
            if s.dashed { 1.5 } else { 2.0 }
        );
        for (cx, cy) in lone {
            let _ = write!(
                out,
                "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"2.5\" fill=\"{}\"/>",
                s.color
            );
        }
    }
    out.push_str("</svg><div class=\"legend\">");
    for s in series {
        let _ = write!(
            out,
            "<span><i style=\"border-top:3px {} {}\"></i>{}</span>",
            if s.dashed { "dashed" } else { "solid" },
            s.color,
            esc(&s.name)
        );
    }
    out.push_str("</div></section>");
    out
}

pub(crate) fn series(
    name: impl Into<String>,
    color: &'static str,
    dashed: bool,
    tl: &[Sample],
    f: impl Fn(&Sample) -> Option<f64>,
) -> Series {
    Series {
        name: name.into(),
        color,
        dashed,
        points: tl.iter().map(|s| (s.t_s, f(s))).collect(),
    }
}

/// A horizontal bar inside a table cell, `v` of `max`.
fn bar(v: f64, max: f64, color: &str) -> String {
    let w = if max > 0.0 {
        (v / max * 100.0).clamp(0.0, 100.0)
    } else {
        0.0
    };
    format!("<div class=\"bar\"><b style=\"width:{w:.1}%;background:{color}\"></b></div>")
}

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
    let tl = &r.timeline;
    let live = r.mode == "live";
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>outpost-sim: {name}</title><style>{CSS}</style></head><body><main>",
        name = esc(&r.scenario)
    );
    let verdict = if r.slo.is_empty() {
        "<span class=\"pill none\">no SLOs set</span>".to_owned()
    } else if r.slo_ok() {
        "<span class=\"pill ok\">all SLOs met</span>".to_owned()
    } else {
        format!(
            "<span class=\"pill bad\">{} of {} SLOs missed</span>",
            r.slo.iter().filter(|s| !s.ok).count(),
            r.slo.len()
        )
    };
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

    // SLOs: every objective the scenario sets, measured or not in this mode.
    if !r.slo.is_empty() {
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

    // Totals as cards.
    let t = &r.totals;
    let peak_players = tl
        .iter()
        .map(|s| s.regions.iter().map(|x| x.players).sum::<u64>())
        .max()
        .unwrap_or(0);
    let mut cards: Vec<(&str, String)> = vec![("peak concurrent", fmt_num(peak_players as f64))];
    if live {
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

    // Players per region.
    let mut players = Vec::new();
    for (i, name) in r.regions.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        players.push(series(name.clone(), c, false, tl, |s| {
            s.regions.get(i).map(|x| x.players as f64)
        }));
        players.push(series(format!("{name} target"), c, true, tl, |s| {
            s.regions.get(i).map(|x| x.target as f64)
        }));
    }
    h.push_str("<h2>Over time</h2>");
    h.push_str(&line_chart(
        if live {
            "Concurrent players per region (logged in; dashed: curve target)"
        } else {
            "Concurrent players per region (online; dashed: curve target)"
        },
        "players",
        &players,
    ));
    if live {
        h.push_str(&line_chart(
            "Requests and logins per second",
            "per second",
            &[
                series("requests/s", PALETTE[0], false, tl, |s| Some(s.requests_per_s)),
                series("logins/s", PALETTE[2], false, tl, |s| Some(s.logins_per_s)),
            ],
        ));
        h.push_str(&line_chart(
            "Request latency over time (all request types)",
            "ms",
            &[
                series("p50", PALETTE[0], false, tl, |s| s.p50_ms),
                series("p99", PALETTE[1], false, tl, |s| s.p99_ms),
            ],
        ));
    } else if r.mode == "queue" {
        h.push_str(&crate::queue_report::section(r));
    } else {
        h.push_str(&line_chart(
            "Match wait of tickets matched in each interval",
            "seconds",
            &[
                series("p50", PALETTE[0], false, tl, |s| s.match_wait_p50_s),
                series("p95", PALETTE[1], false, tl, |s| s.match_wait_p95_s),
            ],
        ));
        let mut waiting = Vec::new();
        for (i, name) in r.regions.iter().enumerate() {
            waiting.push(series(
                format!("{name} tickets waiting"),
                PALETTE[i % PALETTE.len()],
                false,
                tl,
                |s| s.regions.get(i).map(|x| x.waiting as f64),
            ));
        }
        h.push_str(&line_chart(
            "Matchmaking pool depth per region",
            "tickets",
            &waiting,
        ));
        h.push_str(&line_chart(
            "Matches formed per second",
            "per second",
            &[series("matches/s", PALETTE[2], false, tl, |s| s.matches_per_s)],
        ));
    }
    if live {
        h.push_str(&line_chart(
            "Errors per second (failed requests and login attempts)",
            "per second",
            &[series("errors/s", PALETTE[1], false, tl, |s| {
                Some(s.errors_per_s)
            })],
        ));
    }

    // Operations.
    h.push_str("<h2>Latency by operation</h2>");
    if r.operations.is_empty() {
        h.push_str("<p class=\"empty\">no operations recorded</p>");
    } else {
        let max_p99 = r.operations.values().map(|o| o.p99).fold(0.0, f64::max);
        h.push_str("<table><tr><th>operation</th><th class=\"n\">count</th><th class=\"n\">p50</th><th class=\"n\">p90</th><th class=\"n\">p95</th><th class=\"n\">p99</th><th class=\"n\">p99.9</th><th class=\"n\">max</th><th class=\"w\">p99</th></tr>");
        for (name, o) in &r.operations {
            let unit = if name == "match_wait" { "s" } else { "ms" };
            let k = if unit == "s" { 1e-3 } else { 1.0 };
            let cell = |v: f64| format!("<td class=\"n\">{} {unit}</td>", fmt_num(v * k));
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"n\">{}</td>{}{}{}{}{}{}<td>{}</td></tr>",
                esc(name),
                fmt_num(o.count as f64),
                cell(o.p50),
                cell(o.p90),
                cell(o.p95),
                cell(o.p99),
                cell(o.p999),
                cell(o.max),
                bar(o.p99, max_p99, PALETTE[0])
            );
        }
        h.push_str("</table>");
    }

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
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #e5e7eb}
th,td{padding:5px 8px;border-bottom:1px solid #f0f1f3;text-align:left;font-size:13px}th{background:#f9fafb;font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}.w{width:30%}
.bar{background:#f3f4f6;height:10px;border-radius:2px}.bar b{display:block;height:10px;border-radius:2px}
.empty{color:#6b7280;font-style:italic}
footer{margin-top:32px;color:#9ca3af;font-size:12px}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_steps() {
        assert_eq!(fmt_num(2_000_000.0), "2M");
        assert_eq!(fmt_num(12_345.0), "12.3k");
        assert_eq!(fmt_num(250.0), "250");
        assert_eq!(fmt_num(2.5), "2.5");
        assert_eq!(fmt_num(0.125), "0.125");
        assert_eq!(nice_step(100.0, 4.0), 50.0);
        assert_eq!(nice_step(7.0, 8.0), 1.0);
        assert_eq!(esc("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
    }

    #[test]
    fn chart_handles_gaps_and_empty_input() {
        let s = Series {
            name: "x<y".into(),
            color: PALETTE[0],
            dashed: false,
            points: vec![(0.0, Some(1.0)), (1.0, None), (2.0, Some(3.0)), (3.0, Some(2.0))],
        };
        let svg = line_chart("t", "u", &[s]);
        assert_eq!(svg.matches("<path").count(), 1);
        assert_eq!(
            svg.matches("<circle").count(),
            1,
            "a lone point is drawn as a dot"
        );
        assert!(svg.contains("x&lt;y"));
        assert!(line_chart("t", "u", &[]).contains("no data"));
    }
}

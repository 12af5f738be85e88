//! The HTML page of `outpost-sim compare` (self-contained, no scripts): the
//! verdict, then one table row per compared metric, regressions first.

use std::fmt::Write;

use crate::compare::{change, value, Comparison, Verdict};
use crate::report::esc;

/// Renders `c`.
pub fn render(c: &Comparison) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let n = c.regressions().count();
    let verdict = if n == 0 {
        "<span class=\"pill ok\">no regression</span>".to_owned()
    } else {
        format!("<span class=\"pill bad\">{n} regression(s)</span>")
    };
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>outpost-sim compare</title><style>{CSS}</style></head><body><main><h1>Compare {verdict}</h1><p class=\"meta\">base: {} · new: {}</p>",
        esc(&c.base),
        esc(&c.new)
    );
    let t = &c.thresholds;
    let _ = write!(
        h,
        "<p class=\"meta\">thresholds: latency +{}% and +{} ms · waits +{}% and +{} s · error rate +{} · login success −{} · at least {} samples · SLO verdicts {}</p>",
        t.latency_pct,
        t.latency_floor_ms,
        t.wait_pct,
        t.wait_floor_s,
        t.error_rate_abs,
        t.success_rate_abs,
        t.min_count,
        if t.slo_verdicts { "judged" } else { "shown only" }
    );
    h.push_str("<table><tr><th>group</th><th>metric</th><th class=\"n\">base</th><th class=\"n\">new</th><th class=\"n\">change</th><th>verdict</th></tr>");
    let order = |v: Verdict| match v {
        Verdict::Regression => 0,
        Verdict::Better => 1,
        Verdict::Same => 2,
        Verdict::Info => 3,
    };
    let mut rows: Vec<_> = c.rows.iter().collect();
    rows.sort_by_key(|r| order(r.verdict));
    for r in rows {
        let class = match r.verdict {
            Verdict::Regression => "bad",
            Verdict::Better => "ok",
            _ => "",
        };
        let _ = write!(
            h,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            r.group,
            esc(&r.metric),
            esc(&value(r.base, r.unit)),
            esc(&value(r.new, r.unit)),
            esc(&change(r)),
            r.verdict.label()
        );
    }
    h.push_str("</table><footer>outpost-sim compare</footer></main></body></html>");
    h
}

const CSS: &str = "
body{margin:0;background:#f6f7f9;color:#111827;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}
main{max-width:920px;margin:0 auto;padding:24px}h1{font-size:22px}
.meta{color:#6b7280;font-size:12px;margin:0 0 6px}
.pill{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;vertical-align:middle}
.ok{background:#dcfce7;color:#166534}.bad{background:#fee2e2;color:#991b1b}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #e5e7eb;margin-top:12px}
th,td{padding:5px 8px;border-bottom:1px solid #f0f1f3;text-align:left;font-size:13px}th{background:#f9fafb}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
footer{margin-top:32px;color:#9ca3af;font-size:12px}
";

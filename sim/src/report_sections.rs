//! The report's sections over time and per region: the charts of every
//! region together, per-region tabs (players, logins, latency, errors), the
//! gateway's CPU and memory with the sim's own CPU and timer lateness (live),
//! model mode's tail (peak, worst tickets),
//! and the latency tables (one unit per table).

use std::fmt::Write;

use crate::report_chart::{bar, esc, fmt_ms, fmt_num, fmt_value, series, Chart, Unit, PALETTE, TARGET};
use crate::results::{HistSummary, Results};

/// The limit of the SLO named `name`, if the scenario set one.
fn slo(r: &Results, name: &str) -> Option<f64> {
    r.slo.iter().find(|s| s.name == name).map(|s| s.limit)
}

/// Charts of every region together.
pub(crate) fn over_time(r: &Results) -> String {
    let tl = &r.timeline;
    let live = r.mode == "live";
    let ph = &r.phases;
    let mut h = String::from("<h2 id=\"over-time\">Over time</h2>");
    let mut players = Vec::new();
    for (i, name) in r.regions.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        players.push(series(format!("{name} actual"), c, false, tl, |s| {
            s.regions.get(i).map(|x| x.players as f64)
        }));
        players.push(series(format!("{name} target"), c, true, tl, |s| {
            s.regions.get(i).map(|x| x.target as f64)
        }));
    }
    let title = if live {
        "Concurrent players per region: logged in (solid) against the curve's target (dashed)"
    } else {
        "Concurrent players per region: online (solid) against the curve's target (dashed)"
    };
    h.push_str(
        &Chart::new(title, Unit::Plain("players"))
            .phases(ph, None)
            .render(&players),
    );
    if live {
        h.push_str(
            &Chart::new("Requests and logins per second", Unit::Plain("per second"))
                .phases(ph, None)
                .render(&[
                    series("requests/s", PALETTE[0], false, tl, |s| Some(s.requests_per_s)),
                    series("logins/s", PALETTE[2], false, tl, |s| Some(s.logins_per_s)),
                ]),
        );
        h.push_str(
            &Chart::new("Request latency over time (all request types)", Unit::Millis)
                .phases(ph, None)
                .threshold("request p99 SLO", slo(r, "request_p99_ms"))
                .render(&[
                    series("p50", PALETTE[0], false, tl, |s| s.p50_ms),
                    series("p99", PALETTE[1], false, tl, |s| s.p99_ms),
                ]),
        );
        h.push_str(
            &Chart::new(
                "Errors per second (failed requests and login attempts)",
                Unit::Plain("per second"),
            )
            .phases(ph, None)
            .render(&[series("errors/s", PALETTE[1], false, tl, |s| {
                Some(s.errors_per_s)
            })]),
        );
    } else if r.mode == "queue" {
        h.push_str(&crate::queue_report::section(r));
    } else {
        let s_to_ms = |v: Option<f64>| v.map(|v| v * 1000.0);
        h.push_str(
            &Chart::new("Match wait of tickets matched in each interval", Unit::Millis)
                .phases(ph, None)
                .threshold(
                    "match wait p95 SLO",
                    slo(r, "match_wait_p95_s").map(|v| v * 1000.0),
                )
                .render(&[
                    series("p50", PALETTE[0], false, tl, |s| s_to_ms(s.match_wait_p50_s)),
                    series("p95", PALETTE[1], false, tl, |s| s_to_ms(s.match_wait_p95_s)),
                ]),
        );
        h.push_str(
            &Chart::new("Matches formed per second", Unit::Plain("per second"))
                .phases(ph, None)
                .render(&[series("matches/s", PALETTE[2], false, tl, |s| s.matches_per_s)]),
        );
    }
    h
}

/// One tab per region: players against the target, and (live) logins,
/// latency and errors; (model) the matchmaking pool. Pure CSS tabs (radio
/// buttons), so the report stays script-free.
pub(crate) fn regions(r: &Results) -> String {
    if r.regions.is_empty() || r.mode == "queue" {
        return String::new();
    }
    let tl = &r.timeline;
    let live = r.mode == "live";
    let mut h = String::from("<h2 id=\"regions\">Per region</h2><div class=\"tabs\">");
    let mut css = String::new();
    for (i, name) in r.regions.iter().enumerate() {
        let _ = write!(
            h,
            "<input type=\"radio\" name=\"region-tab\" id=\"rt{i}\"{}><label for=\"rt{i}\">{}</label>",
            if i == 0 { " checked" } else { "" },
            esc(name)
        );
        let _ = write!(
            css,
            "#rt{i}:checked~#rp{i}{{display:block}}#rt{i}:checked+label{{background:#fff;font-weight:600;border-bottom-color:#fff}}"
        );
    }
    for (i, name) in r.regions.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        let reg = |f: fn(&crate::results::RegionSample) -> Option<f64>| {
            move |s: &crate::results::Sample| s.regions.get(i).and_then(f)
        };
        let _ = write!(
            h,
            "<div class=\"panel\" id=\"rp{i}\" data-region=\"{}\">",
            esc(name)
        );
        let ph = Some(name.as_str());
        h.push_str(
            &Chart::new(
                &format!("{name}: players (solid) and target (dashed)"),
                Unit::Plain("players"),
            )
            .phases(&r.phases, ph)
            .render(&[
                series("actual", c, false, tl, reg(|x| Some(x.players as f64))),
                series("target", TARGET, true, tl, reg(|x| Some(x.target as f64))),
            ]),
        );
        if live {
            h.push_str(
                &Chart::new(&format!("{name}: logins per second"), Unit::Plain("per second"))
                    .phases(&r.phases, ph)
                    .render(&[series("logins/s", c, false, tl, reg(|x| x.logins_per_s))]),
            );
            h.push_str(
                &Chart::new(&format!("{name}: request latency"), Unit::Millis)
                    .phases(&r.phases, ph)
                    .threshold("request p99 SLO", slo(r, "request_p99_ms"))
                    .render(&[
                        series("p50", c, false, tl, reg(|x| x.p50_ms)),
                        series("p99", PALETTE[1], false, tl, reg(|x| x.p99_ms)),
                    ]),
            );
            h.push_str(
                &Chart::new(&format!("{name}: errors per second"), Unit::Plain("per second"))
                    .phases(&r.phases, ph)
                    .render(&[series("errors/s", PALETTE[1], false, tl, reg(|x| x.errors_per_s))]),
            );
        } else {
            h.push_str(
                &Chart::new(&format!("{name}: matchmaking pool depth"), Unit::Plain("tickets"))
                    .phases(&r.phases, ph)
                    .render(&[series(
                        "tickets waiting",
                        c,
                        false,
                        tl,
                        reg(|x| Some(x.waiting as f64)),
                    )]),
            );
        }
        h.push_str("</div>");
    }
    let _ = write!(h, "</div><style>{css}</style>");
    h
}

/// Live mode: the gateway's CPU and resident memory over time.
pub(crate) fn gateway(r: &Results) -> String {
    if r.mode != "live" {
        return String::new();
    }
    let mut h = String::from("<h2 id=\"gateway\">Gateway CPU and memory</h2>");
    let Some(src) = &r.gateway_source else {
        h.push_str("<p class=\"empty\">not measured: the sim sees the gateway with --local, --gateway-pid or --gateway-metrics</p>");
        return h;
    };
    let tl = &r.timeline;
    let _ = write!(
        h,
        "<p class=\"meta\">from {}; RSS of {}</p>",
        esc(&src.how),
        esc(&src.rss_scope)
    );
    let cpu = series("CPU", PALETTE[4], false, tl, |s| {
        s.gateway.as_ref().and_then(|g| g.cpu_cores)
    });
    // The load generator beside it: on one shared box both fight for the cores.
    let sim_cpu = series("the sim's CPU", PALETTE[6], true, tl, |s| {
        s.sim.as_ref().and_then(|m| m.cpu_cores)
    });
    let rss = series("RSS", PALETTE[5], false, tl, |s| {
        s.gateway.as_ref().and_then(|g| g.rss_bytes).map(|b| b as f64)
    });
    let peak = |s: &crate::report_chart::Series| {
        s.points
            .iter()
            .filter_map(|p| p.1)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    let cost = crate::cost::GatewayCost::of(tl);
    let cards = [
        ("peak CPU", peak(&cpu).map(|v| format!("{} cores", fmt_num(v)))),
        ("peak RSS", peak(&rss).map(|v| fmt_value(Unit::Bytes, v))),
        (
            "CPU-ms per player-minute (run)",
            cost.map(|c| format!("{:.2}", c.run.cpu_ms_per_player_minute())),
        ),
        (
            "CPU-ms per player-minute (at the peak population)",
            cost.and_then(|c| c.steady)
                .map(|s| format!("{:.2}", s.cpu_ms_per_player_minute())),
        ),
        (
            "RSS per player at the peak",
            cost.and_then(|c| c.rss_kib_per_player())
                .map(|k| format!("{k:.1} KiB")),
        ),
    ];
    h.push_str("<div class=\"cards\">");
    for (k, v) in cards {
        let _ = write!(
            h,
            "<div><b>{}</b><span>{k}</span></div>",
            v.unwrap_or_else(|| "–".into())
        );
    }
    h.push_str("</div>");
    h.push_str(
        &Chart::new(
            "Gateway CPU, and the sim's (1 = one core busy)",
            Unit::Plain("cores"),
        )
        .phases(&r.phases, None)
        .render(&[cpu, sim_cpu]),
    );
    h.push_str(&sim_lateness(r));
    h.push_str(
        &Chart::new("Gateway resident memory (RSS)", Unit::Bytes)
            .phases(&r.phases, None)
            .render(&[rss]),
    );
    h
}

/// Live mode: how late the sim's own timers ran (`crate::self_probe`): when
/// they ran late, recorded latencies include the sim's own delay.
fn sim_lateness(r: &Results) -> String {
    let tl = &r.timeline;
    if !tl
        .iter()
        .any(|s| s.sim.as_ref().is_some_and(|m| m.lag_max_ms.is_some()))
    {
        return String::new();
    }
    let worst = series("worst", PALETTE[3], false, tl, |s| {
        s.sim.as_ref().and_then(|m| m.lag_max_ms)
    });
    let p99 = series("p99", PALETTE[6], true, tl, |s| {
        s.sim.as_ref().and_then(|m| m.lag_p99_ms)
    });
    Chart::new(
        "How late the sim's own timers fired (its delay is in the latencies it records)",
        Unit::Millis,
    )
    .phases(&r.phases, None)
    .render(&[worst, p99])
}

/// Model mode: peak concurrency, tail waits and the worst tickets.
pub(crate) fn model_tail(r: &Results) -> String {
    let Some(tail) = &r.model_tail else {
        return String::new();
    };
    let mut h = String::from("<h2 id=\"tail\">Peak and tail waits</h2>");
    let wait = r.operations.get("match_wait");
    let cards = [
        (
            "peak concurrent players".to_owned(),
            format!(
                "{} at {}",
                fmt_num(tail.peak_players as f64),
                fmt_ms(tail.peak_at_s * 1000.0)
            ),
        ),
        (
            "match wait p99".into(),
            wait.map_or("–".into(), |w| fmt_ms(w.p99)),
        ),
        (
            "match wait p99.9".into(),
            wait.map_or("–".into(), |w| fmt_ms(w.p999)),
        ),
        (
            "worst match wait".into(),
            wait.map_or("–".into(), |w| fmt_ms(w.max)),
        ),
    ];
    h.push_str("<div class=\"cards\">");
    for (k, v) in cards {
        let _ = write!(h, "<div><b>{v}</b><span>{k}</span></div>");
    }
    h.push_str("</div>");
    if let (Some(w), Some(limit)) = (wait, slo(r, "match_wait_p95_s")) {
        if w.max > limit * 1000.0 {
            let _ = write!(
                h,
                "<p class=\"warn\">The worst ticket waited {}, {}× the p95 objective ({}).</p>",
                fmt_ms(w.max),
                fmt_num(w.max / (limit * 1000.0)),
                fmt_ms(limit * 1000.0)
            );
        }
    }
    if tail.worst_tickets.is_empty() {
        h.push_str("<p class=\"empty\">no tickets matched</p>");
        return h;
    }
    h.push_str("<h3>Worst tickets</h3><table class=\"worst\"><tr><th>wait</th><th>matched at</th><th>home region</th><th>played in</th><th class=\"n\">rating</th><th class=\"n\">expansion step</th><th class=\"n\">match skill spread</th></tr>");
    for t in &tail.worst_tickets {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            fmt_ms(t.wait_s * 1000.0),
            fmt_ms(t.matched_at_s * 1000.0),
            esc(&t.home_region),
            esc(&t.match_region),
            if t.match_region != t.home_region { " (cross-region)" } else { "" },
            fmt_num(t.rating),
            t.expansion,
            fmt_num(t.match_skill_spread)
        );
    }
    h.push_str("</table>");
    h
}

/// Latency tables: requests in one, waits in another, each in one unit.
pub(crate) fn operations(r: &Results) -> String {
    let mut h = String::from("<h2 id=\"latency\">Latency by operation</h2>");
    if r.operations.is_empty() {
        h.push_str("<p class=\"empty\">no operations recorded</p>");
        return h;
    }
    let (waits, requests): (Vec<_>, Vec<_>) = r
        .operations
        .iter()
        .partition(|(name, _)| name.ends_with("_wait") || name.starts_with("queue_"));
    for (title, rows) in [("Requests", requests), ("Waits", waits)] {
        if rows.is_empty() {
            continue;
        }
        h.push_str(&table(title, &rows));
    }
    h
}

fn table(title: &str, rows: &[(&String, &HistSummary)]) -> String {
    // One unit for the whole table, from its largest p99.
    let max_p99 = rows.iter().map(|(_, o)| o.p99).fold(0.0, f64::max);
    let (k, unit) = crate::report_chart::millis_scale(max_p99);
    let mut h = String::new();
    let _ = write!(
        h,
        "<h3>{title}</h3><table class=\"ops\"><tr><th>operation</th><th class=\"n\">count</th><th class=\"n\">p50 ({unit})</th><th class=\"n\">p90 ({unit})</th><th class=\"n\">p95 ({unit})</th><th class=\"n\">p99 ({unit})</th><th class=\"n\">p99.9 ({unit})</th><th class=\"n\">max ({unit})</th><th class=\"w\">p99</th></tr>"
    );
    for (name, o) in rows {
        let cell = |v: f64| format!("<td class=\"n\">{}</td>", fmt_num(v / k));
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
    h
}

/// Model mode with `--store`: what the store-backed pool did.
pub(crate) fn model_store(r: &Results) -> String {
    let Some(s) = &r.model_store else {
        return String::new();
    };
    let mut h = String::from("<h2 id=\"store\">Store-backed pool</h2><div class=\"cards\">");
    let cards = [
        (
            format!("{} × {}", s.partitions, s.workers),
            "partitions per region × workers",
        ),
        (fmt_num(s.matches_committed as f64), "matches committed"),
        (fmt_num(s.matches_per_s), "matches committed per second of rounds"),
        (
            format!("{:.1}%", s.store_share_of_wait * 100.0),
            "store's share of the match wait",
        ),
        (
            fmt_num(s.rounds_skipped_store_busy as f64),
            "rounds skipped: store busy",
        ),
        (fmt_ms(s.last_commit_s * 1000.0), "last commit (virtual)"),
    ];
    for (v, k) in cards {
        let _ = write!(h, "<div><b>{v}</b><span>{k}</span></div>");
    }
    h.push_str("</div>");
    let bad = s.commit_count_mismatches + s.expiry_mismatches + s.unknown_tickets + s.audited_not_matched;
    if bad > 0 || s.store_match_records != s.matches_committed {
        let _ = write!(
            h,
            "<p class=\"warn\">Store audit failed: {} match records for {} matches committed, {} mismatches (see the notes).</p>",
            s.store_match_records, s.matches_committed, bad
        );
    }
    h
}

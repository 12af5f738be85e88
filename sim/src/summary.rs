//! The console summary printed after a run: a header, the mode's totals
//! (live, login queue or model), the operations' latencies and the SLOs.
//! Every error figure is the accounting's, as in the progress line,
//! `result.json` and the report.

use outpost_sim::accounting::ranked;
use outpost_sim::cost::GatewayCost;
use outpost_sim::results::{QueueSummary, Results};
use outpost_sim::units::{fmt_count, fmt_ms, fmt_s};

/// Prints the whole summary of one run.
pub fn print_summary(r: &Results) {
    println!(
        "{} ({} mode): {} simulated in {}",
        r.scenario,
        r.mode,
        fmt_s(r.sim_s),
        fmt_s(r.wall_s)
    );
    if r.mode == "live" {
        print_live_totals(r);
    } else if let Some(q) = &r.login_queue {
        print_queue_totals(q);
    } else {
        print_model_totals(r);
    }
    print_operations(r);
    print_slos(r);
}

/// Players, logins and requests, then every error and expected outcome by
/// operation and code, most frequent first.
fn print_live_totals(r: &Results) {
    let t = &r.totals;
    println!(
        "peak concurrent players {} · players started {} · logins {} ok / {} failed · gave up {} · reconnects {} · requests {}",
        fmt_count(r.peak_players()),
        fmt_count(t.players_started),
        fmt_count(t.logins_ok),
        fmt_count(t.login_failures),
        fmt_count(t.players_gave_up),
        fmt_count(t.reconnects),
        fmt_count(t.requests),
    );
    if t.inventory_ops > 0 {
        println!(
            "inventory operations {} · purchases declined {} · replays verified {}",
            t.inventory_ops, t.purchases_declined, t.replays_verified
        );
    }
    let rate = r
        .error_rate()
        .map_or("-".into(), |e| format!("{:.3}%", e * 100.0));
    println!(
        "attempts {} · errors {} ({rate}) · expected outcomes {}",
        fmt_count(t.attempts),
        fmt_count(t.errors),
        fmt_count(t.outcomes)
    );
    if let Some(c) = GatewayCost::of(&r.timeline) {
        print_cost(&c);
    }
    for (op, code, n) in ranked(&r.accounting, false) {
        println!("  error   {op:<20} {code:<32} {n}");
    }
    for (op, code, n) in ranked(&r.accounting, true) {
        println!("  outcome {op:<20} {code:<32} {n}");
    }
}

/// The gateway's cost per concurrent player (issue 21's cost-per-CCU figure).
fn print_cost(c: &GatewayCost) {
    let steady = c.steady.map_or("no steady part".into(), |s| {
        format!(
            "{:.2} at the peak population ({:.0} s)",
            s.cpu_ms_per_player_minute(),
            s.span_s
        )
    });
    let rss = c
        .rss_kib_per_player()
        .map_or("-".into(), |k| format!("{k:.1} KiB"));
    println!(
        "gateway cost per player: {:.2} CPU-ms per player-minute over the run ({:.1} CPU-s, {} player-minutes), {steady} · RSS {rss} per player at the peak ({})",
        c.run.cpu_ms_per_player_minute(),
        c.run.cpu_s,
        fmt_count(c.run.player_minutes.round() as u64),
        fmt_count(c.peak_players),
    );
}

/// The login queue's arrivals, admissions and the invariants it must keep.
fn print_queue_totals(q: &QueueSummary) {
    println!(
        "arrivals {} · direct {} · queued {} · admitted from queue {} · peak queue {} · drops {} (kept {}) · gave up {}",
        q.arrivals, q.direct, q.queued, q.admitted_from_queue, q.peak_length, q.drops, q.places_kept, q.gave_up
    );
    println!(
        "FIFO violations {} · lost places {} · most admissions in 1 s {} (budget {}/s)",
        q.fifo_violations + q.position_increases,
        q.lost_places,
        q.max_admissions_per_window,
        q.budget_admissions_per_sec
    );
}

/// Players, tickets and matches, and the single worst wait.
fn print_model_totals(r: &Results) {
    let t = &r.totals;
    println!(
        "peak concurrent players {} · arrivals {} · tickets {} · matches {}",
        fmt_count(r.peak_players()),
        fmt_count(t.players_started),
        fmt_count(t.tickets),
        fmt_count(t.matches)
    );
    if let Some(w) = r.model_tail.as_ref().and_then(|m| m.worst_tickets.first()) {
        println!(
            "  worst wait {}: a {} player (rating {:.0}) matched in {} at {}",
            fmt_ms(w.wait_s * 1000.0),
            w.home_region,
            w.rating,
            w.match_region,
            fmt_ms(w.matched_at_s * 1000.0)
        );
    }
}

/// One latency line per operation, and a warning for a far match-wait tail.
fn print_operations(r: &Results) {
    for (name, o) in &r.operations {
        println!(
            "  {name:<18} n={:<9} p50 {:<10} p95 {:<10} p99 {:<10} p99.9 {:<10} max {}",
            o.count,
            fmt_ms(o.p50),
            fmt_ms(o.p95),
            fmt_ms(o.p99),
            fmt_ms(o.p999),
            fmt_ms(o.max)
        );
    }
    if let Some(w) = r.operations.get("match_wait") {
        // A tail far beyond the p95 is what players remember: say it.
        if w.max > 4.0 * w.p95.max(1.0) && w.max >= 60_000.0 {
            println!(
                "  ! worst match wait {} (p95 {}): see the report's tail waits",
                fmt_ms(w.max),
                fmt_ms(w.p95)
            );
        }
    }
}

/// One line per SLO: its limit, what was measured and the verdict.
fn print_slos(r: &Results) {
    for s in &r.slo {
        let measured = match s.actual {
            Some(v) => format!("{v:.3}"),
            None if s.measured && !s.note.is_empty() => format!("- ({})", s.note),
            None => "-".into(),
        };
        println!(
            "  SLO {:<22} limit {:<10} measured {:<12} {}",
            s.name,
            s.limit,
            measured,
            s.status().label()
        );
    }
}

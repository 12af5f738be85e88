//! The queue-mode part of the HTML report: queue length, admissions/s
//! against the budget, waits and ETA error over time.

use crate::report::{fmt_num, series, Chart, Unit, PALETTE};
use crate::results::{QueueSummary, Results};

/// Summary cards.
pub(crate) fn cards(q: &QueueSummary) -> Vec<(&'static str, String)> {
    let n = |v: u64| fmt_num(v as f64);
    vec![
        ("players arrived", n(q.arrivals)),
        ("admitted directly", n(q.direct)),
        ("queued", n(q.queued)),
        ("admitted from the queue", n(q.admitted_from_queue)),
        ("peak queue length", n(q.peak_length)),
        (
            "drops (places kept)",
            format!("{} ({})", n(q.drops), n(q.places_kept)),
        ),
        ("expired while away", n(q.expired_while_away)),
        ("gave up", n(q.gave_up)),
        ("places abandoned (expired)", n(q.abandoned)),
        ("FIFO violations", n(q.fifo_violations + q.position_increases)),
        ("lost places", n(q.lost_places)),
        (
            "most admissions in 1 s (budget)",
            format!(
                "{} ({})",
                n(q.max_admissions_per_window),
                n(q.budget_admissions_per_sec.into())
            ),
        ),
    ]
}

/// The charts over time.
pub(crate) fn section(r: &Results) -> String {
    let tl = &r.timeline;
    let budget = r
        .login_queue
        .as_ref()
        .map(|q| f64::from(q.budget_admissions_per_sec));
    let q = |f: fn(&crate::results::QueueSample) -> Option<f64>| {
        move |s: &crate::results::Sample| s.queue.as_ref().and_then(f)
    };
    let eta_slo = r
        .slo
        .iter()
        .find(|s| s.name == "queue_eta_error_p95_s")
        .map(|s| s.limit);
    let chart = |title: &'static str, unit: &'static str| {
        Chart::new(title, Unit::Plain(unit)).phases(&r.phases, None)
    };
    let mut h = String::new();
    h.push_str(&chart("Queue length and slots in use", "players").render(&[
        series(
            "queue length",
            PALETTE[0],
            false,
            tl,
            q(|x| Some(x.length as f64)),
        ),
        series(
            "slots in use",
            PALETTE[2],
            false,
            tl,
            q(|x| Some(x.slots_used as f64)),
        ),
    ]));
    h.push_str(
        &chart("Admissions per second (dashed: the budget)", "per second").render(&[
            series(
                "admissions/s",
                PALETTE[0],
                false,
                tl,
                q(|x| Some(x.admissions_per_s)),
            ),
            series("budget", PALETTE[1], true, tl, move |_| budget),
        ]),
    );
    h.push_str(
        &chart("Wait of players admitted in each interval", "seconds").render(&[
            series("p50", PALETTE[0], false, tl, q(|x| x.wait_p50_s)),
            series("p95", PALETTE[1], false, tl, q(|x| x.wait_p95_s)),
        ]),
    );
    h.push_str(
        &chart(
            "ETA error of players admitted in each interval (|first ETA − wait|)",
            "seconds",
        )
        .threshold("ETA error p95 SLO", eta_slo)
        .render(&[
            series("p50", PALETTE[0], false, tl, q(|x| x.eta_error_p50_s)),
            series("p95", PALETTE[1], false, tl, q(|x| x.eta_error_p95_s)),
        ]),
    );
    h
}

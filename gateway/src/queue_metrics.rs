//! The login queue's `/metrics`: every name, its `# HELP` text and where it is
//! recorded, in one place.
//!
//! *Region* figures are read from the store with the queue view, once per
//! update interval, by every gateway with the queue on: each gateway exports
//! the same value, so aggregate them with `max`, not `sum`. *Gateway* figures
//! count what this gateway did.
//!
//! | name | type | scope | meaning |
//! |---|---|---|---|
//! | `outpost_queue_length` | gauge | region | places waiting |
//! | `outpost_queue_slots_used` | gauge | region | slots in use (sessions, untaken admissions, reservations) |
//! | `outpost_queue_paused` | gauge | region | 1 while the operator paused admission |
//! | `outpost_queue_region_admissions_total` | counter | region | admissions (queue and direct); `rate()` is admissions/s |
//! | `outpost_queue_admissions_per_sec` | gauge | region | the admission rate the ETA uses (over `eta_window_secs`) |
//! | `outpost_queue_region_abandoned_total` | counter | region | places that expired: holder never came back |
//! | `outpost_queue_admissions_total` | counter | gateway | places this gateway's admission ticks admitted |
//! | `outpost_queue_enqueued_total` | counter | gateway | logins this gateway queued (a reconnect counts again) |
//! | `outpost_queue_detached_total` | counter | gateway | queued connections lost (place kept for the grace) |
//! | `outpost_queue_wait_ms` | summary | gateway | wait of connections admitted from the queue, ms |
//! | `outpost_queue_eta_error_ms` | summary | gateway | \|first ETA − actual wait\| of those, ms |

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use outpost_backend::queue::QueueView;

/// Registers the `# HELP` texts (once the recorder is installed).
pub(crate) fn describe() {
    describe_gauge!(
        "outpost_queue_length",
        "Places waiting in the region's login queue."
    );
    describe_gauge!(
        "outpost_queue_slots_used",
        "Region slots in use: live sessions, admitted places not yet taken, re-entry reservations."
    );
    describe_gauge!(
        "outpost_queue_paused",
        "1 while region admission is paused by an operator."
    );
    describe_counter!(
        "outpost_queue_region_admissions_total",
        "Region admissions so far (queue and direct); rate() is admissions per second. Same value at every gateway."
    );
    describe_gauge!(
        "outpost_queue_admissions_per_sec",
        "Region admission rate the ETA is computed from (measured over queue.eta_window_secs)."
    );
    describe_counter!(
        "outpost_queue_region_abandoned_total",
        "Region places that expired because their holder did not come back within the place grace."
    );
    describe_counter!(
        "outpost_queue_admissions_total",
        "Places admitted by this gateway's admission ticks."
    );
    describe_counter!(
        "outpost_queue_enqueued_total",
        "Logins this gateway put in the queue."
    );
    describe_counter!(
        "outpost_queue_detached_total",
        "Queued connections this gateway lost (their places survive the place grace)."
    );
    describe_histogram!(
        "outpost_queue_wait_ms",
        Unit::Milliseconds,
        "Wait of connections admitted from the queue, from getting the place on this connection to admission."
    );
    describe_histogram!(
        "outpost_queue_eta_error_ms",
        Unit::Milliseconds,
        "ETA error at admission: |ETA of the first Queued - actual wait|."
    );
}

/// A fresh view of the queue (the region figures) and the measured rate.
pub(crate) fn view(view: &QueueView, rate_per_sec: Option<f64>) {
    gauge!("outpost_queue_length").set(view.len() as f64);
    gauge!("outpost_queue_slots_used").set(view.used as f64);
    gauge!("outpost_queue_paused").set(if view.budget.paused { 1.0 } else { 0.0 });
    counter!("outpost_queue_region_admissions_total").absolute(view.admissions_total);
    counter!("outpost_queue_region_abandoned_total").absolute(view.abandoned_total);
    gauge!("outpost_queue_admissions_per_sec").set(rate_per_sec.unwrap_or(0.0));
}

/// This gateway's admission tick admitted `n` places.
pub(crate) fn tick_admitted(n: usize) {
    counter!("outpost_queue_admissions_total").increment(n as u64);
}

/// A login was queued.
pub(crate) fn enqueued() {
    counter!("outpost_queue_enqueued_total").increment(1);
}

/// A queued connection was lost.
pub(crate) fn detached() {
    counter!("outpost_queue_detached_total").increment(1);
}

/// A queued connection was admitted after `waited_ms`; `promised_ms` is the
/// ETA its first `Queued` gave (none while paused: no ETA error then).
pub(crate) fn admitted_from_queue(waited_ms: u64, promised_ms: Option<u64>) {
    histogram!("outpost_queue_wait_ms").record(waited_ms as f64);
    if let Some(p) = promised_ms {
        histogram!("outpost_queue_eta_error_ms").record(waited_ms.abs_diff(p) as f64);
    }
}

#[cfg(test)]
mod tests {
    use outpost_backend::queue::{Budget, QueueView};

    #[test]
    fn every_queue_metric_is_exposed_with_help() {
        crate::metrics::install();
        super::describe();
        let view = QueueView {
            stamps: Vec::new(),
            admissions_total: 42,
            abandoned_total: 3,
            used: 7,
            budget: Budget::unlimited(),
        };
        super::view(&view, Some(12.5));
        super::tick_admitted(2);
        super::enqueued();
        super::detached();
        super::admitted_from_queue(9_000, Some(10_000));
        let text = crate::metrics::render();
        for name in [
            "outpost_queue_length",
            "outpost_queue_slots_used",
            "outpost_queue_paused",
            "outpost_queue_region_admissions_total",
            "outpost_queue_admissions_per_sec",
            "outpost_queue_region_abandoned_total",
            "outpost_queue_admissions_total",
            "outpost_queue_enqueued_total",
            "outpost_queue_detached_total",
            "outpost_queue_wait_ms",
            "outpost_queue_eta_error_ms",
        ] {
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "no HELP for {name}:\n{text}"
            );
        }
        assert!(
            text.contains("outpost_queue_region_admissions_total 42"),
            "{text}"
        );
        assert!(text.contains("outpost_queue_eta_error_ms_count 1"), "{text}");
        assert!(text.contains("outpost_queue_eta_error_ms_sum 1000"), "{text}");
    }
}

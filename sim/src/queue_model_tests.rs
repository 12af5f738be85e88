//! Queue mode on the launch-queue preset, small and short.

use super::*;

/// The launch-queue preset at a tenth of its size, its first five virtual
/// minutes (arrivals ten times the budget): the queue's promises hold.
#[test]
fn launch_queue_preset_keeps_fifo_and_every_place() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/launch-queue.toml");
    let scenario = Scenario::from_file(path).expect("preset");
    let opts = RunOptions {
        scale: 0.1,
        max_duration: Some(Duration::from_secs(300)),
        ..RunOptions::default()
    };
    let r = run(&scenario, &opts).expect("run");
    let q = r.login_queue.clone().expect("queue summary");
    assert!(q.queued > 500, "the launch queued most arrivals: {q:?}");
    assert!(q.admitted_from_queue > 100, "{q:?}");
    assert!(
        q.drops > 0 && q.places_kept > 0,
        "drops and reconnects happened: {q:?}"
    );
    assert_eq!(
        (q.fifo_violations, q.position_increases, q.lost_places),
        (0, 0, 0),
        "{q:?}"
    );
    assert!(
        q.max_admissions_per_window <= u64::from(q.budget_admissions_per_sec),
        "budget overshot: {q:?}"
    );
    let peak = r
        .timeline
        .iter()
        .filter_map(|s| s.queue.as_ref())
        .map(|s| s.length)
        .max();
    assert!(peak.unwrap_or(0) > 100, "a queue formed");
    for s in &r.slo {
        eprintln!("SLO {}: {:?} (limit {})", s.name, s.actual, s.limit);
        assert!(s.ok, "SLO {} missed: {:?} > {}", s.name, s.actual, s.limit);
    }
    let names: Vec<&str> = r.slo.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "queue_fifo_violations",
            "queue_lost_places",
            "queue_eta_error_p95_s"
        ]
    );
    let html = crate::report::render(&r);
    assert!(html.contains("Queue length"), "the report shows the queue");
}

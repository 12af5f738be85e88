//! Model mode at small scale: the backend's matchmaker core on virtual time.

use std::path::Path;

use outpost_sim::results::Results;
use outpost_sim::scenario::Scenario;
use outpost_sim::RunOptions;

fn preset(name: &str) -> Scenario {
    Scenario::from_file(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name)).unwrap()
}

#[test]
fn smoke_scenario_in_model_mode_forms_matches() {
    let scenario = preset("smoke.toml");
    let opts = RunOptions {
        scale: 20.0, // 600 players at the peak
        ..RunOptions::default()
    };
    let r = outpost_sim::model::run(&scenario, &opts).unwrap();
    let t = &r.totals;
    assert!(t.players_started >= 600, "{t:?}");
    assert!(t.tickets > 600, "players queue, play and queue again: {t:?}");
    assert!(t.matches * 4 <= t.tickets, "a match takes 4 tickets: {t:?}");
    assert!(t.matches > 100, "{t:?}");
    assert!(t.storm_drops > 0, "{t:?}");
    let w = &r.operations["match_wait"];
    assert_eq!(w.count, t.matches * 4, "every matched ticket's wait is recorded");
    assert!(w.p50 <= w.p95 && w.p95 <= w.max, "{w:?}");
    assert!(
        w.p95 <= 6_000.0,
        "the window covers everyone after 4 s, fallback after 3 s: {w:?}"
    );
    // Wait percentiles over (virtual) time, and the curve followed exactly.
    assert!(r.timeline.iter().filter(|s| s.match_wait_p95_s.is_some()).count() >= 5);
    let peak = r.timeline.iter().map(|s| s.regions[0].players).max().unwrap();
    assert_eq!(peak, 400, "eu-west: 20 × scale 20");
    for s in &r.timeline {
        for x in &s.regions {
            assert_eq!(
                x.players, x.target,
                "model mode follows the curve exactly at t={}",
                s.t_s
            );
        }
    }
    assert!(r.slo.iter().any(|s| s.name == "match_wait_p95_s" && s.measured));
    // The live objectives are listed, as not measured in this mode, never dropped or missed.
    for name in ["login_p99_ms", "error_rate", "login_success_rate"] {
        let s = r.slo.iter().find(|s| s.name == name).unwrap();
        assert!(!s.measured && s.ok && s.actual.is_none(), "{s:?}");
        assert_eq!(s.status().label(), "not measured in this mode");
    }

    let dir = tempfile::tempdir().unwrap();
    let (json, html) = r.write(dir.path()).unwrap();
    assert_eq!(Results::read(&json).unwrap().totals, r.totals);
    assert!(std::fs::read_to_string(html).unwrap().contains("Match wait"));
}

#[test]
fn model_mode_scales_to_many_players_quickly() {
    // The mini launch preset at 100× (about 60,000 concurrent players), first 90 virtual seconds.
    let scenario = preset("mini-launch.toml");
    let opts = RunOptions {
        scale: 100.0,
        max_duration: Some(std::time::Duration::from_secs(90)),
        ..RunOptions::default()
    };
    let r = outpost_sim::model::run(&scenario, &opts).unwrap();
    assert!(r.totals.players_started >= 50_000, "{:?}", r.totals);
    assert!(r.totals.matches > 1_000, "{:?}", r.totals);
    assert!(r.operations["match_wait"].p95 > 0.0);
}

#[test]
fn rehearsal_knobs_change_what_the_model_runs() {
    // Ten times the forecast, and eu-west down from 5 s to 6 s with its players
    // moved to us-east.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/smoke.toml");
    let text = std::fs::read_to_string(path).unwrap()
        + "\n[rehearsal]\nsurprise = { factor = 10 }\nold_clients = { share = 0.5 }\n\
           outage = { region = \"eu-west\", to = \"us-east\", at_s = 5, duration_s = 1 }\n";
    let scenario = Scenario::parse(&text).unwrap();
    let r = outpost_sim::model::run(&scenario, &RunOptions::default()).unwrap();
    let at = |t: f64| r.timeline.iter().find(|s| (s.t_s - t).abs() < 1e-6).unwrap();
    let before = at(4.0);
    assert_eq!(before.regions[0].players, 200, "eu-west: 10 × 20");
    assert_eq!(
        before.regions[0].forecast,
        Some(20),
        "the forecast is kept for the report"
    );
    let during = at(5.5);
    assert_eq!(during.regions[0].players, 0, "eu-west is down");
    assert_eq!(
        during.regions[1].players, 300,
        "us-east: its 100 and eu-west's 200"
    );
    assert_eq!(during.regions[1].forecast, Some(10));
    assert_eq!(r.peak_players(), 300);
    assert!(r.totals.outage_drops > 0, "{:?}", r.totals);
}

//! Live mode end to end: `smoke.toml` against a real gateway started in this
//! process on loopback, through the real SDK over QUIC. Checks the JSON
//! result's counts against what the scenario asked for.

use std::path::Path;

use outpost_sim::live::LiveTarget;
use outpost_sim::local::LocalGateway;
use outpost_sim::results::Results;
use outpost_sim::scenario::Scenario;
use outpost_sim::RunOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_scenario_against_a_local_gateway() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/smoke.toml");
    let scenario = Scenario::from_file(&path).unwrap();
    let gw = LocalGateway::start(1_000, outpost_sim::local::local_pool(&scenario))
        .await
        .unwrap();
    assert!(gw.addr.ip().is_loopback());
    let target = LiveTarget {
        gateways: vec![vec![gw.addr]; scenario.regions.len()],
        ca_pem: gw.ca_pem.clone(),
        server_name: "localhost".into(),
    };
    let started = std::time::Instant::now();
    let results = outpost_sim::live::run(&scenario, target, &RunOptions::default())
        .await
        .unwrap();
    gw.stop().await;
    let elapsed = started.elapsed().as_secs_f64();
    assert!(elapsed < 30.0, "bounded run took {elapsed:.1} s");

    let t = &results.totals;
    // The curves ask for 20 + 10 concurrent players at their peak.
    let peak_target: u64 = scenario.curves(1.0).iter().map(|c| c.peak().round() as u64).sum();
    assert_eq!(peak_target, 30);
    assert!(t.players_started >= peak_target, "{t:?}");
    assert!(t.players_started <= scenario.live.max_players as u64 * 4, "{t:?}");
    assert!(t.logins_ok >= peak_target, "{t:?}");
    assert_eq!(t.players_gave_up, 0, "{t:?}; errors {:?}", results.errors);
    assert!(t.storm_drops > 0, "the storm knocked players off: {t:?}");
    assert!(
        t.logins_ok >= t.players_logged_in + t.storm_drops,
        "storm victims logged in again: {t:?}"
    );
    assert_eq!(
        t.skipped_actions, 0,
        "the gateway serves matchmaking: nothing is skipped"
    );
    assert!(t.requests > 100, "{t:?}");
    assert!(
        t.request_errors * 50 < t.requests,
        "request errors {:?}",
        results.errors
    );
    for op in ["login", "ping", "echo", "state_load", "state_save", "match_wait"] {
        let o = &results.operations[op];
        assert!(o.count > 0 && o.p50 > 0.0 && o.p99 >= o.p50, "{op}: {o:?}");
        assert_eq!(
            o.decode().unwrap().len(),
            o.count,
            "{op}: HDR encoding round-trips"
        );
    }
    // The timeline follows the curve: at some sample every region reached (nearly) its target.
    let tl = &results.timeline;
    assert!(tl.len() >= 10, "samples: {}", tl.len());
    for (r, want) in [(0usize, 20u64), (1, 10)] {
        let best = tl.iter().map(|s| s.regions[r].players).max().unwrap();
        assert!(
            best + 2 >= want && best <= want + 1,
            "region {r}: max {best} players, curve {want}"
        );
        assert!(tl.iter().any(|s| s.regions[r].target == want));
    }
    assert!(tl
        .iter()
        .all(|s| s.regions.iter().map(|x| x.players).sum::<u64>() <= scenario.live.max_players as u64));
    assert!(results.slo.iter().any(|s| s.name == "login_p99_ms"));
    assert!(results.slo_ok(), "{:?}", results.slo);

    let dir = tempfile::tempdir().unwrap();
    let (json, html) = results.write(dir.path()).unwrap();
    let back = Results::read(&json).unwrap();
    assert_eq!(back.totals, results.totals);
    assert_eq!(back.operations.len(), results.operations.len());
    let page = std::fs::read_to_string(html).unwrap();
    assert!(page.starts_with("<!doctype html>") && page.ends_with("</html>"));
    assert!(page.matches("<svg").count() >= 4, "charts are drawn");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "nothing is fetched from the network"
    );
}

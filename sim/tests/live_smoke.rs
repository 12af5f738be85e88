//! Live mode end to end: `smoke.toml` against a real gateway started in this
//! process on loopback, through the real SDK over QUIC. Checks the JSON
//! result's counts against what the scenario asked for: players per region
//! against the curves, and the action mix (inventory operations and their
//! kinds) against the behaviour and inventory weights.

use std::path::Path;

use outpost_sim::inventory::InvKind;
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

    // The sim's own health at every sample: its 10 ms timer woke (lateness
    // recorded, the worst no smaller than the 99th percentile) and its CPU
    // was read.
    assert!(!results.timeline.is_empty());
    for s in &results.timeline {
        let own = s.sim.as_ref().expect("the sim's own figures in every sample");
        let (p99, max) = (
            own.lag_p99_ms.expect("lateness"),
            own.lag_max_ms.expect("lateness"),
        );
        assert!(p99 > 0.0 && max >= p99 && max < 10_000.0, "{own:?}");
        assert!(own.cpu_cores.is_some_and(|c| (0.0..64.0).contains(&c)), "{own:?}");
    }

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
    let asked: Vec<&str> = ["login", "ping", "echo", "state_load", "state_save", "match_wait"]
        .into_iter()
        .chain(
            InvKind::ALL
                .iter()
                .zip(scenario.inventory.weights())
                .filter(|(_, w)| *w > 0.0)
                .map(|(k, _)| k.op().name()),
        )
        .collect();
    assert_eq!(
        asked.len(),
        11,
        "the smoke scenario asks for every inventory kind"
    );
    for op in asked {
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
    // Every objective the scenario sets is evaluated in live mode, match waits included.
    assert_eq!(results.slo.len(), 4, "{:?}", results.slo);
    assert!(results.slo.iter().all(|s| s.measured), "{:?}", results.slo);
    assert!(results.slo_ok(), "{:?}", results.slo);

    let dir = tempfile::tempdir().unwrap();
    let (json, html) = results.write(dir.path()).unwrap();
    let back = Results::read(&json).unwrap();
    assert_eq!(back.totals, results.totals);
    assert_eq!(back.operations.len(), results.operations.len());
    check_action_mix(&scenario, &back);
    let page = std::fs::read_to_string(html).unwrap();
    assert!(page.starts_with("<!doctype html>") && page.ends_with("</html>"));
    assert!(page.matches("<svg").count() >= 4, "charts are drawn");
    for k in InvKind::ALL {
        assert!(page.contains(k.op().name()), "{} in the report", k.op().name());
    }
    assert!(page.contains("replays verified"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "nothing is fetched from the network"
    );
}

/// Attempts of `op` in a result (successes, errors and expected outcomes),
/// checked against its histogram and error views.
fn attempts(r: &Results, op: &str) -> u64 {
    let Some(a) = r.accounting.get(op) else {
        return 0;
    };
    assert_eq!(
        a.ok,
        r.operations.get(op).map_or(0, |o| o.count),
        "{op}: successes are the histogram"
    );
    let errors: u64 = r.errors_by_op.get(op).map_or(0, |m| m.values().sum());
    assert_eq!(a.error_count(), errors, "{op}: errors_by_op is the accounting's");
    assert_eq!(a.attempts, a.ok + a.error_count() + a.outcome_count(), "{op}");
    a.attempts
}

/// `n` of `total` draws with probability `p`: within 4.5 standard deviations
/// (plus one for rounding) of the expectation.
fn assert_binomial(what: &str, n: u64, total: u64, p: f64) {
    let mean = total as f64 * p;
    let sd = (total as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (n as f64 - mean).abs() <= 4.5 * sd + 1.0,
        "{what}: {n} of {total}, expected {mean:.0} ± {:.0} (p = {p:.3})",
        4.5 * sd
    );
}

/// The result's action counts against the scenario's weights: how many
/// inventory operations (behaviour.inventory among all actions) and of which
/// kinds ([inventory] weights), from the JSON written by the run.
fn check_action_mix(scenario: &Scenario, r: &Results) {
    let t = &r.totals;
    let b = &scenario.behaviour;
    // Every action a player took: requests (ping, echo, state, inventory) and match waits.
    let actions = t.requests + attempts(r, "match_wait");
    let w = b.weights();
    let share = b.inventory / w.iter().sum::<f64>();
    assert!(actions > 300, "enough actions to compare shares: {actions}");
    assert_binomial("inventory operations", t.inventory_ops, actions, share);

    // The kinds add up to the counter, and follow the [inventory] weights.
    let inv = &scenario.inventory;
    let per_kind: Vec<u64> = InvKind::ALL.iter().map(|k| attempts(r, k.op().name())).collect();
    assert_eq!(per_kind.iter().sum::<u64>(), t.inventory_ops, "{per_kind:?}");
    // A replay is drawn only once the session has a write; otherwise the draw is
    // repeated among the other kinds, so those keep their proportions exactly.
    let weights = inv.weights();
    let others: u64 = per_kind[..4].iter().sum();
    let others_w: f64 = weights[..4].iter().sum();
    for (i, k) in InvKind::ALL[..4].iter().enumerate() {
        assert_binomial(k.op().name(), per_kind[i], others, weights[i] / others_w);
    }
    let replay_max = t.inventory_ops as f64 * weights[4] / weights.iter().sum::<f64>();
    assert!(
        per_kind[4] > 0 && (per_kind[4] as f64) <= replay_max + 4.5 * replay_max.sqrt() + 1.0,
        "replays {} (at most about {replay_max:.0})",
        per_kind[4]
    );
    // Keyed writes are idempotent through the gateway: every replay came back
    // as the original receipt.
    assert_eq!(
        t.replays_verified,
        per_kind[4],
        "errors: {:?}",
        r.errors_by_op.get("inventory_replay")
    );
    assert!(!r.errors.contains_key("ReplayMismatch"));
    // A purchase before enough grants is declined (Conflict: not a failure);
    // the others went through on granted gems.
    let purchases = per_kind[3];
    assert!(
        t.purchases_declined < purchases,
        "declined {} of {purchases} purchases",
        t.purchases_declined
    );
    let inv_errors: u64 = InvKind::ALL
        .iter()
        .filter_map(|k| r.errors_by_op.get(k.op().name()))
        .flat_map(|m| m.values())
        .sum();
    assert!(
        inv_errors * 50 <= t.inventory_ops,
        "inventory errors {:?}",
        r.errors_by_op
    );
}

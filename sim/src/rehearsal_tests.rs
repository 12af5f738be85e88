//! Tests of `[rehearsal]`: each knob's effect on the curves.
use super::*;

const BASE: &str = r#"
name = "r"
[[regions]]
name = "eu-west"
neighbours = [{ name = "us-east", rtt_ms = { kind = "fixed", value = 80 } }]
curve = [{ kind = "ramp", to = 100, duration_s = 100 }, { kind = "hold", duration_s = 100 }]
[[regions]]
name = "us-east"
curve = [{ kind = "hold", level = 50, duration_s = 200 }]
[session]
length_s = { kind = "fixed", value = 60 }
think_ms = { kind = "fixed", value = 100 }
"#;

fn scenario(rehearsal: &str) -> Scenario {
    Scenario::parse(&format!("{BASE}[rehearsal]\n{rehearsal}\n")).unwrap()
}

fn err(rehearsal: &str) -> String {
    Scenario::parse(&format!("{BASE}[rehearsal]\n{rehearsal}\n"))
        .unwrap_err()
        .to_string()
}

#[test]
fn no_rehearsal_is_the_forecast() {
    let s = Scenario::parse(BASE).unwrap();
    assert_eq!(s.curves(2.0), s.forecast_curves(2.0));
    assert!(!s.rehearsal.changes_curves());
}

#[test]
fn surprise_multiplies_demand_from_its_start() {
    let s = scenario("surprise = { factor = 10, from_s = 50 }");
    let (c, f) = (s.curves(1.0), s.forecast_curves(1.0));
    assert_eq!(c[0].target_at(40.0), f[0].target_at(40.0));
    assert!((c[0].target_at(60.0) - 600.0).abs() < 1e-9);
    assert!((c[1].target_at(150.0) - 500.0).abs() < 1e-9);
    assert!((c[0].peak() - 1_000.0).abs() < 1e-3, "{}", c[0].peak());
    // --scale applies too.
    assert!((s.curves(0.1)[1].target_at(150.0) - 50.0).abs() < 1e-9);
}

#[test]
fn fill_reaches_the_capacity_within_its_window() {
    // 1,500 players, shared 100 : 50 by the forecast peaks, filled within 30 s from t = 10.
    let s = scenario("fill = { players = 1500, at_s = 10, within_s = 30 }");
    let c = s.curves(1.0);
    assert!((c[0].target_at(5.0) - 5.0).abs() < 1e-9, "before: the forecast");
    assert!((c[0].target_at(25.0) - 500.0).abs() < 1e-9, "half way");
    assert!((c[0].target_at(40.0) - 1_000.0).abs() < 1e-9);
    assert!((c[1].target_at(40.0) - 500.0).abs() < 1e-9);
    assert!(
        (c[0].target_at(199.0) - 1_000.0).abs() < 1e-9,
        "held until the curve ends"
    );
    assert!(
        (c[0].target_at(300.0) - 100.0).abs() < 1e-9,
        "then the final level"
    );
    let total: f64 = c.iter().map(|c| c.peak()).sum();
    assert!((total - 1_500.0).abs() < 1e-3, "{total}");
}

#[test]
fn outage_moves_the_region_to_its_neighbour_and_back() {
    let s = scenario("outage = { region = \"eu-west\", to = \"us-east\", at_s = 120, duration_s = 30 }");
    let c = s.curves(1.0);
    assert_eq!(c[0].target_at(119.0), 100.0);
    assert_eq!(c[0].target_at(130.0), 0.0);
    assert_eq!(c[1].target_at(130.0), 150.0);
    assert_eq!(c[0].target_at(150.0), 100.0);
    assert_eq!(c[1].target_at(150.0), 50.0);
    // The outage drops the players' connections (they do not come back there).
    let storms = c[0].storms();
    assert_eq!(storms.len(), 1);
    assert!(storms[0].moved && storms[0].at_s == 120.0 && storms[0].share == 1.0);
    assert!((c[1].peak() - 150.0).abs() < 1e-3);
    // A partial outage moves its share only.
    let s = scenario(
        "outage = { region = \"eu-west\", to = \"us-east\", at_s = 120, duration_s = 30, share = 0.5 }",
    );
    let c = s.curves(1.0);
    assert_eq!((c[0].target_at(130.0), c[1].target_at(130.0)), (50.0, 100.0));
}

#[test]
fn old_client_share_is_drawn() {
    let s = scenario("old_clients = { share = 0.3 }");
    assert_eq!(s.rehearsal.old_clients.unwrap().interval_ms, 1_000);
    assert!(is_old_client(&s.rehearsal, 0.29) && !is_old_client(&s.rehearsal, 0.3));
    assert!(!is_old_client(&RehearsalSpec::default(), 0.0));
}

#[test]
fn validation_names_the_knob() {
    assert!(err("surprise = { factor = 0 }").contains("surprise"));
    assert!(err("fill = { players = 10, within_s = 0 }").contains("fill"));
    assert!(err("old_clients = { share = 1.5 }").contains("old_clients"));
    assert!(
        err("outage = { region = \"mars\", to = \"us-east\", at_s = 1, duration_s = 1 }").contains("mars")
    );
    assert!(
        err("outage = { region = \"us-east\", to = \"eu-west\", at_s = 1, duration_s = 1 }")
            .contains("neighbour")
    );
    assert!(
        err("outage = { region = \"eu-west\", to = \"us-east\", at_s = 1, duration_s = 0 }")
            .contains("duration_s")
    );
    assert!(err("sunrise = 1").contains("unknown field"));
}

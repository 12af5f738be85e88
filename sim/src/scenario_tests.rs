//! Tests of scenario parsing and validation (`scenario.rs`).
use super::*;

const BASE: &str = r#"
name = "t"
[[regions]]
name = "eu-west"
curve = [{ kind = "ramp", to = 10, duration_s = 2 }]
[session]
length_s = { kind = "fixed", value = 60 }
think_ms = { kind = "fixed", value = 100 }
"#;

fn err(extra: &str) -> String {
    Scenario::parse(&format!("{BASE}{extra}"))
        .unwrap_err()
        .to_string()
}

#[test]
fn minimal_scenario_gets_defaults() {
    let s = Scenario::parse(BASE).unwrap();
    assert_eq!(s.seed, 1);
    assert_eq!(s.live.max_players, 1_000);
    assert_eq!(s.retry.mode, RetryMode::Backoff);
    assert_eq!(s.regions[0].rtt_ms, Dist::Fixed { value: 30.0 });
    assert_eq!(s.duration_s(), 2.0);
    assert!(s.matchmaking.is_none());
}

#[test]
fn shipped_presets_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Scenario::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 4, "presets found: {n}");
}

#[test]
fn typos_and_wrong_types_are_parse_errors() {
    assert!(err("[live]\nmax_player = 3\n").contains("unknown field"));
    assert!(err("[retry]\nmode = \"sometimes\"\n").contains("unknown variant"));
    let e = Scenario::parse(&BASE.replace("\"ramp\"", "\"rampe\"")).unwrap_err();
    assert!(e.to_string().contains("unknown variant"), "{e}");
    let e = Scenario::parse(&BASE.replace("duration_s = 2", "duration_s = \"2\"")).unwrap_err();
    assert!(matches!(e, ScenarioError::Parse(_)), "{e}");
}

#[test]
fn validation_errors_name_the_field() {
    assert!(Scenario::parse(&BASE.replace("name = \"t\"", "name = \"a b\"")).is_err());
    let e = Scenario::parse(&BASE.replace("eu-west", "EU_West")).unwrap_err();
    assert!(e.to_string().contains("region \"EU_West\""), "{e}");
    let e = Scenario::parse(&BASE.replace("to = 10", "to = -10")).unwrap_err();
    assert!(e.to_string().contains("curve segment 1"), "{e}");
    assert!(err("[retry]\nimpatient_share = 2\n").contains("impatient_share"));
    assert!(err("[behaviour]\nmatchmaking = 1\n").contains("[matchmaking]"));
    assert!(err("[slo]\nerror_rate = 1.5\n").contains("error_rate"));
    assert!(err("[live]\nmax_players = 0\n").contains("max_players"));
    assert!(err("[inventory]\nhistory_limit = 500\n").contains("history_limit"));
    assert!(err("[inventory]\ngrants = 1\n").contains("unknown field"));
    let none = "[behaviour]\ninventory = 1\n[inventory]\nbalances = 0\nhistory = 0\ngrant = 0\npurchase = 0\nreplay = 0\n";
    assert!(err(none).contains("[inventory] weight"));
    let e = Scenario::parse(&format!(
        "{BASE}[[regions]]\nname = \"us-east\"\ncurve = [{{ kind = \"hold\", level = 1, duration_s = 1 }}]\nneighbours = [{{ name = \"mars\", rtt_ms = {{ kind = \"fixed\", value = 1 }} }}]\n"
    ))
    .unwrap_err();
    assert!(e.to_string().contains("neighbour \"mars\""), "{e}");
}

#[test]
fn matchmaking_section_is_checked() {
    let mm = |exp: &str| {
        format!(
            "{BASE}[matchmaking]\nteams = 2\nteam_size = 5\nexpansions = [{exp}]\nskill = {{ kind = \"normal\", mean = 1500, stddev = 300 }}\nmatch_duration_s = {{ kind = \"fixed\", value = 600 }}\n"
        )
    };
    let ok = Scenario::parse(&mm(
        "{ after_s = 0, max_skill_diff = 50 }, { after_s = 10, max_skill_diff = 200 }",
    ))
    .unwrap();
    let m = ok.matchmaking.unwrap();
    assert_eq!((m.queue.as_str(), m.round_interval_ms), ("default", 1_000));
    let e = Scenario::parse(&mm("{ after_s = 5, max_skill_diff = 50 }")).unwrap_err();
    assert!(e.to_string().contains("expansions"), "{e}");
    let e = Scenario::parse(&mm(
        "{ after_s = 0, max_skill_diff = 50 }, { after_s = 10, max_skill_diff = 20 }",
    ))
    .unwrap_err();
    assert!(e.to_string().contains("expansions"), "{e}");
}

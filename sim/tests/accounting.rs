//! Acceptance test of the one error accounting (issue #20): a small live run
//! against a real gateway on loopback where a fixed number of each failure
//! kind is provoked, and the same counts appear in the progress output,
//! `result.json`, the SLO evaluation and the HTML report.
//!
//! - `buyers`: 4 players × 5 purchases with no gems: 20 declined purchases,
//!   `inventory_purchase` / `Conflict`, an expected outcome (the default
//!   `[accounting]`), not an error;
//! - `stale`: 3 players × 5 purchases of an offer the catalog does not have
//!   (a stale client): 15 errors `inventory_purchase` / `NotFound`;
//! - `pingers`: 2 players × 5 pings: 10 successes;
//! - `dead`: 2 players whose gateway never answers, one attempt each: 2 login
//!   errors, 2 players gave up.
//!
//! Players go idle after `session.max_actions` (5) and stay connected until
//! the curve ends, so nobody is replaced and the counts are exact.

use std::sync::{Arc, Mutex};

use outpost_sim::live::LiveTarget;
use outpost_sim::local::LocalGateway;
use outpost_sim::results::{Results, SloStatus};
use outpost_sim::scenario::Scenario;
use outpost_sim::RunOptions;

const SCENARIO: &str = r#"
name = "accounting"
seed = 3
sample_interval_ms = 500

[[regions]]
name = "buyers"
curve = [{ kind = "queue_release", players = 4, duration_s = 4 }]
behaviour = { ping = 0, echo = 0, state_load = 0, state_save = 0, inventory = 1 }
inventory = { balances = 0, history = 0, grant = 0, purchase = 1, replay = 0 }

[[regions]]
name = "stale"
curve = [{ kind = "queue_release", players = 3, duration_s = 4 }]
behaviour = { ping = 0, echo = 0, state_load = 0, state_save = 0, inventory = 1 }
inventory = { balances = 0, history = 0, grant = 0, purchase = 1, replay = 0, offer = "retired_offer" }

[[regions]]
name = "pingers"
curve = [{ kind = "queue_release", players = 2, duration_s = 4 }]
behaviour = { ping = 1, echo = 0, state_load = 0, state_save = 0 }

[[regions]]
name = "dead"
curve = [
  { kind = "queue_release", players = 2, duration_s = 0.5 },
  { kind = "hold", level = 0, duration_s = 3.5 },
]

[session]
length_s = { kind = "fixed", value = 3600 }
think_ms = { kind = "fixed", value = 20 }
max_actions = 5

[retry]
max_attempts = 1

[live]
request_timeout_ms = 1500
shutdown_grace_ms = 5000

[slo]
error_rate = 0.2
login_success_rate = 0.5
request_p99_ms = 5000
match_wait_p95_s = 10
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_output_shows_the_same_counts() {
    let scenario = Scenario::parse(SCENARIO).unwrap();
    let gw = LocalGateway::start(100, None).await.unwrap();
    // The dead region's gateway: a socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut gateways = vec![vec![gw.addr]; 3];
    gateways.push(vec![silent.local_addr().unwrap()]);
    let target = LiveTarget {
        gateways,
        ca_pem: gw.ca_pem.clone(),
        server_name: "localhost".into(),
    };
    let log = Arc::new(Mutex::new(Vec::new()));
    let opts = RunOptions {
        progress_log: Some(log.clone()),
        ..RunOptions::default()
    };
    let r = outpost_sim::live::run(&scenario, target, &opts).await.unwrap();
    gw.stop().await;

    // result.json (through a write and a read).
    let dir = tempfile::tempdir().unwrap();
    let (json, html) = r.write(dir.path()).unwrap();
    let r = Results::read(&json).unwrap();
    let purchase = &r.accounting["inventory_purchase"];
    assert_eq!(purchase.outcomes.get("Conflict"), Some(&20), "{:?}", r.accounting);
    assert_eq!(purchase.errors.get("NotFound"), Some(&15), "{:?}", r.accounting);
    assert_eq!((purchase.attempts, purchase.ok), (35, 0));
    assert_eq!((r.accounting["ping"].attempts, r.accounting["ping"].ok), (10, 10));
    let login = &r.accounting["login"];
    assert_eq!(
        (login.attempts, login.ok, login.error_count()),
        (11, 9, 2),
        "{login:?}"
    );
    assert_eq!(r.accounting["session"].ok, 9, "{:?}", r.accounting["session"]);
    let t = &r.totals;
    assert_eq!((t.errors, t.outcomes, t.attempts), (17, 20, 65), "{t:?}");
    assert_eq!(
        (t.players_gave_up, t.purchases_declined, t.request_errors),
        (2, 20, 15)
    );
    assert_eq!(r.errors.values().sum::<u64>(), 17);
    assert_eq!(r.errors_by_op["inventory_purchase"]["NotFound"], 15);
    assert!(
        !r.errors.contains_key("Conflict"),
        "outcomes are not errors: {:?}",
        r.errors
    );

    // The SLO evaluation judges the same figures; one it cannot measure is listed.
    let slo = |name: &str| r.slo.iter().find(|s| s.name == name).unwrap();
    assert_eq!(slo("error_rate").actual, Some(17.0 / 65.0));
    assert_eq!(slo("error_rate").status(), SloStatus::Missed);
    assert_eq!(slo("login_success_rate").actual, Some(9.0 / 11.0));
    assert_eq!(slo("request_p99_ms").status(), SloStatus::Met);
    assert_eq!(slo("match_wait_p95_s").status(), SloStatus::NotMeasured);
    assert_eq!(r.slo.len(), 4, "every objective set is listed");

    // The progress output: its last line carries the final counts.
    let lines = log.lock().unwrap().clone();
    let last = lines.last().unwrap();
    assert!(last.ends_with("(final)") || last.contains("(final)"), "{last}");
    assert!(last.contains("errors 17 ("), "{last}");
    assert!(last.contains("inventory_purchase/NotFound 15"), "{last}");
    assert!(
        last.contains("outcomes 20 [inventory_purchase/Conflict 20]"),
        "{last}"
    );
    // Error counts only ever grow line by line, and never past the final one.
    let counts: Vec<u64> = lines
        .iter()
        .map(|l| {
            let rest = l.split("errors ").nth(1).unwrap();
            rest.split(' ').next().unwrap().parse().unwrap()
        })
        .collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");

    // The HTML report's tables.
    let page = std::fs::read_to_string(html).unwrap();
    for row in [
        r#"data-op="inventory_purchase" data-code="NotFound" data-count="15""#,
        r#"data-op="inventory_purchase" data-code="Conflict" data-count="20""#,
        r#"data-count="2""#,
    ] {
        assert!(page.contains(row), "{row} in the report");
    }
    assert!(
        page.contains("17 errors · 20 expected outcomes"),
        "the error heading"
    );
    assert!(page.contains("not measured in this mode"));
    assert!(page.contains(r#"data-slo="match_wait_p95_s""#));
}

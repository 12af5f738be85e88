//! Model mode through the store-backed pool (`--store`, issue 19): a small
//! run commits every match it reports, exactly once, in the real store.

use std::path::Path;

use outpost_sim::scenario::{ExpansionSpec, Scenario, StoreSpec};
use outpost_sim::RunOptions;

#[test]
fn store_backed_model_commits_every_reported_match_exactly_once() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/smoke.toml");
    let mut scenario = Scenario::from_file(path).unwrap();
    let m = scenario.matchmaking.as_mut().unwrap();
    // Two bands per region (4 workers, borrowing across adjacent bands), and
    // a narrow window with a deadline short enough that some tickets get the
    // "no match" outcome.
    m.store = Some(StoreSpec {
        partitions: 2,
        commit_concurrency: 8,
    });
    m.expansions = vec![ExpansionSpec {
        after_s: 0.0,
        max_skill_diff: 150.0,
    }];
    m.cross_region = None;
    m.deadline_s = Some(1.5);
    scenario.validate().unwrap();
    let opts = RunOptions {
        scale: 5.0, // 150 players at the peak
        ..RunOptions::default()
    };
    let r = outpost_sim::model::run(&scenario, &opts).unwrap();
    let s = r
        .model_store
        .as_ref()
        .expect("a store-backed run reports the store");
    let t = &r.totals;
    assert_eq!(s.workers, 4, "2 regions × 2 bands: {s:?}");
    assert!(t.matches >= 10 && s.tickets_expired > 0, "{t:?} {s:?}");
    assert!(
        t.storm_drops > 0 && s.tickets_cancelled > 0,
        "cancels go through the store: {s:?}"
    );
    // Every match the model counts was committed, and the store holds
    // exactly one record per match: no more, no fewer.
    assert_eq!(s.matches_committed, t.matches, "{s:?}");
    assert_eq!(s.store_match_records, t.matches, "{s:?}");
    // Every matched ticket is `matched` in the store; none was matched twice
    // (a second match of a ticket would name a ticket no longer waiting).
    assert_eq!(s.audited_tickets, t.matches * 4, "{s:?}");
    assert_eq!(s.audited_not_matched, 0, "{s:?}");
    assert_eq!(s.unknown_tickets, 0, "{s:?}");
    // The workers' own counts agree with what the model derived.
    assert_eq!(s.commit_count_mismatches, 0, "{s:?}");
    assert_eq!(s.expiry_mismatches, 0, "{s:?}");
    assert_eq!(s.cancel_races, 0, "{s:?}");
    assert_eq!(
        s.tickets_created + s.tickets_withdrawn_unwritten,
        t.tickets,
        "{s:?}"
    );
    assert_eq!(s.waiting_at_end, 0, "the smoke curve drains: {s:?}");
    // Every wait is reported: matched tickets and deadline outcomes.
    let w = &r.operations["match_wait"];
    assert_eq!(w.count, t.matches * 4 + s.tickets_expired, "{w:?} {s:?}");
    assert_eq!(r.operations["match_store_wait"].count, t.matches * 4);
    assert!(s.rounds > 0 && s.matches_per_s > 0.0, "{s:?}");
    assert!((0.0..=1.0).contains(&s.store_share_of_wait), "{s:?}");
    assert!(r
        .notes
        .iter()
        .any(|n| n.starts_with("Store share of the match wait")));
}

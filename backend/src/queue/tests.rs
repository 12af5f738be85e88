//! The login queue against the real embedded store.

use std::collections::HashSet;
use std::time::Duration;

use super::*;
use crate::store::embedded::EmbeddedStore;

async fn store() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = crate::store::testing::open_store(dir.path()).await.unwrap();
    (dir, s)
}

fn qkeys() -> QueueKeys {
    QueueKeys::new("k1", [("k1", &[7u8; 32])]).unwrap()
}

fn queue(s: &EmbeddedStore) -> Queue<EmbeddedStore> {
    let settings = QueueSettings {
        place_grace: Duration::from_secs(10),
        reentry_grace: Duration::from_secs(5),
        max_batch: 100,
        token_ttl: Duration::from_secs(60),
    };
    Queue::new(s.clone(), RegionName::new("eu").unwrap(), settings, qkeys()).unwrap()
}

fn budget(max_sessions: u32, per_sec: u32) -> Budget {
    Budget {
        max_sessions,
        max_admissions_per_sec: per_sec,
        paused: false,
        updated_ms: 0,
    }
}

const T0: u64 = 1_700_000_000_000;

fn queued(e: Entry) -> Place {
    match e {
        Entry::Queued(p) => p,
        other => panic!("expected a place, got {other:?}"),
    }
}

fn admitted(e: &Entry) -> u64 {
    match e {
        Entry::Admitted { slot, .. } => *slot,
        other => panic!("expected admission, got {other:?}"),
    }
}

/// Enqueues players `p0..pn` (after filling the budget) and returns their places.
async fn fill(q: &Queue<EmbeddedStore>, n: usize) -> Vec<Place> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(queued(q.enter(&format!("p{i}"), "gw-a", None, T0).await.unwrap()));
    }
    out
}

#[tokio::test]
async fn direct_under_budget_then_fifo_with_positions() {
    let (_d, s) = store().await;
    let q = queue(&s);
    q.set_budget(budget(2, 100), T0).await.unwrap();
    let a = q.enter("s1", "gw-a", None, T0).await.unwrap();
    assert!(matches!(
        a,
        Entry::Admitted {
            via: AdmittedVia::Direct,
            ..
        }
    ));
    q.enter("s2", "gw-a", None, T0).await.unwrap();
    let places = fill(&q, 5).await;
    let view = q.view().await.unwrap();
    assert_eq!(view.len(), 5);
    assert_eq!(view.used, 2);
    for (i, p) in places.iter().enumerate() {
        assert_eq!(view.position(p.stamp), Some(i as u32));
    }
    assert!(q.admit_tick(T0).await.unwrap().is_empty(), "no room");
    q.end_session("s1", admitted(&a), true, T0).await.unwrap();
    assert_eq!(q.admit_tick(T0 + 1).await.unwrap(), vec!["p0".to_owned()]);
    // The admitted place is taken by its holder's poll; others moved up.
    assert_eq!(
        q.poll(&places[0], "gw-a", T0 + 2).await.unwrap(),
        PlaceStatus::Admitted {
            slot: places[0].place
        }
    );
    assert_eq!(
        q.poll(&places[1], "gw-a", T0 + 2).await.unwrap(),
        PlaceStatus::Waiting
    );
    let view = q.view().await.unwrap();
    assert_eq!(view.position(places[0].stamp), None);
    assert_eq!(view.position(places[1].stamp), Some(0));
    assert_eq!((view.admissions_total, view.used), (3, 2));
    // A newcomer queues behind, even though nobody is ahead of... the FIFO is not empty.
    let late = queued(q.enter("late", "gw-b", None, T0 + 3).await.unwrap());
    assert_eq!(q.view().await.unwrap().position(late.stamp), Some(4));
}

#[tokio::test]
async fn one_place_per_account_and_tokens_keep_it() {
    let (_d, s) = store().await;
    let q = queue(&s);
    q.set_budget(budget(0, 100), T0).await.unwrap();
    let places = fill(&q, 3).await;
    // Again without a token (an app restart): the same place.
    let again = queued(q.enter("p1", "gw-b", None, T0 + 5).await.unwrap());
    assert_eq!((again.place, again.stamp), (places[1].place, places[1].stamp));
    // With its token at another gateway: the same place.
    let with = queued(
        q.enter("p1", "gw-c", Some(&places[1].token), T0 + 6)
            .await
            .unwrap(),
    );
    assert_eq!((with.place, with.stamp), (places[1].place, places[1].stamp));
    assert_eq!(q.view().await.unwrap().len(), 3, "still one place each");
}

#[tokio::test]
async fn hostile_tokens_are_refused_with_typed_errors() {
    let (_d, s) = store().await;
    let q = queue(&s);
    q.set_budget(budget(0, 100), T0).await.unwrap();
    let places = fill(&q, 2).await;
    let err = |r: Result<Entry, QueueError>| match r {
        Err(QueueError::Token(t)) => t,
        other => panic!("expected a token error, got {other:?}"),
    };
    // Forged: minted under another key.
    let forger = QueueKeys::new("k1", [("k1", &[9u8; 32])]).unwrap();
    let forged = forger.issue("p0", "eu", places[0].place, Duration::from_secs(60), T0 / 1_000);
    assert_eq!(
        err(q.enter("p0", "gw", Some(&forged), T0).await),
        QueueTokenError::Forged
    );
    // Another account's token.
    assert_eq!(
        err(q.enter("p0", "gw", Some(&places[1].token), T0).await),
        QueueTokenError::WrongAccount
    );
    // Expired.
    let late = T0 + 61_000;
    assert!(matches!(
        err(q.enter("p0", "gw", Some(&places[0].token), late).await),
        QueueTokenError::Expired { .. }
    ));
    // Garbage.
    assert!(matches!(
        err(q.enter("p0", "gw", Some("q1.x.y"), T0).await),
        QueueTokenError::Malformed(_)
    ));
    // Replayed: the place was admitted and taken; the token names it no more
    // once the session ended.
    q.set_budget(budget(10, 100), T0).await.unwrap();
    assert_eq!(q.admit_tick(T0).await.unwrap().len(), 2);
    let slot = match q.poll(&places[0], "gw", T0).await.unwrap() {
        PlaceStatus::Admitted { slot } => slot,
        other => panic!("{other:?}"),
    };
    q.end_session("p0", slot, true, T0).await.unwrap();
    assert_eq!(
        err(q.enter("p0", "gw", Some(&places[0].token), T0).await),
        QueueTokenError::PlaceGone
    );
    // Without the token the account simply logs in.
    assert!(matches!(
        q.enter("p0", "gw", None, T0).await.unwrap(),
        Entry::Admitted { .. }
    ));
}

#[tokio::test]
async fn detached_places_expire_after_the_grace_and_returning_keeps_them() {
    let (_d, s) = store().await;
    let q = queue(&s);
    q.set_budget(budget(0, 100), T0).await.unwrap();
    let places = fill(&q, 3).await;
    q.detach("p0", places[0].place, T0).await.unwrap();
    q.detach("p1", places[1].place, T0).await.unwrap();
    // p1 comes back (through another gateway) within the grace.
    let back = queued(
        q.enter("p1", "gw-b", Some(&places[1].token), T0 + 9_000)
            .await
            .unwrap(),
    );
    assert_eq!(back.stamp, places[1].stamp);
    assert_eq!(q.sweep(T0 + 9_999).await.unwrap(), 0);
    assert_eq!(q.sweep(T0 + 10_000).await.unwrap(), 1, "p0 expired, p1 came back");
    let view = q.view().await.unwrap();
    assert_eq!(view.abandoned_total, 1);
    assert_eq!(view.position(places[1].stamp), Some(0));
    assert_eq!(view.position(places[2].stamp), Some(1));
    assert_eq!(
        q.enter("p0", "gw", Some(&places[0].token), T0 + 10_001)
            .await
            .unwrap_err()
            .to_string(),
        QueueTokenError::PlaceGone.to_string()
    );
}

#[tokio::test]
async fn reentry_within_the_grace_skips_the_queue() {
    let (_d, s) = store().await;
    let q = queue(&s);
    q.set_budget(budget(1, 100), T0).await.unwrap();
    let slot = admitted(&q.enter("crash", "gw-a", None, T0).await.unwrap());
    let waiting = queued(q.enter("w", "gw-a", None, T0).await.unwrap());
    // Unclean end: the slot stays reserved; the waiting place is not admitted.
    q.end_session("crash", slot, false, T0).await.unwrap();
    assert!(q.admit_tick(T0 + 1).await.unwrap().is_empty());
    let back = q.enter("crash", "gw-b", None, T0 + 4_000).await.unwrap();
    assert!(matches!(
        back,
        Entry::Admitted {
            via: AdmittedVia::Reserved,
            ..
        }
    ));
    // A second crash, nobody returns: the reservation expires and frees the slot.
    q.end_session("crash", admitted(&back), false, T0 + 4_000)
        .await
        .unwrap();
    assert_eq!(q.sweep(T0 + 8_999).await.unwrap(), 0);
    assert_eq!(q.sweep(T0 + 9_000).await.unwrap(), 1);
    assert_eq!(q.admit_tick(T0 + 9_001).await.unwrap(), vec!["w".to_owned()]);
    assert_eq!(
        q.poll(&waiting, "gw-a", T0 + 9_002).await.unwrap(),
        PlaceStatus::Admitted { slot: waiting.place }
    );
    // Later than the grace, the crashed player queues like anyone.
    assert!(matches!(
        q.enter("crash", "gw-b", None, T0 + 9_003).await.unwrap(),
        Entry::Queued(_)
    ));
}

#[tokio::test]
async fn a_displacing_login_moves_the_slot_and_the_old_release_is_harmless() {
    let (_d, s) = store().await;
    let q = queue(&s);
    q.set_budget(budget(1, 100), T0).await.unwrap();
    let old = admitted(&q.enter("p", "gw-a", None, T0).await.unwrap());
    let new = q.enter("p", "gw-b", None, T0 + 1).await.unwrap();
    assert!(matches!(
        new,
        Entry::Admitted {
            via: AdmittedVia::Displacing,
            ..
        }
    ));
    q.end_session("p", old, true, T0 + 2).await.unwrap();
    assert_eq!(
        q.view().await.unwrap().used,
        1,
        "the new session still holds the slot"
    );
    q.end_session("p", admitted(&new), true, T0 + 3).await.unwrap();
    assert_eq!(q.view().await.unwrap().used, 0);
}

#[tokio::test]
async fn a_dead_gateways_entries_survive_through_the_liveness_hook() {
    let (_d, s) = store().await;
    let q = queue(&s);
    q.set_budget(budget(1, 100), T0).await.unwrap();
    admitted(&q.enter("sess", "gw-dead", None, T0).await.unwrap());
    let places = fill(&q, 3).await; // held by gw-a
    let w = queued(q.enter("w", "gw-dead", None, T0).await.unwrap());
    assert_eq!(q.release_holder("gw-dead", T0 + 100).await.unwrap(), 2);
    assert_eq!(
        q.release_holder("gw-dead", T0 + 100).await.unwrap(),
        0,
        "idempotent"
    );
    // The session re-enters; the place is kept if its holder returns in time.
    assert!(matches!(
        q.enter("sess", "gw-b", None, T0 + 200).await.unwrap(),
        Entry::Admitted {
            via: AdmittedVia::Reserved,
            ..
        }
    ));
    let back = queued(q.enter("w", "gw-b", Some(&w.token), T0 + 300).await.unwrap());
    assert_eq!(back.stamp, w.stamp);
    assert_eq!(q.view().await.unwrap().position(w.stamp), Some(3));
    assert_eq!(q.view().await.unwrap().position(places[0].stamp), Some(0));
}

#[tokio::test]
async fn concurrent_admitters_never_exceed_the_budget_and_keep_fifo() {
    let (_d, s) = store().await;
    let q = queue(&s);
    q.set_budget(budget(0, 1_000), T0).await.unwrap();
    let places = fill(&q, 120).await;
    q.set_budget(budget(20, 1_000), T0).await.unwrap();
    let mut admitted_order: Vec<String> = Vec::new();
    let mut last_positions: Vec<Option<u32>> = vec![Some(u32::MAX); places.len()];
    let mut now = T0;
    for round in 0..6 {
        // Four gateways tick at once, several times.
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    for _ in 0..3 {
                        got.extend(q.admit_tick(now).await.unwrap());
                    }
                    got
                })
            })
            .collect();
        let mut this_round = Vec::new();
        for t in tasks {
            this_round.extend(t.await.unwrap());
        }
        let view = q.view().await.unwrap();
        assert!(view.used <= 20, "round {round}: {} slots in use", view.used);
        assert_eq!(
            this_round.len(),
            if round == 0 { 20 } else { 10 },
            "round {round}"
        );
        for (i, p) in places.iter().enumerate() {
            let pos = view.position(p.stamp);
            assert!(pos.is_none() || pos <= last_positions[i], "position went up");
            last_positions[i] = pos;
        }
        this_round.sort_by_key(|p| p[1..].parse::<usize>().unwrap());
        admitted_order.extend(this_round);
        // Ten sessions end (cleanly), in the next rate window.
        let ending: Vec<&Place> = places
            .iter()
            .filter(|p| admitted_order.contains(&p.player))
            .skip(round * 10)
            .take(10)
            .collect();
        for p in ending {
            let PlaceStatus::Admitted { slot } = q.poll(p, "gw-a", now).await.unwrap() else {
                panic!("admitted place not takeable")
            };
            q.end_session(&p.player, slot, true, now).await.unwrap();
        }
        now += 1_000;
    }
    let expected: Vec<String> = (0..admitted_order.len()).map(|i| format!("p{i}")).collect();
    assert_eq!(admitted_order, expected, "strict FIFO, each admitted once");
    assert_eq!(
        admitted_order.iter().collect::<HashSet<_>>().len(),
        admitted_order.len()
    );
}

#[tokio::test]
async fn the_rate_limit_holds_across_concurrent_admitters_and_pause_stops_all() {
    let (_d, s) = store().await;
    let q = queue(&s);
    q.set_budget(budget(0, 7), T0).await.unwrap();
    fill(&q, 40).await;
    q.set_budget(
        Budget {
            paused: true,
            ..budget(1_000, 7)
        },
        T0,
    )
    .await
    .unwrap();
    assert!(q.admit_tick(T0).await.unwrap().is_empty(), "paused");
    q.set_budget(budget(1_000, 7), T0).await.unwrap();
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let q = q.clone();
            tokio::spawn(async move {
                let mut n = 0;
                for _ in 0..5 {
                    n += q.admit_tick(T0 + 500).await.unwrap().len();
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 7, "one window's rate, region-wide");
    assert_eq!(q.admit_tick(T0 + 1_500).await.unwrap().len(), 7, "next window");
    assert_eq!(
        q.ensure_budget(budget(1, 1), T0)
            .await
            .unwrap()
            .max_admissions_per_sec,
        7
    );
}

#[tokio::test]
async fn clients_without_queue_support_get_busy_and_no_place_and_resumes_get_in() {
    let (_d, s) = store().await;
    let q = queue(&s);
    q.set_budget(budget(1, 100), T0).await.unwrap();
    admitted(&q.enter("a", "gw", None, T0).await.unwrap());
    let e = q
        .enter_with("old", "gw", None, EnterMode::NoQueue, T0)
        .await
        .unwrap();
    assert_eq!(e, Entry::Busy);
    assert!(q.view().await.unwrap().is_empty(), "no place written");
    let r = q
        .enter_with("res", "gw", None, EnterMode::Resume, T0)
        .await
        .unwrap();
    assert!(matches!(
        r,
        Entry::Admitted {
            via: AdmittedVia::Resumed,
            ..
        }
    ));
    assert_eq!(q.view().await.unwrap().used, 2, "a resume over budget is counted");
}

#[test]
fn eta_follows_the_measured_rate() {
    let mut e = EtaEstimator::new(Duration::from_secs(30));
    assert_eq!(e.eta_ms(9, 5), Some(2_000), "fallback: configured rate");
    assert_eq!(e.eta_ms(9, 0), None);
    e.sample(0, 0);
    e.sample(10_000, 100);
    assert_eq!(e.rate_per_sec(), Some(10.0));
    assert_eq!(e.eta_ms(9, 5), Some(1_000));
    e.sample(50_000, 100);
    assert_eq!(e.rate_per_sec(), Some(0.0));
    assert_eq!(e.eta_ms(9, 5), Some(2_000));
}

/// Every queue write whose commit applied, then reported an unknown result
/// (forced): its rerun answers as the first attempt did (how a login got in,
/// who a tick admitted, how many entries a release or a sweep changed).
#[tokio::test]
async fn reruns_after_applied_unknown_results_answer_as_the_first_attempt() {
    use crate::store::testing::{open_scripted_store, CommitFault};
    let dir = tempfile::tempdir().unwrap();
    let s = open_scripted_store(dir.path()).await.unwrap();
    let q = queue(&s);
    let unknown = || assert!(s.script_commit_faults([CommitFault::UnknownApplied]));
    q.set_budget(budget(1, 100), T0).await.unwrap();
    unknown();
    let direct = q.enter("a", "gw-a", None, T0).await.unwrap();
    assert!(
        matches!(
            direct,
            Entry::Admitted {
                via: AdmittedVia::Direct,
                ..
            }
        ),
        "{direct:?}"
    );
    let w = queued(q.enter("w", "gw-a", None, T0).await.unwrap());
    q.end_session("a", admitted(&direct), false, T0 + 1)
        .await
        .unwrap();
    unknown();
    let back = q.enter("a", "gw-b", None, T0 + 2).await.unwrap();
    assert!(
        matches!(
            back,
            Entry::Admitted {
                via: AdmittedVia::Reserved,
                ..
            }
        ),
        "{back:?}"
    );
    unknown();
    let resumed = q
        .enter_with("r", "gw-b", None, EnterMode::Resume, T0 + 3)
        .await
        .unwrap();
    assert!(
        matches!(
            resumed,
            Entry::Admitted {
                via: AdmittedVia::Resumed,
                ..
            }
        ),
        "{resumed:?}"
    );
    // The gateway holding `w` dies: its place is detached, counted once.
    unknown();
    assert_eq!(q.release_holder("gw-a", T0 + 4).await.unwrap(), 1);
    unknown();
    assert_eq!(q.sweep(T0 + 4 + 10_000).await.unwrap(), 1, "w's place expired");
    assert_eq!(q.poll(&w, "gw-a", T0 + 10_005).await.unwrap(), PlaceStatus::Gone);
    // The budget is full (a, r): x queues; both leave; a tick admits x.
    let x = queued(q.enter("x", "gw-b", None, T0 + 10_006).await.unwrap());
    q.end_session("a", admitted(&back), true, T0 + 10_007)
        .await
        .unwrap();
    q.end_session("r", admitted(&resumed), true, T0 + 10_007)
        .await
        .unwrap();
    unknown();
    assert_eq!(q.admit_tick(T0 + 10_008).await.unwrap(), vec!["x".to_owned()]);
    assert_eq!(
        q.poll(&x, "gw-b", T0 + 10_009).await.unwrap(),
        PlaceStatus::Admitted { slot: x.place }
    );
    let view = q.view().await.unwrap();
    assert_eq!((view.used, view.admissions_total), (1, 3), "direct, resumed, x");
    assert_eq!(s.fault_counts().unwrap().unknown_applied, 6);
}

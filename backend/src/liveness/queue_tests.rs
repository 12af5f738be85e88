//! The orphan sweep and the login queue, on the real embedded store (through
//! `store::testing`, so also under the fault mode): a dead gateway
//! incarnation's places and slots are released once, and the region's
//! slots-in-use counter comes back to exactly the live sessions.

use std::time::Duration;

use super::*;
use crate::keyspace::RegionName;
use crate::matchmaker::{Matchmaker, MatchmakerConfig};
use crate::presence::Presence;
use crate::queue::{Budget, EnterMode, Entry, Place, PlaceStatus, Queue, QueueKeys, QueueSettings};
use crate::store::embedded::EmbeddedStore;
use crate::store::testing::{faults_enabled, open_store};

const T0: u64 = 1_700_000_000_000;
const RESUME_WINDOW: u64 = 50_000;
const PLACE_GRACE: u64 = 10_000;
const REENTRY_GRACE: u64 = 5_000;

fn pool() -> MatchmakerConfig {
    serde_json::from_str(
        r#"{"regions": [{"name": "eu"}], "queues": [
        {"name": "duel", "teams": 2, "team_size": 1, "expansions": [{"after_ms": 0, "max_skill_diff": 5000.0}]}]}"#,
    )
    .unwrap()
}

fn queue(s: &EmbeddedStore) -> Queue<EmbeddedStore> {
    let settings = QueueSettings {
        place_grace: Duration::from_millis(PLACE_GRACE),
        reentry_grace: Duration::from_millis(REENTRY_GRACE),
        max_batch: 100,
        token_ttl: Duration::from_secs(3_600),
    };
    let keys = QueueKeys::new("k1", [("k1", &[7u8; 32])]).unwrap();
    Queue::new(s.clone(), RegionName::new("eu").unwrap(), settings, keys).unwrap()
}

fn sweeper(
    live: &Liveness<EmbeddedStore>,
    s: &EmbeddedStore,
    owner: &str,
) -> anyhow::Result<Sweeper<EmbeddedStore, EmbeddedStore>> {
    Ok(Sweeper::new(
        live.clone(),
        Matchmaker::new(s.clone(), "eu", pool())?,
        Presence::new(s.clone()),
        owner,
        SweepConfig {
            resume_window_ms: RESUME_WINDOW,
            finished_retention_ms: 0,
            ..SweepConfig::default()
        },
    )?
    .with_queue(queue(s)))
}

fn slot(e: Entry) -> u64 {
    match e {
        Entry::Admitted { slot, .. } => slot,
        other => panic!("expected an admission, got {other:?}"),
    }
}

fn place(e: Entry) -> Place {
    match e {
        Entry::Queued(p) => p,
        other => panic!("expected a place, got {other:?}"),
    }
}

/// Gateway A (incarnation `a`) dies holding three sessions and three places;
/// gateway B and A's restart (same id, new incarnation) hold the rest. One of
/// A's players re-entered through B before the sweep, one waiting player
/// reconnected through B. After the sweep and the graces, `used` counts exactly
/// the live sessions, FIFO order held, and everybody logging out brings it to 0.
#[tokio::test]
async fn a_dead_gateway_leaks_no_slot_and_loses_no_reconnected_place() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = open_store(dir.path()).await?;
    let live = Liveness::new(s.clone(), "eu")?;
    let a = live.register("gw-a", 1_000, T0).await?;
    let b = live.register("gw-b", 3_600_000, T0).await?;
    let a2 = live.register("gw-a", 3_600_000, T0 + 500).await?; // A restarted
    let (ha, hb, ha2) = (holder_id("gw-a", a), holder_id("gw-b", b), holder_id("gw-a", a2));
    let q = queue(&s);
    q.set_budget(
        Budget {
            max_sessions: 5,
            max_admissions_per_sec: 100,
            paused: false,
            updated_ms: 0,
        },
        T0,
    )
    .await?;
    for p in ["a1", "a2", "a3"] {
        slot(q.enter(p, &ha, None, T0).await?);
    }
    let b1 = slot(q.enter("b1", &hb, None, T0).await?);
    let r1 = slot(q.enter("r1", &ha2, None, T0).await?);
    let w1 = place(q.enter("w1", &ha, None, T0).await?);
    let w2 = place(q.enter("w2", &ha, None, T0).await?);
    let w3 = place(q.enter("w3", &hb, None, T0).await?);
    let w4 = place(q.enter("w4", &ha, None, T0).await?);
    assert_eq!(q.view().await?.used, 5);
    // A dies at T0 + 1 s. Before the sweep, a2 resumes through B (its slot
    // moves over) and w2 reconnects through B with its token (keeps its place).
    let a2_slot = slot(
        q.enter_with("a2", &hb, None, EnterMode::Resume, T0 + 2_000)
            .await?,
    );
    let w2 = place(q.enter("w2", &hb, Some(&w2.token), T0 + 3_000).await?);
    assert_eq!(q.view().await?.used, 5, "a resume through B moves the slot");

    let at = T0 + 1_000 + RESUME_WINDOW;
    let early = sweeper(&live, &s, "s1")?.sweep_once(at - 1).await?;
    assert_eq!(
        (early.leader, early.incarnations, early.queue_released),
        (true, 0, 0)
    );
    let r = sweeper(&live, &s, "s1")?.sweep_once(at).await?;
    assert_eq!(r.incarnations, 1, "only A's first incarnation is dead");
    if !faults_enabled() {
        // a1, a3 (sessions) and w1, w4 (places); counts are exact only outside
        // fault mode (a re-run after an applied commit finds nothing left).
        assert_eq!(r.queue_released, 4);
    }
    // Once per dead incarnation: the registration is gone, and the release
    // itself finds nothing more.
    assert_eq!(
        sweeper(&live, &s, "s1")?.sweep_once(at + 1).await?.queue_released,
        0
    );
    assert_eq!(q.release_holder(&ha, at + 1).await?, 0);
    assert_eq!(
        q.view().await?.used,
        5,
        "reservations hold their slots for the grace"
    );

    // The re-entry grace ends: a1's and a3's reservations return their slots;
    // the restarted A's session r1 is untouched.
    q.sweep(at + REENTRY_GRACE).await?;
    assert_eq!(q.view().await?.used, 3, "b1, r1, a2 are live");
    // Two slots: the FIFO head (w1 detached, w2 back through B) is admitted.
    let t = at + REENTRY_GRACE + 1;
    assert_eq!(q.admit_tick(t).await?, vec!["w1".to_owned(), "w2".to_owned()]);
    assert_eq!(
        q.poll(&w2, &hb, t).await?,
        PlaceStatus::Admitted { slot: w2.place }
    );
    assert_eq!(q.poll(&w3, &hb, t).await?, PlaceStatus::Waiting);
    // The place grace ends: w4 (detached, never back) is abandoned, and w1's
    // untaken admission returns its slot, which w3 gets.
    let late = t + PLACE_GRACE + 1;
    q.sweep(late).await?;
    let v = q.view().await?;
    assert_eq!((v.used, v.len(), v.abandoned_total), (4, 1, 1), "{v:?}");
    assert_eq!(v.position(w3.stamp), Some(0));
    assert_eq!(v.position(w4.stamp), None);
    assert_eq!(q.admit_tick(late).await?, vec!["w3".to_owned()]);
    assert_eq!(
        q.poll(&w3, &hb, late).await?,
        PlaceStatus::Admitted { slot: w3.place }
    );
    assert_eq!(q.poll(&w1, &hb, late).await?, PlaceStatus::Gone);
    assert_eq!(q.view().await?.used, 5, "b1, r1, a2, w2, w3");
    // Everybody left logs out: nothing is left counted.
    for (p, sl) in [
        ("b1", b1),
        ("r1", r1),
        ("a2", a2_slot),
        ("w2", w2.place),
        ("w3", w3.place),
    ] {
        q.end_session(p, sl, true, late).await?;
    }
    let v = q.view().await?;
    assert_eq!((v.used, v.len()), (0, 0), "{v:?}");
    assert_eq!(
        live.list().await?.len(),
        2,
        "B and the restarted A stay registered"
    );
    Ok(())
}

//! Tests of the partition floor ([`super::floor`]) against the real embedded
//! store: it follows the oldest waiting ticket, a ticket created below it
//! lowers it, a raise racing such a create fails, and under concurrent
//! creates with skewed clocks, cancels and running workers no waiting ticket
//! is ever below its partition's floor.

use std::collections::BTreeSet;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::floor::raise_in;
use super::store_tests::{allocator, open, player, request, worker_cfg, Mm};
use super::*;
use crate::store::embedded::{EmbeddedConfig, EmbeddedStore, PersistMode};
use crate::store::{Durability, Store, StoreError, TransactOptions, Transaction, TxError};

fn duel_eu_mid() -> Partition {
    Partition {
        queue: "duel".into(),
        region: "eu".into(),
        band: 1,
    }
}

async fn create_at(mm: &Mm, n: u64, created_ms: u64) -> anyhow::Result<TicketId> {
    // Ratings far apart: nothing here is matched unless a test runs a worker.
    let rating = 1000.0 + (n % 100) as f64 * 9.0;
    Ok(mm
        .create_ticket_at(request(vec![player(n)], "duel", rating, "eu"), created_ms)
        .await?)
}

/// Every waiting key of `p`, from the partition's first key (not its floor).
async fn full_scan(mm: &Mm, p: &Partition) -> anyhow::Result<Vec<Ticket>> {
    let (b, e) = keys::partition(mm.pool_name(), p).range();
    let kvs = mm
        .store()
        .run(|tx| {
            let (b, e) = (b.clone(), e.clone());
            async move { Ok::<_, TxError>(tx.get_range_snapshot(&b, &e, None, false).await?) }
        })
        .await?;
    kvs.iter()
        .map(|kv| keys::decode::<Ticket>(&kv.value).map_err(anyhow::Error::msg))
        .collect()
}

fn ids(tickets: &[Ticket]) -> BTreeSet<TicketId> {
    tickets.iter().map(|t| t.id).collect()
}

/// For every partition of the pool: no waiting ticket is below the floor, and
/// a round's load (from the floor) sees exactly what a full scan sees.
/// Returns how many partitions have a floor above 0.
pub(super) async fn assert_floor_holds(mm: &Mm) -> anyhow::Result<usize> {
    let mut raised = 0;
    for p in mm.partitions() {
        let floor = mm.partition_floor(&p).await?;
        let all = full_scan(mm, &p).await?;
        if let Some(t) = all.iter().find(|t| t.created_ms < floor) {
            panic!(
                "{p}: ticket {} created at {} is below the floor {floor}",
                t.id, t.created_ms
            );
        }
        assert_eq!(ids(&mm.load_partition(&p, None).await?), ids(&all), "{p}");
        raised += usize::from(floor > 0);
    }
    Ok(raised)
}

/// Raises `p`'s floor as the worker's rounds do, again after a failed attempt
/// (in the store's fault mode, an injected conflict or unknown result).
async fn raise(mm: &Mm, p: &Partition, now: u64) -> anyhow::Result<u64> {
    for _ in 0..100 {
        if mm.raise_floor(p, now).await.is_ok() {
            return Ok(mm.partition_floor(p).await?);
        }
    }
    anyhow::bail!("100 raise attempts failed")
}

#[tokio::test]
async fn the_floor_follows_the_oldest_waiting_ticket_and_a_create_below_lowers_it() -> anyhow::Result<()> {
    let (_dir, mm) = open().await?;
    let p = duel_eu_mid();
    assert_eq!(mm.partition_floor(&p).await?, 0, "no floor yet");
    assert_eq!(raise(&mm, &p, 500).await?, 500, "empty: up to the round's time");

    let old = create_at(&mm, 1, 100).await?;
    assert_eq!(
        mm.partition_floor(&p).await?,
        100,
        "a create below the floor lowers it"
    );
    assert_eq!(ids(&mm.load_partition(&p, None).await?), BTreeSet::from([old]));

    let mut later = Vec::new();
    for (i, at) in (200..=1_000).step_by(100).enumerate() {
        later.push(create_at(&mm, 10 + i as u64, at).await?);
    }
    assert_eq!(
        mm.partition_floor(&p).await?,
        100,
        "creates above the floor leave it"
    );
    mm.cancel_ticket(old).await?;
    mm.cancel_ticket(later[0]).await?;
    assert_eq!(raise(&mm, &p, 5_000).await?, 300, "to the oldest still waiting");
    assert_eq!(raise(&mm, &p, 5_000).await?, 300, "already there");
    let loaded = mm.load_partition(&p, None).await?;
    assert_eq!(loaded.first().map(|t| t.created_ms), Some(300));
    assert_eq!(ids(&loaded), ids(&full_scan(&mm, &p).await?));
    // `created_before` below the floor: an empty range, not an inverted one.
    assert!(mm.load_partition(&p, Some(250)).await?.is_empty());

    let late = create_at(&mm, 99, 250).await?;
    assert_eq!(mm.partition_floor(&p).await?, 250);
    assert!(ids(&mm.load_partition(&p, None).await?).contains(&late));
    assert!(ids(&mm.load_partition(&p, Some(260)).await?).contains(&late));
    assert_eq!(
        assert_floor_holds(&mm).await?,
        1,
        "only this partition has a floor"
    );
    Ok(())
}

/// One raise attempt that, between its reads and its commit, lets another
/// gateway create a ticket at `created_ms` (committed); returns the raise's
/// outcome.
async fn raise_racing_a_create(
    mm: &Mm,
    n: u64,
    created_ms: u64,
) -> Result<Option<u64>, TxError<MatchmakerError>> {
    let p = duel_eu_mid();
    let options = TransactOptions {
        retry_limit: Some(1),
        durability: Durability::Relaxed,
        ..TransactOptions::default()
    };
    let pool = mm.pool_name().clone();
    mm.store()
        .transact(options, |tx| {
            let (mm, pool, p) = (mm.clone(), pool.clone(), p.clone());
            async move {
                let raised = raise_in(&tx, &pool, &p, 9_000).await?;
                create_at(&mm, n, created_ms)
                    .await
                    .expect("the other gateway's create");
                Ok(raised)
            }
        })
        .await
}

fn conflicted<T>(r: &Result<T, TxError<MatchmakerError>>) -> bool {
    matches!(r, Err(TxError::Store(StoreError::RetryLimitReached { last, .. })) if matches!(**last, StoreError::Conflict))
}

#[tokio::test]
async fn a_raise_that_races_a_create_below_its_new_floor_changes_nothing() -> anyhow::Result<()> {
    // Exact conflicts: a store that never injects faults (a spurious conflict
    // would make the "must conflict" cases pass for the wrong reason).
    let dir = tempfile::tempdir()?;
    let store = EmbeddedStore::open(EmbeddedConfig {
        persist: PersistMode::Buffered,
        ..EmbeddedConfig::new(dir.path())
    })
    .await?;
    let mm = Matchmaker::new(store, "eu", super::store_tests::config())?;
    let p = duel_eu_mid();
    let gone = create_at(&mm, 1, 1_000).await?;
    create_at(&mm, 2, 3_000).await?;
    mm.cancel_ticket(gone).await?;
    assert_eq!(mm.partition_floor(&p).await?, 0);

    // Created inside [floor, first waiting key]: the raise read that range.
    let r = raise_racing_a_create(&mm, 3, 2_000).await;
    assert!(conflicted(&r), "the raise must conflict: {r:?}");
    assert_eq!(mm.partition_floor(&p).await?, 0, "unchanged");
    assert_eq!(mm.raise_floor(&p, 9_000).await?, Some(2_000));

    // Created below the floor the raise read: the create wrote the floor.
    let gone = mm.load_partition(&p, None).await?[0].id;
    mm.cancel_ticket(gone).await?;
    let r = raise_racing_a_create(&mm, 4, 1_500).await;
    assert!(conflicted(&r), "the raise must conflict: {r:?}");
    assert_eq!(
        mm.partition_floor(&p).await?,
        1_500,
        "the create's lowering stands"
    );

    // Created above the first waiting key: nothing to conflict with.
    let gone = mm.load_partition(&p, None).await?[0].id;
    mm.cancel_ticket(gone).await?;
    assert_eq!(raise_racing_a_create(&mm, 5, 4_000).await?, Some(3_000));
    let created: Vec<u64> = mm
        .load_partition(&p, None)
        .await?
        .iter()
        .map(|t| t.created_ms)
        .collect();
    assert_eq!(created, vec![3_000, 4_000]);
    assert_floor_holds(&mm).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_skewed_creates_cancels_and_workers_no_waiting_ticket_is_below_its_floor() -> anyhow::Result<()>
{
    let (_dir, mm) = open().await?;
    let mut stops = Vec::new();
    let mut workers = Vec::new();
    for i in 0..2 {
        let w = Worker::new(mm.clone(), worker_cfg(&format!("w{i}")), allocator())?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        workers.push(tokio::spawn(w.run(async move {
            let _ = stopped.await;
        })));
    }
    let mut creators = Vec::new();
    for task in 0..3u64 {
        let mm = mm.clone();
        creators.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(task);
            let mut mine = Vec::new();
            for i in 0..120u64 {
                // Gateways whose clocks trail the workers' by up to 2 s.
                let at = store::now_ms() - rng.gen_range(0..2_000);
                let rating = rng.gen_range(500.0..2500.0);
                let req = request(vec![player(task * 1_000 + i)], "duel", rating, "eu");
                mine.push(mm.create_ticket_at(req, at).await?);
                if rng.gen_bool(0.2) {
                    match mm.cancel_ticket(mine[rng.gen_range(0..mine.len())]).await {
                        Ok(_) | Err(MatchmakerError::AlreadyMatched { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            }
            anyhow::Ok(())
        }));
    }
    for c in creators {
        c.await??;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for s in stops {
        let _ = s.send(());
    }
    for w in workers {
        w.await?;
    }
    let raised = assert_floor_holds(&mm).await?;
    assert!(
        raised >= 3,
        "the workers raised the floors of the busy partitions ({raised})"
    );
    Ok(())
}

//! Adversarial stress of the partition floor ([`super::floor`]): creates with
//! creation times drawn from a narrow window (many share a millisecond, many
//! fall below the floor, the list fills and the floor is lowered), cancels, and
//! raises whose `now` is drawn from the same window (often behind the floor),
//! all concurrent; a checker reads the floor and the whole index in one
//! snapshot, again and again, and checks the invariant and what a round's
//! first page would load at that very version.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::floor;
use super::store_tests::{open, player, request, Mm};
use super::*;
use crate::store::{Store, Transaction, TxError};

const BASE: u64 = 1_000_000;

/// In one snapshot: the floor, every waiting key of `p` from its first key,
/// and what `first_page` would return (the listed keys and the index from
/// the floor on). Panics if a waiting ticket below the floor is unlisted or
/// the first page differs from the full scan.
async fn check_snapshot(mm: &Mm, p: &Partition) -> anyhow::Result<(u64, usize)> {
    let pool = mm.pool_name().clone();
    let (floor, all, listed, page) = mm
        .store()
        .run(|tx| {
            let (pool, p) = (pool.clone(), p.clone());
            async move {
                let f = floor::read(&tx, &pool, &p, true).await?;
                let sub = keys::partition(&pool, &p);
                let (b, e) = sub.range();
                let all = tx.get_range_snapshot(&b, &e, None, false).await?;
                let listed = floor::read_listed(&tx, &pool, &p, &f, None).await?;
                let page = tx
                    .get_range_snapshot(&sub.pack(&(f.created_ms,)), &e, None, false)
                    .await?;
                Ok::<_, TxError<MatchmakerError>>((f, all, listed, page))
            }
        })
        .await?;
    let names: BTreeSet<TicketId> = floor.below.iter().map(|b| b.ticket).collect();
    let mut full = BTreeSet::new();
    for kv in &all {
        let t: Ticket = keys::decode(&kv.value).map_err(anyhow::Error::msg)?;
        assert!(
            t.created_ms >= floor.created_ms || names.contains(&t.id),
            "ticket {} created at {} below the floor {} unlisted ({:?})",
            t.id,
            t.created_ms,
            floor.created_ms,
            floor.below
        );
        full.insert(kv.key.clone());
    }
    let mut loaded: Vec<Vec<u8>> = listed
        .iter()
        .map(|(_, kv)| kv)
        .chain(page.iter())
        .map(|kv| kv.key.clone())
        .collect();
    let n = loaded.len();
    loaded.sort();
    loaded.dedup();
    assert_eq!(loaded.len(), n, "a key loaded twice");
    assert_eq!(
        loaded.into_iter().collect::<BTreeSet<_>>(),
        full,
        "first page != index"
    );
    Ok((floor.created_ms, full.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_cancels_and_raises_in_a_narrow_time_window_keep_the_floor() -> anyhow::Result<()>
{
    // Waiting tickets pile up past the list: limited raises, full lists.
    stress(usize::MAX).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_with_few_enough_waiting_that_raises_list_them_all() -> anyhow::Result<()> {
    stress(20).await
}

/// The race, with at most about `cap` tickets waiting.
async fn stress(cap: usize) -> anyhow::Result<()> {
    let (_dir, mm) = open().await?;
    let rating = 1500.0;
    let band = mm.config().queue("duel").expect("duel").band_of(rating) as u32;
    let p = Partition {
        queue: "duel".into(),
        region: "eu".into(),
        band,
    };
    let made: Arc<Mutex<Vec<TicketId>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A virtual clock the creators move on; creates and raises straddle it.
    let clock = Arc::new(std::sync::atomic::AtomicU64::new(BASE));
    let mut creators = Vec::new();
    for task in 0..3u64 {
        let (mm, made, clock) = (mm.clone(), made.clone(), clock.clone());
        creators.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(task);
            for i in 0..400u64 {
                let t = clock
                    .fetch_max(BASE + 2 * i, std::sync::atomic::Ordering::Relaxed)
                    .max(BASE + 2 * i);
                let at = t - rng.gen_range(0..40);
                let req = request(vec![player(task * 10_000 + i)], "duel", rating, "eu");
                let id = mm.create_ticket_at(req, at).await?;
                made.lock().unwrap().push(id);
                if rng.gen_bool(0.9) || made.lock().unwrap().len() > cap {
                    let victim = {
                        let mut m = made.lock().unwrap();
                        let k = rng.gen_range(0..m.len());
                        m.swap_remove(k)
                    };
                    mm.cancel_ticket(victim).await?;
                }
                if i % 4 == 0 {
                    // Lets the raisers and the checker run between creates.
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
            anyhow::Ok(())
        }));
    }
    let mut side = Vec::new();
    for task in 0..2u64 {
        let (mm, p, done, clock) = (mm.clone(), p.clone(), done.clone(), clock.clone());
        side.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(100 + task);
            let (mut raised, mut failed, mut tries) = (0u32, 0u32, 0u32);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                tries += 1;
                let now = clock.load(std::sync::atomic::Ordering::Relaxed) + rng.gen_range(0..40) - 20;
                match mm.raise_floor(&p, now).await {
                    Ok(Some(_)) => raised += 1,
                    Ok(None) => {}
                    Err(_) => failed += 1,
                }
                tokio::task::yield_now().await;
            }
            eprintln!("raiser {task}: {tries} tries, {raised} moved, {failed} failed");
            anyhow::Ok(raised)
        }));
    }
    let checker = {
        let (mm, p, done) = (mm.clone(), p.clone(), done.clone());
        tokio::spawn(async move {
            let mut checks = 0u32;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                check_snapshot(&mm, &p).await?;
                checks += 1;
                tokio::task::yield_now().await;
            }
            anyhow::Ok(checks)
        })
    };
    for c in creators {
        c.await??;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut raised = 0;
    for s in side {
        raised += s.await??;
    }
    let checks = checker.await??;
    let (floor_ms, waiting) = check_snapshot(&mm, &p).await?;
    eprintln!("raises that moved the floor: {raised}, snapshot checks: {checks}, floor {floor_ms}, waiting {waiting}");
    assert!(
        raised > 10 && checks > 10,
        "the race ran ({raised} raises, {checks} checks)"
    );
    Ok(())
}

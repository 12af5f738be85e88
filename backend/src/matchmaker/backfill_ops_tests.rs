//! Backfill operations against the real embedded store: retention of finished
//! requests through the region's sweep, and the `leaving` list (validated at
//! request time, applied to the match record's roster by the fill).

use super::backfill_tests::{make_matches, open, player, squad_req, start, stop, Mm};
use super::*;
use crate::error_class::Classify;
use crate::liveness::{Liveness, SweepConfig, Sweeper};
use crate::presence::Presence;
use crate::store::Store;
use crate::time::now_ms;

fn req(match_id: MatchId, slots: Vec<u32>, ttl_ms: u64, leaving: Vec<String>) -> BackfillRequest {
    BackfillRequest {
        match_id,
        slots,
        ttl_ms,
        leaving,
    }
}

/// Fills `b` with one fresh ticket per seat near its rating, committed under a
/// lease taken for the test (no worker runs); returns the next player number.
async fn fill(mm: &Mm, b: &BackfillRecord, mut next: u64) -> anyhow::Result<u64> {
    let p = Partition {
        queue: "squad".into(),
        region: "eu".into(),
        band: b.band,
    };
    let seats: u32 = b.request.slots.iter().sum();
    for _ in 0..seats {
        mm.create_ticket(squad_req(next, b.request.rating)).await?;
        next += 1;
    }
    let lease = mm
        .try_acquire(&p, "ops-test", 60_000, now_ms())
        .await?
        .expect("lease");
    let mut core = MatchCore::new(mm.config())?;
    for t in mm.load_partition(&p, None).await? {
        core.insert(t)?;
    }
    let fills = core.run_backfills(now_ms(), std::slice::from_ref(&b.request));
    anyhow::ensure!(fills.len() == 1, "the core fills the request: {fills:?}");
    let out = mm.commit_backfill(&lease, &fills[0], rand::random()).await?;
    anyhow::ensure!(
        matches!(
            out,
            BackfillOutcome::Committed | BackfillOutcome::AlreadyCommitted
        ),
        "{out:?}"
    );
    mm.release(&lease).await?;
    Ok(next)
}

#[tokio::test]
async fn finished_backfills_past_retention_are_deleted_and_open_ones_never() -> anyhow::Result<()> {
    let (_dir, mm) = open().await?;
    let workers = start(&mm, &["w0"])?;
    let (matches, next) = make_matches(&mm, 1).await?;
    stop(workers).await?;
    let m = matches[0];
    let started = now_ms();
    // One of each final state, and one that stays open.
    let cancelled = mm.create_backfill(req(m, vec![1, 0], 60_000, vec![])).await?;
    let expired = mm
        .create_backfill(req(m, vec![1, 0], backfill::MIN_TTL_MS, vec![]))
        .await?;
    let filled = mm.create_backfill(req(m, vec![0, 1], 60_000, vec![])).await?;
    let open_one = mm
        .create_backfill(req(m, vec![1, 1], backfill::MAX_TTL_MS, vec![]))
        .await?;
    mm.cancel_backfill(cancelled.request.id).await?;
    fill(&mm, &filled, next).await?;
    // A load at a later time closes the short-lived request as expired (and
    // only it: the open one lives for 10 minutes).
    let p = Partition {
        queue: "squad".into(),
        region: "eu".into(),
        band: open_one.band,
    };
    let still_open = mm.load_backfills(&p, now_ms() + 5_000).await?;
    assert_eq!(
        still_open.iter().map(|b| b.id).collect::<Vec<_>>(),
        vec![open_one.request.id]
    );
    let state = |id| {
        let mm = mm.clone();
        async move { anyhow::Ok(mm.backfill(id).await?.map(|r| r.state)) }
    };
    assert_eq!(state(cancelled.request.id).await?, Some(BackfillState::Cancelled));
    assert_eq!(state(expired.request.id).await?, Some(BackfillState::Expired));
    assert_eq!(state(filled.request.id).await?, Some(BackfillState::Filled));
    // A stray finished-index entry naming the open request (as if a bug wrote
    // one): retention must still keep the open record.
    let pool = crate::keyspace::RegionName::new("eu")?;
    let stray = keys::backfill_finished(&pool, 0, open_one.request.id);
    mm.store()
        .run(|tx| {
            let stray = stray.clone();
            async move {
                crate::store::Transaction::set(&tx, &stray, &[1])?;
                Ok::<_, crate::store::TxError<MatchmakerError>>(())
            }
        })
        .await?;

    let store = mm.store().clone();
    let sweeper = Sweeper::new(
        Liveness::new(store.clone(), "eu")?,
        mm.clone(),
        Presence::new(store.clone()),
        "s",
        SweepConfig {
            batch: 2,
            finished_retention_ms: 0,
            backfill_retention_ms: 60_000,
            ..SweepConfig::default()
        },
    )?;
    // Within retention (every request finished after `started`): nothing goes
    // but the stray entry (finish time 0), whose open record stays.
    let r = sweeper.sweep_once(started + 60_000 - 1).await?;
    assert!(r.leader);
    assert_eq!(r.backfills_collected, 0);
    assert_eq!(state(open_one.request.id).await?, Some(BackfillState::Open));
    assert_eq!(state(cancelled.request.id).await?, Some(BackfillState::Cancelled));
    // One bounded page directly: at most `batch` records, more to come.
    let page = mm.collect_finished_backfills(now_ms(), 1).await?;
    assert_eq!((page.collected, page.done), (1, false));
    // Past retention: the sweep deletes the two other finished records (one
    // page of 2, then an empty one), never the open request.
    let r = sweeper.sweep_once(now_ms() + 60_000).await?;
    assert_eq!(r.backfills_collected, 2);
    for b in [&cancelled, &expired, &filled] {
        assert_eq!(state(b.request.id).await?, None, "{} deleted", b.request.id);
    }
    assert_eq!(state(open_one.request.id).await?, Some(BackfillState::Open));
    assert_eq!(
        mm.load_backfills(&p, now_ms()).await?.len(),
        1,
        "the open request is still served"
    );
    // It finishes later and is then collected like the others.
    mm.cancel_backfill(open_one.request.id).await?;
    let page = mm.collect_finished_backfills(now_ms() + 1, 10).await?;
    assert_eq!((page.collected, page.done), (1, true));
    assert_eq!(state(open_one.request.id).await?, None);
    Ok(())
}

#[tokio::test]
async fn a_fill_takes_the_leaving_players_off_the_match_record() -> anyhow::Result<()> {
    let (_dir, mm) = open().await?;
    let workers = start(&mm, &["w0"])?;
    let (matches, next) = make_matches(&mm, 1).await?;
    stop(workers).await?;
    let before = mm.get_match(matches[0]).await?.expect("match");
    let gone = before.teams[1].players[0].clone();
    let b = mm
        .create_backfill(req(before.id, vec![0, 1], 60_000, vec![gone.clone()]))
        .await?;
    assert_eq!(b.leaving, vec![gone.clone()]);
    assert_eq!(
        mm.get_match(before.id).await?.expect("match"),
        before,
        "the roster changes with the fill, not the request"
    );
    let first_new = next;
    fill(&mm, &b, next).await?;
    let after = mm.get_match(before.id).await?.expect("match");
    assert_eq!(after.team_of(&gone), None, "the leaver is off the teams");
    assert_eq!(after.left, vec![gone.clone()]);
    assert_eq!(
        after.team_of(&player(first_new)),
        Some(1),
        "the replacement joined team 1"
    );
    assert_eq!(after.players().count(), before.players().count());
    assert_eq!(after.teams[0], before.teams[0], "the other team is untouched");
    Ok(())
}

#[tokio::test]
async fn hostile_leaving_lists_get_invalid_leaving() -> anyhow::Result<()> {
    let (_dir, mm) = open().await?;
    let workers = start(&mm, &["w0"])?;
    let (matches, _) = make_matches(&mm, 1).await?;
    stop(workers).await?;
    let m = mm.get_match(matches[0]).await?.expect("match");
    let member = m.teams[0].players[0].clone();
    let too_many: Vec<String> = (0..=backfill::MAX_LEAVING as u64)
        .map(|i| player(10_000 + i))
        .collect();
    for leaving in [
        vec![player(999_999)],
        vec!["not a player id \u{0}\u{202e}".to_string()],
        vec![member.clone(), member.clone()],
        too_many,
    ] {
        match mm.create_backfill(req(m.id, vec![1, 0], 60_000, leaving)).await {
            Err(BackfillError::InvalidLeaving(msg)) => {
                assert!(
                    !msg.contains('\u{202e}'),
                    "the caller's text is not echoed: {msg}"
                );
            }
            other => panic!("expected InvalidLeaving, got {other:?}"),
        }
    }
    assert_eq!(
        BackfillError::InvalidLeaving(String::new()).class(),
        crate::error_class::ErrorClass::Invalid
    );
    // Nothing was stored by the refused requests; a valid list is accepted.
    assert_eq!(mm.open_backfills().await?, 0);
    mm.create_backfill(req(m.id, vec![1, 0], 60_000, vec![member]))
        .await?;
    assert_eq!(mm.open_backfills().await?, 1);
    Ok(())
}

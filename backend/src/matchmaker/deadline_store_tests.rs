//! Bounded wait in the store path, on the real embedded store: four workers
//! give every ticket that reaches its deadline exactly one outcome (and its
//! player one `timed_out` entry change to push), and a match commit or a
//! cancel racing an expiry: exactly one wins.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::store_tests::snapshot_range;
use super::*;
use crate::store::embedded::{EmbeddedStore, PersistMode};

type Mm = Matchmaker<EmbeddedStore>;

const DEADLINE_MS: u64 = 300;

fn player(n: u64) -> String {
    format!("{n:032x}")
}

async fn open() -> anyhow::Result<(tempfile::TempDir, Mm)> {
    let dir = tempfile::tempdir()?;
    let mut cfg = crate::store::testing::config(dir.path());
    cfg.persist = PersistMode::Buffered;
    let store = EmbeddedStore::open(cfg).await?;
    let config = MatchmakerConfig {
        regions: vec![RegionConfig {
            name: "eu".into(),
            neighbours: vec![],
        }],
        queues: vec![QueueConfig {
            name: "duel".into(),
            teams: 2,
            team_size: 1,
            expansions: vec![ExpansionStep {
                after_ms: 0,
                max_skill_diff: 10.0,
            }],
            uncertainty_widening: 0.0,
            cross_region: None,
            skill_bands: vec![1000.0],
            band_borrow_after_ms: None,
            deadline_ms: Some(DEADLINE_MS),
            target_wait: None,
        }],
    };
    Ok((dir, Matchmaker::new(store, "eu", config)?))
}

fn request(p: String, rating: f64) -> TicketRequest {
    TicketRequest {
        players: vec![p],
        queue: "duel".into(),
        skill: Skill {
            rating,
            uncertainty: 0.0,
        },
        home_region: "eu".into(),
        latencies: vec![],
        max_latency_ms: None,
    }
}

/// Finished-index keys per ticket: a ticket that reached a final state twice
/// would have two.
async fn finished_keys(mm: &Mm) -> anyhow::Result<HashMap<TicketId, usize>> {
    let (b, e) = keys::finished_all(mm.pool_name()).range();
    let kvs = snapshot_range(mm, &b, &e).await?;
    let mut out = HashMap::new();
    for kv in kvs {
        let (_, id): (u64, u64) = keys::finished_all(mm.pool_name())
            .unpack(&kv.key)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        *out.entry(TicketId(id)).or_default() += 1;
    }
    Ok(out)
}

/// Follows `player`'s entry like the gateway's push loop (a watch per
/// change) until it is final; 1 if it ended `timed_out` (what the gateway
/// pushes as `MatchNotFound`), else 0.
async fn count_pushes(mm: Mm, player: String) -> anyhow::Result<usize> {
    loop {
        let (status, watch) = mm.watch_player(&player).await?;
        if let Some(s) = status {
            match s.state {
                TicketState::TimedOut { reason } => {
                    assert_eq!(reason, NoMatchReason::Deadline);
                    return Ok(1);
                }
                TicketState::Waiting => {}
                _ => return Ok(0),
            }
        }
        tokio::time::timeout(Duration::from_secs(30), watch).await??;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_give_every_ticket_at_its_deadline_exactly_one_outcome() -> anyhow::Result<()> {
    let (_dir, mm) = open().await?;
    // 24 lonely tickets (ratings 100 apart, window 10: never matched) in both
    // bands, and 6 pairs that match at once.
    let mut lonely = Vec::new();
    let mut watchers = Vec::new();
    for i in 0..24u64 {
        let p = player(i);
        lonely.push(mm.create_ticket(request(p.clone(), i as f64 * 100.0)).await?);
        watchers.push(tokio::spawn(count_pushes(mm.clone(), p)));
    }
    let mut paired = Vec::new();
    for i in 0..12u64 {
        paired.push(
            mm.create_ticket(request(player(100 + i), 5_000.0 + (i / 2) as f64 * 100.0))
                .await?,
        );
    }
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    let mut stats = Vec::new();
    for i in 0..4 {
        let cfg = WorkerConfig {
            owner: format!("w{i}"),
            lease_ttl_ms: 600,
            heartbeat_ms: 150,
            round_interval_ms: 20,
            commit_concurrency: 4,
        };
        let w = Worker::new(
            mm.clone(),
            cfg,
            Arc::new(StaticAllocator::new([(
                "eu".to_string(),
                vec!["eu-1:7777".to_string()],
            )])),
        )?;
        stats.push(w.stats());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        tasks.push(tokio::spawn(w.run(async move {
            let _ = stopped.await;
        })));
    }
    let start = Instant::now();
    while mm.depth("duel", "eu").await? > 0 && start.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for s in stops {
        let _ = s.send(());
    }
    for t in tasks {
        t.await?;
    }
    assert_eq!(mm.depth("duel", "eu").await?, 0, "every ticket has an outcome");
    for id in &lonely {
        let (_, state) = mm.ticket(*id).await?.expect("ticket");
        assert_eq!(
            state,
            TicketState::TimedOut {
                reason: NoMatchReason::Deadline
            }
        );
    }
    for id in &paired {
        let (_, state) = mm.ticket(*id).await?.expect("ticket");
        assert!(matches!(state, TicketState::Matched { .. }), "{id}: {state:?}");
    }
    // Exactly once: one final-state write per ticket, and the workers
    // together counted one expiry per lonely ticket.
    let fin = finished_keys(&mm).await?;
    for id in lonely.iter().chain(&paired) {
        assert_eq!(fin.get(id), Some(&1), "ticket {id}");
    }
    let expired: u64 = stats.iter().map(|s| s.lock().unwrap().timed_out).sum();
    assert_eq!(expired, lonely.len() as u64);
    for w in watchers {
        assert_eq!(w.await??, 1, "one timed_out push per player");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_or_cancel_racing_the_deadline_exactly_one_wins() -> anyhow::Result<()> {
    let (_dir, mm) = open().await?;
    let p = Partition {
        queue: "duel".into(),
        region: "eu".into(),
        band: 1,
    };
    let lease = mm
        .try_acquire(&p, "w", 60_000, store::now_ms())
        .await?
        .expect("free");
    let timed_out = TicketState::TimedOut {
        reason: NoMatchReason::Deadline,
    };
    let (mut commits, mut expiries, mut cancels) = (0, 0, 0);
    for i in 0..40u64 {
        let a = mm.create_ticket(request(player(2 * i), 1_500.0)).await?;
        let b = mm.create_ticket(request(player(2 * i + 1), 1_500.0)).await?;
        if i % 2 == 0 {
            let mut core = MatchCore::new(mm.config())?;
            for t in mm.load_partition(&p, None).await? {
                core.insert(t)?;
            }
            let mut m = core.run_round(store::now_ms()).pop().expect("a match");
            m.id = MatchId(rand::random());
            // Either side polled first, so each gets to win.
            let (commit, expire) = (
                mm.commit_match(&lease, &m),
                mm.expire_ticket(&lease, a, NoMatchReason::Deadline),
            );
            let (c, e) = if i % 4 == 0 {
                tokio::join!(commit, expire)
            } else {
                let (e, c) = tokio::join!(expire, commit);
                (c, e)
            };
            let (sa, sb) = (mm.ticket(a).await?.unwrap().1, mm.ticket(b).await?.unwrap().1);
            match (c, e) {
                // `Already*`: the winner's first attempt applied and reported
                // an unknown result (the CI fault mode); its rerun says so.
                (
                    Ok(CommitOutcome::Committed | CommitOutcome::AlreadyCommitted),
                    Err(CommitError::TicketUnavailable(t)),
                ) => {
                    assert_eq!(t, a);
                    assert_eq!((sa, sb), (TicketState::Matched { match_id: m.id }, sa));
                    commits += 1;
                }
                (
                    Err(CommitError::TicketUnavailable(_)),
                    Ok(ExpireOutcome::Expired | ExpireOutcome::AlreadyExpired),
                ) => {
                    assert_eq!((sa, sb), (timed_out, TicketState::Waiting));
                    mm.cancel_ticket(b).await?;
                    expiries += 1;
                }
                other => panic!("not exactly one winner: {other:?}"),
            }
        } else {
            let (cancel, expire) = (
                mm.cancel_ticket(a),
                mm.expire_ticket(&lease, a, NoMatchReason::Deadline),
            );
            let (c, e) = if i % 4 == 1 {
                tokio::join!(cancel, expire)
            } else {
                let (e, c) = tokio::join!(expire, cancel);
                (c, e)
            };
            let sa = mm.ticket(a).await?.unwrap().1;
            match (c?, e) {
                (TicketState::Cancelled, Err(CommitError::TicketUnavailable(_))) => {
                    assert_eq!(sa, TicketState::Cancelled);
                    cancels += 1;
                }
                (s, Ok(ExpireOutcome::Expired | ExpireOutcome::AlreadyExpired)) => {
                    assert_eq!(
                        (s, sa),
                        (timed_out, timed_out),
                        "cancel reports the outcome that won"
                    );
                    expiries += 1;
                }
                other => panic!("not exactly one winner: {other:?}"),
            }
            mm.cancel_ticket(b).await?;
        }
        // A rerun of the expiry that won reports it, and changes nothing.
        if mm.ticket(a).await?.unwrap().1 == timed_out {
            assert_eq!(
                mm.expire_ticket(&lease, a, NoMatchReason::Deadline).await?,
                ExpireOutcome::AlreadyExpired
            );
        }
    }
    let fin = finished_keys(&mm).await?;
    assert!(fin.values().all(|&n| n == 1), "one final state per ticket");
    assert_eq!(fin.len(), 80);
    eprintln!("commit won {commits}, expiry won {expiries}, cancel won {cancels}");
    assert!(
        commits > 0 && cancels > 0 && expiries > 0,
        "every side won some races"
    );
    Ok(())
}

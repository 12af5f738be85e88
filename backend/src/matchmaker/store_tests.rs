//! Store-backed matchmaker tests against the real embedded store in a
//! temporary directory: ticket life cycle, watches, leases and fencing, four
//! workers under ticket churn, and a worker killed mid-round.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::store::embedded::{EmbeddedStore, PersistMode};
use crate::store::{Store, Transaction, TxError};

pub(super) type Mm = Matchmaker<EmbeddedStore>;

pub(super) fn player(n: u64) -> String {
    format!("{n:032x}")
}

fn step(after_ms: u64, max_skill_diff: f64) -> ExpansionStep {
    ExpansionStep {
        after_ms,
        max_skill_diff,
    }
}

pub(super) fn config() -> MatchmakerConfig {
    let queue = |name: &str, team_size| QueueConfig {
        name: name.into(),
        teams: 2,
        team_size,
        expansions: vec![step(0, 150.0), step(300, 3000.0)],
        uncertainty_widening: 0.0,
        cross_region: Some(CrossRegionConfig {
            after_ms: 300,
            max_latency_ms: 60,
        }),
        skill_bands: vec![1000.0, 2000.0],
        band_borrow_after_ms: None,
        deadline_ms: None,
        target_wait: None,
    };
    MatchmakerConfig {
        regions: vec![
            RegionConfig {
                name: "eu".into(),
                neighbours: vec!["us".into()],
            },
            RegionConfig {
                name: "us".into(),
                neighbours: vec!["eu".into()],
            },
        ],
        queues: vec![queue("duel", 1), queue("duo", 2)],
    }
}

pub(super) async fn open() -> anyhow::Result<(tempfile::TempDir, Mm)> {
    let dir = tempfile::tempdir()?;
    let mut cfg = crate::store::testing::config(dir.path());
    cfg.persist = PersistMode::Buffered;
    let store = EmbeddedStore::open(cfg).await?;
    Ok((dir, Matchmaker::new(store, "eu", config())?))
}

pub(super) fn request(players: Vec<String>, queue: &str, rating: f64, home: &str) -> TicketRequest {
    TicketRequest {
        players,
        queue: queue.into(),
        skill: Skill {
            rating,
            uncertainty: 50.0,
        },
        home_region: home.into(),
        latencies: vec![
            RegionLatency {
                region: "eu".into(),
                rtt_ms: 30,
            },
            RegionLatency {
                region: "us".into(),
                rtt_ms: 40,
            },
        ],
        max_latency_ms: None,
    }
}

pub(super) fn allocator() -> Arc<StaticAllocator> {
    Arc::new(StaticAllocator::new([
        (
            "eu".to_string(),
            vec!["eu-1:7777".to_string(), "eu-2:7777".to_string()],
        ),
        ("us".to_string(), vec!["us-1:7777".to_string()]),
    ]))
}

pub(super) fn worker_cfg(owner: &str) -> WorkerConfig {
    WorkerConfig {
        owner: owner.into(),
        lease_ttl_ms: 600,
        heartbeat_ms: 150,
        round_interval_ms: 20,
        commit_concurrency: 8,
    }
}

#[tokio::test]
async fn ticket_life_cycle_and_player_removal() -> anyhow::Result<()> {
    let (_dir, mm) = open().await?;
    let (a, b, c) = (player(1), player(2), player(3));
    let t = mm
        .create_ticket(request(vec![a.clone()], "duel", 1500.0, "eu"))
        .await?;
    let s = mm.ticket_status(&a).await?.expect("status");
    assert_eq!((s.ticket, s.state), (t, TicketState::Waiting));
    assert_eq!(mm.depth("duel", "eu").await?, 1);
    match mm
        .create_ticket(request(vec![a.clone()], "duo", 1500.0, "eu"))
        .await
    {
        Err(MatchmakerError::AlreadyQueued { ticket, .. }) => assert_eq!(ticket, t),
        other => panic!("expected AlreadyQueued, got {other:?}"),
    }
    assert_eq!(mm.cancel_ticket(t).await?, TicketState::Cancelled);
    assert_eq!(mm.cancel_ticket(t).await?, TicketState::Cancelled, "idempotent");
    assert_eq!(mm.ticket_status(&a).await?.unwrap().state, TicketState::Cancelled);
    assert_eq!(mm.depth("duel", "eu").await?, 0);

    // Disconnect past the resume window: the gateway removes the player's
    // waiting ticket — a party's whole ticket; the other member sees `removed`.
    let party = mm
        .create_ticket(request(vec![b.clone(), c.clone()], "duo", 1500.0, "eu"))
        .await?;
    assert_eq!(mm.remove_player_tickets(&b).await?, Some(party));
    assert_eq!(mm.ticket_status(&c).await?.unwrap().state, TicketState::Removed);
    assert_eq!(mm.ticket(party).await?.unwrap().1, TicketState::Removed);
    assert_eq!(mm.remove_player_tickets(&b).await?, None);
    assert_eq!(mm.remove_player_tickets(&player(99)).await?, None);
    assert!(mm
        .load_partition(
            &Partition {
                queue: "duo".into(),
                region: "eu".into(),
                band: 1
            },
            None
        )
        .await?
        .is_empty());
    assert_eq!(mm.depth("duo", "eu").await?, 0);

    // Input checks.
    assert!(matches!(
        mm.create_ticket(request(vec!["nope".into()], "duel", 1.0, "eu"))
            .await,
        Err(MatchmakerError::InvalidPlayerId(_))
    ));
    assert!(matches!(
        mm.create_ticket(request(vec![a.clone(), a.clone()], "duo", 1.0, "eu"))
            .await,
        Err(MatchmakerError::DuplicatePlayer(_))
    ));
    assert!(matches!(
        mm.create_ticket(request(vec![a.clone(), b.clone()], "duel", 1.0, "eu"))
            .await,
        Err(MatchmakerError::InvalidTicket(CoreError::PartySize { .. }))
    ));
    assert!(matches!(
        mm.create_ticket(request(vec![a.clone()], "duel", 1.0, "mars"))
            .await,
        Err(MatchmakerError::InvalidTicket(CoreError::UnknownRegion(_)))
    ));
    Ok(())
}

#[tokio::test]
async fn resumed_player_keeps_ticket_and_watch_delivers_the_match() -> anyhow::Result<()> {
    let (_dir, mm) = open().await?;
    let (a, b) = (player(10), player(11));
    let ta = mm
        .create_ticket(request(vec![a.clone()], "duel", 1500.0, "eu"))
        .await?;
    let mut w = Worker::new(mm.clone(), worker_cfg("w1"), allocator())?;
    w.maintain_leases(store::now_ms()).await?;
    assert_eq!(
        w.held().len(),
        mm.partitions().len(),
        "a lone worker takes every partition"
    );
    w.round(store::now_ms()).await?;
    // The session dropped and resumed: nothing was removed, the ticket waits on.
    // A second handle over the same store stands in for another gateway.
    let other = Matchmaker::new(mm.store().clone(), "eu", config())?;
    let (status, watch) = other.watch_player(&a).await?;
    assert_eq!(status.unwrap().state, TicketState::Waiting);
    let tb = mm
        .create_ticket(request(vec![b.clone()], "duel", 1510.0, "eu"))
        .await?;
    let report = w.round(store::now_ms()).await?;
    assert_eq!(report.committed, 1);
    tokio::time::timeout(Duration::from_secs(5), watch).await??;
    let st = other.ticket_status(&a).await?.unwrap();
    let m = st.assigned.expect("match in the status");
    assert_eq!(st.ticket, ta);
    assert!(matches!(st.state, TicketState::Matched { match_id } if match_id == m.id));
    assert_eq!(m.region, "eu");
    assert_eq!(m.teams.len(), 2);
    assert!(m.team_of(&a).is_some() && m.team_of(&b).is_some() && m.team_of(&a) != m.team_of(&b));
    assert!(m.server.as_ref().unwrap().address.starts_with("eu-"));
    assert_eq!(other.get_match(m.id).await?.as_ref(), Some(&m));
    assert_eq!(
        mm.ticket(tb).await?.unwrap().1,
        TicketState::Matched { match_id: m.id }
    );
    assert!(matches!(
        mm.cancel_ticket(tb).await,
        Err(MatchmakerError::AlreadyMatched { .. })
    ));
    assert_eq!(
        mm.remove_player_tickets(&b).await?,
        None,
        "a matched ticket is not removed"
    );
    let stats = w.stats().lock().unwrap().clone();
    assert_eq!(
        stats.matches.by_queue_region[&("duel".into(), "eu".into())].matches,
        1
    );
    Ok(())
}

#[tokio::test]
async fn a_stale_lease_cannot_commit() -> anyhow::Result<()> {
    let (_dir, mm) = open().await?;
    mm.create_ticket(request(vec![player(1)], "duel", 1500.0, "eu"))
        .await?;
    mm.create_ticket(request(vec![player(2)], "duel", 1500.0, "eu"))
        .await?;
    let p = Partition {
        queue: "duel".into(),
        region: "eu".into(),
        band: 1,
    };
    let t0 = store::now_ms();
    let old = mm.try_acquire(&p, "a", 500, t0).await?.expect("free");
    assert!(
        mm.try_acquire(&p, "b", 500, t0 + 1).await?.is_none(),
        "held, not expired"
    );
    // `a` stalls past its expiry; `b` takes the partition with a newer token.
    let new = mm.try_acquire(&p, "b", 500, t0 + 501).await?.expect("expired");
    assert_eq!(new.token, old.token + 1);
    let stale = Worker::new(mm.clone(), worker_cfg("a"), allocator())?;
    let r = stale.run_partition(&old, store::now_ms()).await?;
    assert!(r.lease_lost && r.committed == 0, "{r:?}");
    assert_eq!(
        mm.depth("duel", "eu").await?,
        2,
        "nothing written by the stale worker"
    );
    let mut renewed = old.clone();
    assert!(!mm.renew(&mut renewed, 500, t0 + 600).await?);
    let fresh = Worker::new(mm.clone(), worker_cfg("b"), allocator())?;
    assert_eq!(fresh.run_partition(&new, store::now_ms()).await?.committed, 1);
    // Release keeps the token growing.
    mm.release(&new).await?;
    let again = mm.try_acquire(&p, "a", 500, t0 + 700).await?.unwrap();
    assert_eq!(again.token, new.token + 1);
    Ok(())
}

/// Every pair of `[b, e)`, read as one snapshot.
pub(super) async fn snapshot_range(
    mm: &Mm,
    b: &[u8],
    e: &[u8],
) -> anyhow::Result<Vec<crate::store::KeyValue>> {
    let (b, e) = (b.to_vec(), e.to_vec());
    let kvs = mm
        .store()
        .run(|tx| {
            let (b, e) = (b.clone(), e.clone());
            async move { Ok::<_, TxError>(tx.get_range_snapshot(&b, &e, None, false).await?) }
        })
        .await?;
    Ok(kvs)
}

/// Reads every match record and checks: each ticket is in at most one match;
/// matched tickets are in exactly their recorded match; cancelled/removed and
/// waiting tickets in none; waiting tickets have their index key and the
/// depth counters add up. Returns (matched, cancelled, waiting).
async fn check_invariants(mm: &Mm, created: &[TicketId]) -> anyhow::Result<(usize, usize, usize)> {
    let (b, e) = keys::root(mm.pool_name()).subspace(&("m",)).range();
    let kvs = snapshot_range(mm, &b, &e).await?;
    let mut in_match: HashMap<TicketId, MatchId> = HashMap::new();
    for kv in kvs {
        let m: Match = keys::decode(&kv.value).map_err(anyhow::Error::msg)?;
        let mut players = HashSet::new();
        for t in &m.tickets {
            assert!(
                in_match.insert(t.id, m.id).is_none(),
                "ticket {} in two matches",
                t.id
            );
        }
        for team in &m.teams {
            assert_eq!(team.players.len(), if m.queue == "duel" { 1 } else { 2 });
            for p in &team.players {
                assert!(players.insert(p.clone()), "player twice in a match");
            }
        }
    }
    let (mut matched, mut cancelled, mut waiting) = (0, 0, 0);
    let mut depth: HashMap<(String, String), u64> = HashMap::new();
    for id in created {
        let (t, state) = mm
            .ticket(*id)
            .await?
            .unwrap_or_else(|| panic!("ticket {id} lost"));
        let part = Partition {
            queue: t.queue.clone(),
            region: t.home_region.clone(),
            band: mm.config().queue(&t.queue).unwrap().band_of(t.skill.rating) as u32,
        };
        let indexed = mm.load_partition(&part, None).await?.iter().any(|w| w.id == *id);
        match state {
            TicketState::Matched { match_id } => {
                matched += 1;
                assert_eq!(in_match.get(id), Some(&match_id), "ticket {id}");
                assert!(!indexed);
            }
            TicketState::Cancelled | TicketState::Removed | TicketState::TimedOut { .. } => {
                cancelled += 1;
                assert!(!in_match.contains_key(id), "cancelled ticket {id} in a match");
                assert!(!indexed);
            }
            TicketState::Waiting => {
                waiting += 1;
                assert!(!in_match.contains_key(id), "waiting ticket {id} in a match");
                assert!(indexed, "waiting ticket {id} missing from its partition");
                *depth.entry((t.queue, t.home_region)).or_default() += 1;
            }
        }
    }
    assert_eq!(
        in_match.len(),
        matched,
        "a match holds a ticket that was not created"
    );
    for q in ["duel", "duo"] {
        for r in ["eu", "us"] {
            let d = depth.get(&(q.to_string(), r.to_string())).copied().unwrap_or(0);
            assert_eq!(mm.depth(q, r).await?, d, "depth {q}/{r}");
        }
    }
    super::floor_tests::assert_floor_holds(mm).await?;
    Ok((matched, cancelled, waiting))
}

/// Creates tickets (solo and duo parties, random skill and home) from `tasks`
/// tasks while a canceller cancels some; returns every created ticket and the
/// ones whose cancel succeeded.
async fn churn(
    mm: &Mm,
    tasks: u64,
    per_task: u64,
    seed: u64,
) -> anyhow::Result<(Vec<TicketId>, HashSet<TicketId>)> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<TicketId>();
    let mut creators = Vec::new();
    for task in 0..tasks {
        let (mm, tx) = (mm.clone(), tx.clone());
        creators.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed + task);
            for i in 0..per_task {
                let base = (seed * 1_000 + task) * 100_000 + i * 2;
                let duo = rng.gen_bool(0.5);
                let players = if duo && rng.gen_bool(0.5) {
                    vec![player(base), player(base + 1)]
                } else {
                    vec![player(base)]
                };
                let home = if rng.gen_bool(0.7) { "eu" } else { "us" };
                let q = if duo { "duo" } else { "duel" };
                let id = mm
                    .create_ticket(request(players, q, rng.gen_range(500.0..2500.0), home))
                    .await?;
                tx.send(id)?;
                if i % 8 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            anyhow::Ok(())
        }));
    }
    drop(tx);
    let canceller = {
        let mm = mm.clone();
        tokio::spawn(async move {
            let (mut created, mut cancelled) = (Vec::new(), HashSet::new());
            let mut rng = StdRng::seed_from_u64(seed ^ 0xc0ffee);
            while let Some(id) = rx.recv().await {
                created.push(id);
                if rng.gen_bool(0.2) {
                    let victim = created[rng.gen_range(0..created.len())];
                    match mm.cancel_ticket(victim).await {
                        Ok(_) => {
                            cancelled.insert(victim);
                        }
                        Err(MatchmakerError::AlreadyMatched { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            anyhow::Ok((created, cancelled))
        })
    };
    for c in creators {
        c.await??;
    }
    canceller.await?
}

async fn wait_until_drained(mm: &Mm, max: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    let (mut last, mut since) = (u64::MAX, Instant::now());
    loop {
        let mut d = 0;
        for q in ["duel", "duo"] {
            for r in ["eu", "us"] {
                d += mm.depth(q, r).await?;
            }
        }
        if d != last {
            (last, since) = (d, Instant::now());
        }
        // Done when empty, or when the depth has not moved for a second (what
        // is left cannot fill a match; `check_invariants` bounds it).
        if d == 0 || since.elapsed() > Duration::from_secs(1) || start.elapsed() > max {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_under_churn_never_match_twice_or_lose_a_ticket() -> anyhow::Result<()> {
    let (_dir, mm) = open().await?;
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    let mut stats = Vec::new();
    for i in 0..4 {
        let w = Worker::new(mm.clone(), worker_cfg(&format!("w{i}")), allocator())?;
        stats.push(w.stats());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        tasks.push(tokio::spawn(w.run(async move {
            let _ = stopped.await;
        })));
    }
    let (created, cancelled) = churn(&mm, 3, 150, 1).await?;
    wait_until_drained(&mm, Duration::from_secs(20)).await?;
    // The four workers split the 12 partitions, 3 each (a worker that stalled
    // past its lease under load may briefly hold fewer: poll a little).
    let start = Instant::now();
    let held = loop {
        let held: Vec<usize> = stats.iter().map(|s| s.lock().unwrap().partitions_held).collect();
        if held.iter().all(|&h| h == 3) || start.elapsed() > Duration::from_secs(5) {
            break held;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(held, vec![3; 4], "fair share");
    for s in stops {
        let _ = s.send(());
    }
    for t in tasks {
        t.await?;
    }
    let (matched, cancelled_n, waiting) = check_invariants(&mm, &created).await?;
    assert_eq!(matched + cancelled_n + waiting, created.len());
    assert!(cancelled_n >= cancelled.len());
    assert_no_match_left(&mm, &created).await?;
    assert!(
        matched > created.len() / 2,
        "matched {matched} of {}",
        created.len()
    );
    let cross: u64 = stats
        .iter()
        .flat_map(|s| {
            s.lock()
                .unwrap()
                .matches
                .by_queue_region
                .values()
                .map(|q| q.cross_region_matches)
                .collect::<Vec<_>>()
        })
        .sum();
    eprintln!(
        "created {} matched {matched} cancelled {cancelled_n} waiting {waiting} cross-region matches {cross}",
        created.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_nothing_and_its_partitions_move_within_the_lease_time() -> anyhow::Result<()> {
    let (_dir, mm) = open().await?;
    // Load the pool first so the victim is busy committing when it dies.
    let (mut created, _) = churn(&mm, 2, 200, 2).await?;
    let victim = Worker::new(mm.clone(), worker_cfg("victim"), allocator())?;
    let vstats = victim.stats();
    let task = tokio::spawn(victim.run(std::future::pending()));
    let start = Instant::now();
    while vstats.lock().unwrap().matches.by_queue_region.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10), "victim never matched");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Mid-round: it has committed some matches of its first round.
    task.abort();
    let killed_at = Instant::now();
    let _ = task.await;
    assert!(vstats.lock().unwrap().partitions_held == mm.partitions().len());

    let heir = Worker::new(mm.clone(), worker_cfg("heir"), allocator())?;
    let hstats = heir.stats();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let htask = tokio::spawn(heir.run(async move {
        let _ = stopped.await;
    }));
    while hstats.lock().unwrap().partitions_held < mm.partitions().len() {
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "partitions never taken over"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let takeover = killed_at.elapsed();
    let cfg = worker_cfg("x");
    // The takeover rule itself (expired leases move, live ones do not) is
    // `crate::lease`'s unit test; here the bound only catches a takeover that
    // waits for something other than the lease. It is loose because this is a
    // wall-clock measurement on shared CI machines: 1.17-1.34 s against a
    // nominal 1.15 s was seen under a load average of 12-16.
    eprintln!("takeover after {takeover:?}");
    assert!(
        takeover <= 3 * Duration::from_millis(cfg.lease_ttl_ms + cfg.heartbeat_ms),
        "takeover took {takeover:?}"
    );
    // More tickets after the takeover, then drain.
    created.extend(churn(&mm, 1, 100, 3).await?.0);
    wait_until_drained(&mm, Duration::from_secs(20)).await?;
    let _ = stop.send(());
    htask.await?;
    let (matched, cancelled, waiting) = check_invariants(&mm, &created).await?;
    assert_eq!(matched + cancelled + waiting, created.len());
    assert_no_match_left(&mm, &created).await?;
    eprintln!("takeover after {takeover:?}; matched {matched} cancelled {cancelled} waiting {waiting}");
    Ok(())
}

/// What may legitimately stay waiting after a drain: tickets that cannot fill
/// a match with what they can reach. In [`config`] skill bands never meet (no
/// borrowing), every ticket reaches both regions and any skill gap inside a
/// band after 300 ms, and parties of one or two always pack into two teams
/// of one or two once there are enough players. So in each (queue, band) the
/// waiting players must be fewer than one match takes. (A count of leftovers
/// would be a guess: seven were legitimately left once, all of them alone in
/// their band or three singles short of a duo match.)
async fn assert_no_match_left(mm: &Mm, created: &[TicketId]) -> anyhow::Result<()> {
    let cfg = config();
    // (queue, band) → (players waiting, players a match takes).
    let mut players: HashMap<(String, usize), (usize, usize)> = HashMap::new();
    let mut left = Vec::new();
    for id in created {
        if let Some((t, TicketState::Waiting)) = mm.ticket(*id).await? {
            let q = cfg
                .queues
                .iter()
                .find(|q| q.name == t.queue)
                .expect("a configured queue");
            let needed = (q.teams * q.team_size) as usize;
            let key = (t.queue.clone(), q.band_of(t.skill.rating));
            players.entry(key).or_insert((0, needed)).0 += t.players.len();
            left.push((t.queue, t.home_region, t.skill.rating as i64, t.players.len()));
        }
    }
    for ((queue, band), (n, needed)) in &players {
        assert!(
            n < needed,
            "{n} players left waiting in {queue} band {band}, enough for a match of {needed}: {left:?}"
        );
    }
    Ok(())
}

/// A removal whose commit applied, then reported an unknown result (forced):
/// the rerun returns the ticket it removed, not `None`; another call after it
/// finds nothing to remove.
#[tokio::test]
async fn a_removal_rerun_after_it_applied_returns_the_ticket() -> anyhow::Result<()> {
    use crate::store::testing::{open_scripted_store, CommitFault};
    let dir = tempfile::tempdir()?;
    let store = open_scripted_store(dir.path()).await?;
    let mm = Matchmaker::new(store.clone(), "eu", config())?;
    let (b, c) = (player(2), player(3));
    let party = mm
        .create_ticket(request(vec![b.clone(), c.clone()], "duo", 1500.0, "eu"))
        .await?;
    assert!(store.script_commit_faults([CommitFault::UnknownApplied]));
    assert_eq!(mm.remove_player_tickets(&b).await?, Some(party));
    assert_eq!(store.fault_counts().unwrap().unknown_applied, 1);
    assert_eq!(mm.ticket(party).await?.unwrap().1, TicketState::Removed);
    assert_eq!(mm.depth("duo", "eu").await?, 0, "left the pool once");
    assert_eq!(mm.remove_player_tickets(&b).await?, None);
    assert_eq!(mm.remove_player_tickets(&c).await?, None, "another member's call");
    Ok(())
}

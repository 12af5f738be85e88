//! Backfill tests: the core serves requests before new matches (virtual
//! time), and against the real embedded store in a temporary directory every
//! request is filled exactly once under four concurrent workers, racing
//! commits, and a worker killed mid-round.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::store::embedded::{EmbeddedStore, PersistMode};

pub(super) type Mm = Matchmaker<EmbeddedStore>;

fn step(after_ms: u64, max_skill_diff: f64) -> ExpansionStep {
    ExpansionStep {
        after_ms,
        max_skill_diff,
    }
}

/// One region; `squad` is 2 teams of 2 in three skill bands (6 partitions
/// with `duel`, 2 teams of 1, one band).
fn config() -> MatchmakerConfig {
    let queue = |name: &str, team_size, bands: Vec<f64>| QueueConfig {
        name: name.into(),
        teams: 2,
        team_size,
        expansions: vec![step(0, 200.0)],
        uncertainty_widening: 0.0,
        cross_region: None,
        skill_bands: bands,
        band_borrow_after_ms: None,
        deadline_ms: None,
        target_wait: None,
    };
    MatchmakerConfig {
        regions: vec![RegionConfig {
            name: "eu".into(),
            neighbours: vec![],
        }],
        queues: vec![
            queue("squad", 2, vec![1000.0, 2000.0]),
            queue("duel", 1, vec![1000.0, 2000.0, 3000.0]),
        ],
    }
}

fn ticket(id: u64, party: usize, rating: f64, created_ms: u64) -> Ticket {
    Ticket {
        id: TicketId(id),
        players: (0..party).map(|i| format!("p{id}-{i}")).collect(),
        queue: "squad".into(),
        skill: Skill {
            rating,
            uncertainty: 0.0,
        },
        home_region: "eu".into(),
        latencies: vec![],
        max_latency_ms: None,
        created_ms,
    }
}

fn request(id: u64, rating: f64, slots: Vec<u32>, created_ms: u64) -> Backfill {
    Backfill {
        id: BackfillId(id),
        match_id: MatchId(1000 + id as u128),
        queue: "squad".into(),
        region: "eu".into(),
        rating,
        slots,
        created_ms,
    }
}

#[test]
fn backfill_is_served_before_new_matches() {
    let mut core = MatchCore::new(&config()).unwrap();
    // Four solos that would make a new 2v2 match on their own.
    for (i, r) in [1500.0, 1510.0, 1520.0, 1530.0].into_iter().enumerate() {
        core.insert(ticket(i as u64 + 1, 1, r, 0)).unwrap();
    }
    let b = request(7, 1512.0, vec![1, 1], 0);
    let (fills, matches) = core.run_round_with_backfills(100, std::slice::from_ref(&b));
    assert!(
        matches.is_empty(),
        "two tickets left cannot make a 2v2: {matches:?}"
    );
    assert_eq!(fills.len(), 1);
    let f = &fills[0];
    assert_eq!((f.backfill, f.match_id), (b.id, b.match_id));
    let mut teams: Vec<u32> = f.placed.iter().map(|p| p.team).collect();
    teams.sort();
    assert_eq!(teams, vec![0, 1], "one seat per team");
    let ids: HashSet<TicketId> = f.placed.iter().map(|p| p.ticket.id).collect();
    assert_eq!(
        ids,
        HashSet::from([TicketId(2), TicketId(3)]),
        "closest to 1512 first"
    );
    assert!(
        ids.iter().all(|id| !core.contains(*id)),
        "placed tickets left the pool"
    );
    assert_eq!(core.len(), 2);
    // The same request again finds nobody within the tickets' windows.
    core.insert(ticket(9, 1, 2900.0, 0)).unwrap();
    let far = request(8, 1000.0, vec![1, 0], 0);
    assert!(core.run_backfills(100, &[far]).is_empty());
}

#[test]
fn a_backfill_is_filled_whole_or_not_at_all_and_parties_stay_on_one_team() {
    let mut core = MatchCore::new(&config()).unwrap();
    core.insert(ticket(1, 2, 1500.0, 0)).unwrap();
    // Two seats on different teams: the duo fits neither, so nothing is placed.
    let split = request(1, 1500.0, vec![1, 1], 0);
    assert!(core.run_backfills(10, std::slice::from_ref(&split)).is_empty());
    assert!(core.contains(TicketId(1)));
    // Two seats on one team: the duo takes both.
    let whole = request(2, 1500.0, vec![0, 2], 5);
    let fills = core.run_backfills(10, &[whole, split]);
    assert_eq!(fills.len(), 1);
    assert_eq!(fills[0].placed.len(), 1);
    assert_eq!(fills[0].placed[0].team, 1);
    assert_eq!(fills[0].placed[0].players.len(), 2);
    // Malformed requests (wrong team count, no seat) are skipped.
    core.insert(ticket(3, 1, 1500.0, 0)).unwrap();
    assert!(core
        .run_backfills(
            10,
            &[request(3, 1500.0, vec![1], 0), request(4, 1500.0, vec![0, 0], 0)]
        )
        .is_empty());
    // The oldest request is served first.
    let (old, new) = (
        request(5, 1500.0, vec![1, 0], 1),
        request(6, 1500.0, vec![1, 0], 2),
    );
    let fills = core.run_backfills(10, &[new, old]);
    assert_eq!(
        fills.iter().map(|f| f.backfill).collect::<Vec<_>>(),
        vec![BackfillId(5)]
    );
}

// ---- store ---------------------------------------------------------------

pub(super) async fn open() -> anyhow::Result<(tempfile::TempDir, Mm)> {
    let dir = tempfile::tempdir()?;
    let mut cfg = crate::store::testing::config(dir.path());
    cfg.persist = PersistMode::Buffered;
    let store = EmbeddedStore::open(cfg).await?;
    Ok((dir, Matchmaker::new(store, "eu", config())?))
}

pub(super) fn player(n: u64) -> String {
    format!("{n:032x}")
}

pub(super) fn squad_req(p: u64, rating: f64) -> TicketRequest {
    TicketRequest {
        players: vec![player(p)],
        queue: "squad".into(),
        skill: Skill {
            rating,
            uncertainty: 0.0,
        },
        home_region: "eu".into(),
        latencies: vec![],
        max_latency_ms: None,
    }
}

fn allocator() -> Arc<StaticAllocator> {
    Arc::new(StaticAllocator::new([(
        "eu".to_string(),
        vec!["eu-1:7777".to_string()],
    )]))
}

fn worker_cfg(owner: &str) -> WorkerConfig {
    WorkerConfig {
        owner: owner.into(),
        lease_ttl_ms: 600,
        heartbeat_ms: 150,
        round_interval_ms: 20,
        commit_concurrency: 8,
    }
}

pub(super) struct Running {
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

pub(super) fn start(mm: &Mm, names: &[&str]) -> anyhow::Result<Running> {
    let mut r = Running {
        stops: Vec::new(),
        tasks: Vec::new(),
    };
    for n in names {
        let w = Worker::new(mm.clone(), worker_cfg(n), allocator())?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        r.stops.push(stop);
        r.tasks.push(tokio::spawn(w.run(async move {
            let _ = stopped.await;
        })));
    }
    Ok(r)
}

pub(super) async fn stop(r: Running) -> anyhow::Result<()> {
    for s in r.stops {
        let _ = s.send(());
    }
    for t in r.tasks {
        t.await?;
    }
    Ok(())
}

async fn matched(mm: &Mm, p: u64) -> anyhow::Result<Option<MatchId>> {
    Ok(match mm.ticket_status(&player(p)).await? {
        Some(PlayerTicket {
            state: TicketState::Matched { match_id },
            ..
        }) => Some(match_id),
        _ => None,
    })
}

/// `n` 2v2 matches at ratings away from the band edges, made by the running
/// workers; returns their ids and the next free player number.
pub(super) async fn make_matches(mm: &Mm, n: u64) -> anyhow::Result<(Vec<MatchId>, u64)> {
    let mut next = 1;
    let mut firsts = Vec::new();
    for i in 0..n {
        let rating = [500.0, 1500.0, 2500.0][i as usize % 3] + (i / 3) as f64 * 1.0;
        firsts.push(next);
        for _ in 0..4 {
            mm.create_ticket(squad_req(next, rating)).await?;
            next += 1;
        }
    }
    let start = Instant::now();
    let mut ids = Vec::new();
    for f in firsts {
        loop {
            if let Some(m) = matched(mm, f).await? {
                ids.push(m);
                break;
            }
            anyhow::ensure!(start.elapsed() < Duration::from_secs(20), "matches not made");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    ids.sort();
    ids.dedup();
    Ok((ids, next))
}

/// Waits until no request of `ids` is open.
async fn wait_closed(mm: &Mm, ids: &[BackfillId], max: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let mut open = 0;
        for id in ids {
            if mm.backfill(*id).await?.expect("stored").state == BackfillState::Open {
                open += 1;
            }
        }
        if open == 0 {
            return Ok(());
        }
        anyhow::ensure!(start.elapsed() < max, "{open} backfill requests still open");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Every request filled exactly once: its tickets fill its seats, are matched
/// into its match and appear in that match's record once; no ticket in two
/// requests; no player in two matches.
async fn check_filled_once(mm: &Mm, reqs: &[BackfillRecord], players: u64) -> anyhow::Result<()> {
    let mut seen_tickets = HashSet::new();
    for r in reqs {
        let rec = mm.backfill(r.request.id).await?.expect("stored");
        anyhow::ensure!(
            rec.state == BackfillState::Filled,
            "{} is {:?}",
            r.request.id,
            rec.state
        );
        let m = mm.get_match(rec.request.match_id).await?.expect("match");
        let mut seats = vec![0u32; m.teams.len()];
        for t in &rec.tickets {
            anyhow::ensure!(seen_tickets.insert(*t), "ticket {t} in two backfills");
            let (ticket, state) = mm.ticket(*t).await?.expect("ticket");
            anyhow::ensure!(state == TicketState::Matched { match_id: m.id });
            let team = m
                .teams
                .iter()
                .position(|tm| tm.tickets.contains(t))
                .expect("ticket on a team");
            seats[team] += ticket.players.len() as u32;
        }
        anyhow::ensure!(
            seats == rec.request.slots,
            "seats {seats:?} != {:?}",
            rec.request.slots
        );
    }
    // No player is in two matches, and every matched player's match lists them once.
    let mut in_match: HashMap<String, MatchId> = HashMap::new();
    for p in 1..players {
        if let Some(id) = matched(mm, p).await? {
            let m = mm.get_match(id).await?.expect("match");
            let n = m.players().filter(|x| *x == player(p)).count();
            anyhow::ensure!(n == 1, "player {p} appears {n} times in {id}");
            anyhow::ensure!(in_match.insert(player(p), id).is_none());
        }
    }
    Ok(())
}

async fn ask(mm: &Mm, ids: &[MatchId]) -> anyhow::Result<Vec<BackfillRecord>> {
    let mut reqs = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let slots = if i % 2 == 0 { vec![1, 1] } else { vec![2, 0] };
        reqs.push(
            mm.create_backfill(BackfillRequest {
                match_id: *id,
                slots,
                ttl_ms: 60_000,
                leaving: vec![],
            })
            .await?,
        );
    }
    Ok(reqs)
}

/// Three solo tickets near each request's rating (more than its seats).
async fn replacements(mm: &Mm, reqs: &[BackfillRecord], mut next: u64) -> anyhow::Result<u64> {
    for r in reqs {
        for k in 0..3 {
            mm.create_ticket(squad_req(next, r.request.rating + k as f64))
                .await?;
            next += 1;
        }
    }
    Ok(next)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_fill_every_backfill_exactly_once() -> anyhow::Result<()> {
    let (_dir, mm) = open().await?;
    let workers = start(&mm, &["w0", "w1", "w2", "w3"])?;
    let (matches, next) = make_matches(&mm, 9).await?;
    let reqs = ask(&mm, &matches).await?;
    let next = replacements(&mm, &reqs, next).await?;
    let ids: Vec<BackfillId> = reqs.iter().map(|r| r.request.id).collect();
    wait_closed(&mm, &ids, Duration::from_secs(20)).await?;
    stop(workers).await?;
    check_filled_once(&mm, &reqs, next).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_fill_commits_and_a_cancel_leave_exactly_one_winner() -> anyhow::Result<()> {
    let (_dir, mm) = open().await?;
    let workers = start(&mm, &["w0"])?;
    let (matches, mut next) = make_matches(&mm, 1).await?;
    stop(workers).await?;
    let req = ask(&mm, &matches).await?.remove(0);
    let p = Partition {
        queue: "squad".into(),
        region: "eu".into(),
        band: req.band,
    };
    let lease = mm
        .try_acquire(&p, "racer", 60_000, crate::time::now_ms())
        .await?
        .expect("lease");
    // Four racers, each with its own two replacement tickets for the same request.
    let mut fills = Vec::new();
    for _ in 0..4 {
        let mut core = MatchCore::new(mm.config())?;
        for _ in 0..2 {
            mm.create_ticket(squad_req(next, req.request.rating)).await?;
            next += 1;
        }
        for t in mm.load_partition(&p, None).await? {
            if mm
                .ticket_status(&t.players[0])
                .await?
                .is_some_and(|s| s.state == TicketState::Waiting)
                && fills
                    .iter()
                    .all(|f: &BackfillFill| f.placed.iter().all(|x| x.ticket.id != t.id))
            {
                core.insert(t)?;
            }
        }
        fills.extend(core.run_backfills(crate::time::now_ms(), std::slice::from_ref(&req.request)));
    }
    assert_eq!(fills.len(), 4);
    let outcomes = futures::future::join_all(
        fills
            .iter()
            .map(|f| mm.commit_backfill(&lease, f, rand::random())),
    )
    .await;
    // `AlreadyCommitted`: the winner's first attempt applied and reported an
    // unknown result (the CI fault mode); its rerun says so.
    let won = outcomes
        .iter()
        .filter(|o| {
            matches!(
                o,
                Ok(BackfillOutcome::Committed | BackfillOutcome::AlreadyCommitted)
            )
        })
        .count();
    assert_eq!(won, 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| matches!(
        o,
        Ok(BackfillOutcome::Committed | BackfillOutcome::AlreadyCommitted | BackfillOutcome::Gone)
    )));
    check_filled_once(&mm, std::slice::from_ref(&req), next).await?;
    // The losers' tickets still wait; a filled request cannot be cancelled.
    let m = mm.get_match(req.request.match_id).await?.expect("match");
    assert_eq!(m.players().count(), 6);
    assert!(matches!(
        mm.cancel_backfill(req.request.id).await,
        Err(BackfillError::AlreadyFilled(_))
    ));
    // A cancelled request is never filled, and cancelling is idempotent.
    let other = mm
        .create_backfill(BackfillRequest {
            match_id: req.request.match_id,
            slots: vec![1, 0],
            ttl_ms: 60_000,
            leaving: vec![],
        })
        .await?;
    let mut core = MatchCore::new(mm.config())?;
    for t in mm.load_partition(&p, None).await? {
        core.insert(t)?;
    }
    let fill = core.run_backfills(crate::time::now_ms(), std::slice::from_ref(&other.request));
    assert_eq!(fill.len(), 1);
    assert_eq!(
        mm.cancel_backfill(other.request.id).await?.state,
        BackfillState::Cancelled
    );
    assert_eq!(
        mm.cancel_backfill(other.request.id).await?.state,
        BackfillState::Cancelled
    );
    assert_eq!(
        mm.commit_backfill(&lease, &fill[0], 1).await?,
        BackfillOutcome::Gone
    );
    assert!(mm.load_backfills(&p, crate::time::now_ms()).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_fills_nothing_twice_and_its_stale_lease_cannot_commit() -> anyhow::Result<()> {
    let (_dir, mm) = open().await?;
    let maker = start(&mm, &["maker"])?;
    let (matches, next) = make_matches(&mm, 12).await?;
    stop(maker).await?;
    let reqs = ask(&mm, &matches).await?;
    let next = replacements(&mm, &reqs, next).await?;
    let ids: Vec<BackfillId> = reqs.iter().map(|r| r.request.id).collect();
    let victim = Worker::new(mm.clone(), worker_cfg("victim"), allocator())?;
    let task = tokio::spawn(victim.run(std::future::pending()));
    // Kill it as soon as it has filled something (mid-round, most likely).
    let start_at = Instant::now();
    loop {
        let mut filled = 0;
        for id in &ids {
            filled += usize::from(mm.backfill(*id).await?.unwrap().state == BackfillState::Filled);
        }
        if filled > 0 {
            break;
        }
        anyhow::ensure!(
            start_at.elapsed() < Duration::from_secs(10),
            "victim never filled"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let stale: Vec<Lease> = {
        let mut v = Vec::new();
        for p in mm.partitions() {
            if let Some(l) = mm.lease_of(&p).await? {
                if l.owner == "victim" {
                    v.push(l);
                }
            }
        }
        v
    };
    task.abort();
    let _ = task.await;
    let heir = start(&mm, &["heir"])?;
    wait_closed(&mm, &ids, Duration::from_secs(20)).await?;
    stop(heir).await?;
    check_filled_once(&mm, &reqs, next).await?;
    // A fill under the victim's lease (fencing token taken over) is refused.
    let held = stale.first().expect("victim held leases").clone();
    let taken = Instant::now();
    let heir = start(&mm, &["heir2"])?;
    while mm
        .lease_of(&held.partition)
        .await?
        .is_none_or(|l| l.token == held.token)
    {
        anyhow::ensure!(
            taken.elapsed() < Duration::from_secs(10),
            "lease never taken over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(heir).await?;
    let r2 = mm
        .create_backfill(BackfillRequest {
            match_id: matches[0],
            slots: vec![1, 0],
            ttl_ms: 60_000,
            leaving: vec![],
        })
        .await?;
    let fill = BackfillFill {
        backfill: r2.request.id,
        match_id: matches[0],
        placed: vec![],
    };
    assert!(matches!(
        mm.commit_backfill(&held, &fill, 1).await,
        Err(CommitError::LeaseLost(_))
    ));
    Ok(())
}

#[tokio::test]
async fn hostile_requests_get_documented_errors() -> anyhow::Result<()> {
    let (_dir, mm) = open().await?;
    let workers = start(&mm, &["w0"])?;
    let (matches, _) = make_matches(&mm, 1).await?;
    stop(workers).await?;
    let m = matches[0];
    let bad = |slots: Vec<u32>, ttl_ms| BackfillRequest {
        match_id: m,
        slots,
        ttl_ms,
        leaving: vec![],
    };
    for r in [
        bad(vec![1], 10_000),
        bad(vec![1, 1, 1], 10_000),
        bad(vec![3, 0], 10_000),
        bad(vec![0, 0], 10_000),
        bad(vec![1, 0], 10),
        bad(vec![1, 0], MAX_TTL_MS_PLUS),
    ] {
        assert!(matches!(
            mm.create_backfill(r).await,
            Err(BackfillError::Invalid(_))
        ));
    }
    assert!(matches!(
        mm.create_backfill(BackfillRequest {
            match_id: MatchId(42),
            ..bad(vec![1, 0], 10_000)
        })
        .await,
        Err(BackfillError::MatchNotFound(_))
    ));
    for _ in 0..backfill::MAX_OPEN_PER_MATCH {
        mm.create_backfill(bad(vec![1, 0], 10_000)).await?;
    }
    assert!(matches!(
        mm.create_backfill(bad(vec![1, 0], 10_000)).await,
        Err(BackfillError::TooMany { scope: "match", .. })
    ));
    assert!(matches!(
        mm.cancel_backfill(BackfillId(7)).await,
        Err(BackfillError::NotFound(_))
    ));
    Ok(())
}

const MAX_TTL_MS_PLUS: u64 = backfill::MAX_TTL_MS + 1;

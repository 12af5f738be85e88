//! Model mode through the store-backed pool (issue 19): instead of the
//! matchmaker core alone, every ticket goes through the real
//! [`Matchmaker`] on an embedded store in a temporary directory, the pool
//! split into `partitions` skill bands per region (band edges at the
//! quantiles of the scenario's skill distribution), one [`Worker`] per
//! partition holding a real lease and committing every match in its own
//! transaction under the lease's fencing token. Every region of the scenario
//! is in one pool (one store), as regions that fall back to each other are.
//!
//! # Two clocks
//!
//! Arrivals, lobby times, match lengths and the core's widening run on the
//! model's virtual clock (tickets carry their virtual creation time,
//! [`Matchmaker::create_ticket_at`]; rounds get the virtual `now`). The
//! store's work runs for real, and its wall-clock duration is charged to the
//! virtual clock one for one, as if the store were one server doing one thing
//! at a time (`free_at`: the virtual time the store finishes what it was
//! given so far). In each model step at virtual time `t`:
//!
//! 1. the step's cancels, then its new tickets, are written (32 callers at
//!    once); the store is busy for their real duration `d_ops`:
//!    `free_at = max(free_at, t) + d_ops`;
//! 2. if the store is still busy at the next step (`free_at ≥ t + step`), this
//!    step has no round: the backlog waits (counted as a skipped round).
//!    Otherwise the round starts at `start = max(t, free_at)`: every
//!    partition's worker runs [`Worker::run_partition`] at `now = start`
//!    (concurrently, on a multi-threaded runtime); the round's real duration
//!    `d` (load, core, server allocation, commits, deadline outcomes) ends it
//!    at `commit_at = start + d = free_at`.
//!
//! A matched ticket's wait is `commit_at − created` (its players learn of the
//! match when the round's commits are done: pessimistic by at most `d`, since
//! a gateway's watch fires at each commit); a deadline outcome's wait is the
//! same. The **store's share** of a wait is `commit_at − max(first round due
//! after the ticket was created, the first round due since the store became
//! the bottleneck)`: the time the ticket waited because the store was busy
//! (an upper bound: with an infinitely fast store it might still have waited
//! for its window to widen). If the store cannot keep up, rounds are skipped,
//! tickets pile up, and the waits show it.
//!
//! Which matches committed: the workers' server allocator records every match
//! it allocates for and forgets those released (a failed commit releases its
//! server); the count is checked against the workers' round reports, and the
//! deadline outcomes the model derives (same horizon as the worker) against
//! the workers' counts. At the end, the store's match records are counted.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use outpost_backend::keyspace::RegionName;
use outpost_backend::matchmaker::{
    keys, AllocError, Lease, Match, MatchId, Matchmaker, MatchmakerConfig, MatchmakerError, NoMatch,
    NoMatchReason, ServerAllocator, ServerAssignment, Ticket, TicketId, TicketRequest, TicketState, Worker,
    WorkerConfig,
};
use outpost_backend::store::embedded::{EmbeddedConfig, EmbeddedStore, PersistMode};
use outpost_backend::store::{Store, Transaction, TxError};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::dist::Dist;
use crate::record::new_histogram;
use crate::results::HistSummary;
use crate::scenario::StoreSpec;

pub use crate::model_store_summary::StoreSummary;

type Mm = Matchmaker<EmbeddedStore>;

/// Leases are real: long enough that a loaded machine never loses one
/// between renewals (every [`RENEW_EVERY`] of wall time).
const LEASE_TTL_MS: u64 = 600_000;
const RENEW_EVERY: Duration = Duration::from_secs(30);
/// Concurrent callers writing a step's new tickets and cancels.
const WRITERS: usize = 32;
/// Matched tickets whose state the end-of-run audit reads back one by one.
const AUDIT_TICKETS: usize = 100_000;

/// Records every match the workers allocate a server for; a released one
/// (commit failed) is forgotten.
#[derive(Default)]
struct Recorder {
    allocated: Mutex<HashMap<MatchId, Match>>,
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl ServerAllocator for Recorder {
    fn allocate<'a>(&'a self, m: &'a Match) -> Boxed<'a, Result<ServerAssignment, AllocError>> {
        self.allocated.lock().expect("recorder").insert(m.id, m.clone());
        Box::pin(async {
            Ok(ServerAssignment {
                address: "sim:7777".into(),
            })
        })
    }

    fn release<'a>(&'a self, m: &'a Match, _server: &'a ServerAssignment) -> Boxed<'a, ()> {
        self.allocated.lock().expect("recorder").remove(&m.id);
        Box::pin(async {})
    }
}

struct Queued {
    model: TicketId,
    created_ms: u64,
    region: u16,
}

/// Band edges splitting `skill` into `p` bands of equal population
/// (quantiles of 100,000 samples drawn with a fixed seed).
pub fn band_edges(skill: &Dist, p: u32) -> Vec<f64> {
    if p <= 1 {
        return Vec::new();
    }
    let mut rng = StdRng::seed_from_u64(0x5eed_ba4d);
    let mut v: Vec<f64> = (0..100_000).map(|_| skill.sample(&mut rng)).collect();
    v.sort_by(f64::total_cmp);
    let mut edges: Vec<f64> = (1..p as usize).map(|k| v[k * v.len() / p as usize]).collect();
    edges.dedup();
    edges
}

fn wall_ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn real_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The store-backed pool of one model run (see the [module docs](self)).
pub struct StorePool {
    rt: tokio::runtime::Runtime,
    mm: Mm,
    workers: Vec<(Arc<Worker<EmbeddedStore>>, Lease)>,
    recorder: Arc<Recorder>,
    step_ms: u64,
    deadline_ms: Option<u64>,
    regions: Vec<String>,
    pending: HashMap<TicketId, (TicketRequest, u64, u16)>,
    cancels: Vec<TicketId>,
    queued: HashMap<TicketId, Queued>,
    by_model: HashMap<TicketId, TicketId>,
    order: BTreeSet<(u64, u64)>,
    depth: Vec<u64>,
    free_at: u64,
    busy_since: Option<u64>,
    last_renew: Instant,
    sum: StoreSummary,
    store_part_ms: f64,
    wait_ms: f64,
    committed_ids: Vec<MatchId>,
    /// Every matched ticket (store id) and its match.
    matched_tickets: Vec<(TicketId, MatchId)>,
    /// Store share of each matched ticket's wait, ms.
    store_waits: Histogram<u64>,
    /// Wall time of each round, ms.
    round_ms: Histogram<u64>,
    // Last: dropped after the store.
    _dir: tempfile::TempDir,
}

impl StorePool {
    /// Opens an embedded store in a temporary directory and takes one lease
    /// per partition of `config`'s pool.
    pub fn open(config: &MatchmakerConfig, spec: StoreSpec, step_ms: u64) -> anyhow::Result<StorePool> {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let dir = tempfile::tempdir()?;
        let recorder = Arc::new(Recorder::default());
        let regions: Vec<String> = config.regions.iter().map(|r| r.name.clone()).collect();
        let (mm, workers) = rt.block_on(async {
            let mut c = EmbeddedConfig::new(dir.path());
            c.persist = PersistMode::Buffered;
            let store = EmbeddedStore::open(c).await?;
            let mm = Matchmaker::new(store, &regions[0], config.clone())?;
            let mut workers = Vec::new();
            for (i, p) in mm.partitions().into_iter().enumerate() {
                let owner = format!("sim-mm-{i}");
                let mut wc = WorkerConfig::new(owner.clone());
                wc.commit_concurrency = spec.commit_concurrency;
                wc.lease_ttl_ms = LEASE_TTL_MS;
                wc.heartbeat_ms = LEASE_TTL_MS / 4;
                // The deadline horizon: tickets due before the next round.
                wc.round_interval_ms = step_ms;
                let w = Worker::new(mm.clone(), wc, recorder.clone())?;
                let lease = mm
                    .try_acquire(&p, &owner, LEASE_TTL_MS, real_now_ms())
                    .await?
                    .context("a fresh store's lease is free")?;
                workers.push((Arc::new(w), lease));
            }
            anyhow::Ok((mm, workers))
        })?;
        let nreg = regions.len();
        Ok(StorePool {
            sum: StoreSummary {
                partitions: spec.partitions,
                workers: workers.len(),
                commit_concurrency: spec.commit_concurrency,
                ..StoreSummary::default()
            },
            rt,
            mm,
            workers,
            recorder,
            step_ms,
            deadline_ms: config.queues[0].deadline_ms,
            regions,
            pending: HashMap::new(),
            cancels: Vec::new(),
            queued: HashMap::new(),
            by_model: HashMap::new(),
            order: BTreeSet::new(),
            depth: vec![0; nreg],
            free_at: 0,
            busy_since: None,
            last_renew: Instant::now(),
            store_part_ms: 0.0,
            wait_ms: 0.0,
            committed_ids: Vec::new(),
            matched_tickets: Vec::new(),
            store_waits: new_histogram(),
            round_ms: new_histogram(),
            _dir: dir,
        })
    }

    /// Queues the model's ticket `t` (written at the next round); its one
    /// player's id is the slot in the ticket id's high half.
    pub fn insert(&mut self, t: Ticket) {
        let slot = t.id.0 >> 32;
        let region = self.regions.iter().position(|r| *r == t.home_region).unwrap_or(0) as u16;
        let req = TicketRequest {
            players: vec![format!("{slot:032x}")],
            queue: t.queue,
            skill: t.skill,
            home_region: t.home_region,
            latencies: t.latencies,
            max_latency_ms: t.max_latency_ms,
        };
        self.pending.insert(t.id, (req, t.created_ms, region));
    }

    /// Takes the model's ticket `id` out of the pool (cancelled at the next round).
    pub fn remove(&mut self, id: TicketId) {
        if self.pending.remove(&id).is_some() {
            self.sum.tickets_withdrawn_unwritten += 1;
            return;
        }
        if let Some(sid) = self.by_model.remove(&id) {
            if let Some(q) = self.queued.remove(&sid) {
                self.order.remove(&(q.created_ms, sid.0));
                self.depth[q.region as usize] -= 1;
            }
            self.cancels.push(sid);
        }
    }

    /// Tickets waiting in the store with home region `region` (index).
    pub fn depth(&self, region: usize) -> u64 {
        self.depth[region]
    }

    /// Writes the step's cancels and new tickets.
    fn write(&mut self, now: u64) -> anyhow::Result<()> {
        let cancels = std::mem::take(&mut self.cancels);
        let creates: Vec<(TicketId, TicketRequest, u64, u16)> = self
            .pending
            .drain()
            .map(|(id, (r, c, g))| (id, r, c, g))
            .collect();
        if cancels.is_empty() && creates.is_empty() {
            return Ok(());
        }
        let t = Instant::now();
        self.sum.tickets_cancelled += cancels.len() as u64;
        self.sum.tickets_created += creates.len() as u64;
        let (made, races) = self.rt.block_on(write_all(&self.mm, cancels, creates))?;
        self.sum.cancel_races += races;
        for (model, sid, created_ms, region) in made {
            self.queued.insert(
                sid,
                Queued {
                    model,
                    created_ms,
                    region,
                },
            );
            self.by_model.insert(model, sid);
            self.order.insert((created_ms, sid.0));
            self.depth[region as usize] += 1;
        }
        let d = t.elapsed();
        self.sum.write_wall_s += d.as_secs_f64();
        self.free_at = self.free_at.max(now) + wall_ms(d);
        Ok(())
    }

    fn renew(&mut self) -> anyhow::Result<()> {
        if self.last_renew.elapsed() < RENEW_EVERY {
            return Ok(());
        }
        self.last_renew = Instant::now();
        for (_, lease) in &mut self.workers {
            if !self
                .rt
                .block_on(self.mm.renew(lease, LEASE_TTL_MS, real_now_ms()))?
            {
                bail!("the model's worker lost its lease on {}", lease.partition);
            }
        }
        Ok(())
    }

    /// The step at virtual `now`: writes, then a round if the store is free
    /// before the next step. Returns the committed matches (ticket ids and
    /// waits in the model's terms) and the deadline outcomes.
    pub fn round(&mut self, now: u64) -> anyhow::Result<(Vec<Match>, Vec<NoMatch>)> {
        self.write(now)?;
        self.renew()?;
        if self.free_at >= now + self.step_ms {
            self.sum.rounds_skipped_store_busy += 1;
            self.busy_since.get_or_insert(now);
            return Ok((Vec::new(), Vec::new()));
        }
        let start = self.free_at.max(now);
        let due = self.busy_since.take().unwrap_or(now);
        let t = Instant::now();
        let jobs: Vec<_> = self.workers.iter().map(|(w, l)| (w.clone(), l.clone())).collect();
        let reports = self.rt.block_on(async move {
            let mut set = tokio::task::JoinSet::new();
            for (w, lease) in jobs {
                set.spawn(async move { w.run_partition(&lease, start).await });
            }
            let mut out = Vec::new();
            while let Some(r) = set.join_next().await {
                out.push(r??);
            }
            anyhow::Ok(out)
        })?;
        let d = t.elapsed();
        self.sum.rounds += 1;
        self.sum.round_wall_s += d.as_secs_f64();
        self.round_ms.saturating_record(wall_ms(d).max(1));
        let commit_at = start + wall_ms(d);
        self.free_at = commit_at;
        if reports.iter().any(|r| r.lease_lost) {
            bail!("a model worker lost its lease during a round");
        }
        let committed: Vec<Match> = {
            let mut a = self.recorder.allocated.lock().expect("recorder");
            a.drain().map(|(_, m)| m).collect()
        };
        let reported: usize = reports.iter().map(|r| r.committed).sum();
        if !committed.is_empty() {
            self.sum.committing_round_wall_s += d.as_secs_f64();
        }
        self.sum.commit_count_mismatches += reported.abs_diff(committed.len()) as u64;
        let matches = self.matched(committed, commit_at, due);
        let expired = self.expire(start, commit_at);
        let timed_out: usize = reports.iter().map(|r| r.timed_out).sum();
        self.sum.expiry_mismatches += timed_out.abs_diff(expired.len()) as u64;
        Ok((matches, expired))
    }

    /// The committed matches in the model's terms.
    fn matched(&mut self, committed: Vec<Match>, commit_at: u64, due: u64) -> Vec<Match> {
        let mut out = Vec::with_capacity(committed.len());
        for mut m in committed {
            self.sum.matches_committed += 1;
            self.sum.last_commit_s = commit_at as f64 / 1000.0;
            self.committed_ids.push(m.id);
            let mut known = Vec::with_capacity(m.tickets.len());
            for mut t in std::mem::take(&mut m.tickets) {
                let Some(q) = self.queued.remove(&t.id) else {
                    self.sum.unknown_tickets += 1;
                    continue;
                };
                self.matched_tickets.push((t.id, m.id));
                self.order.remove(&(q.created_ms, t.id.0));
                self.by_model.remove(&q.model);
                self.depth[q.region as usize] -= 1;
                let wait = commit_at.saturating_sub(q.created_ms);
                let first_round = q.created_ms.div_ceil(self.step_ms) * self.step_ms;
                let store_part = commit_at.saturating_sub(first_round.max(due)).min(wait);
                self.store_part_ms += store_part as f64;
                self.wait_ms += wait as f64;
                self.store_waits.saturating_record(store_part.max(1));
                t.id = q.model;
                t.wait_ms = wait;
                known.push(t);
            }
            m.tickets = known;
            out.push(m);
        }
        out
    }

    /// The deadline outcomes the workers gave in a round at `start` (the
    /// worker's horizon: tickets whose deadline falls before the next round).
    fn expire(&mut self, start: u64, commit_at: u64) -> Vec<NoMatch> {
        let Some(deadline) = self.deadline_ms else {
            return Vec::new();
        };
        let horizon = (start + self.step_ms).max(start + 1);
        let mut out = Vec::new();
        while let Some(&(created, sid)) = self.order.first() {
            if created.saturating_add(deadline) >= horizon {
                break;
            }
            self.order.pop_first();
            let q = self
                .queued
                .remove(&TicketId(sid))
                .expect("ordered tickets are queued");
            self.by_model.remove(&q.model);
            self.depth[q.region as usize] -= 1;
            self.sum.tickets_expired += 1;
            out.push(NoMatch {
                ticket: q.model,
                queue: String::new(),
                home_region: self.regions[q.region as usize].clone(),
                players: Vec::new(),
                wait_ms: commit_at.saturating_sub(created),
                reason: NoMatchReason::Deadline,
            });
        }
        out
    }

    /// Final figures, after auditing the store: match records counted, and
    /// up to `AUDIT_TICKETS` matched tickets read back.
    pub fn finish(mut self) -> anyhow::Result<(StoreSummary, Vec<(String, HistSummary)>)> {
        let mm = self.mm.clone();
        let ids: Vec<(TicketId, MatchId)> =
            self.matched_tickets.iter().copied().take(AUDIT_TICKETS).collect();
        let (records, audited, not_matched) = self.rt.block_on(async move {
            let records = count_match_records(&mm).await?;
            let mut not_matched = 0;
            for (id, m) in &ids {
                if !matches!(mm.ticket(*id).await?, Some((_, TicketState::Matched { match_id })) if match_id == *m) {
                    not_matched += 1;
                }
            }
            anyhow::Ok((records, ids.len() as u64, not_matched))
        })?;
        let s = &mut self.sum;
        s.store_match_records = records;
        s.audited_tickets = audited;
        s.audited_not_matched = not_matched;
        s.waiting_at_end = self.depth.iter().sum();
        s.matches_per_s = s.matches_committed as f64 / s.committing_round_wall_s.max(1e-9);
        s.store_share_of_wait = if self.wait_ms > 0.0 {
            self.store_part_ms / self.wait_ms
        } else {
            0.0
        };
        let ops = vec![
            (
                "match_store_wait".to_owned(),
                HistSummary::new(&self.store_waits, "ms"),
            ),
            (
                "store_round_wall".to_owned(),
                HistSummary::new(&self.round_ms, "ms"),
            ),
        ];
        Ok((self.sum.clone(), ops))
    }
}

type Created = (TicketId, TicketId, u64, u16);

/// Cancels, then creates, each with [`WRITERS`] concurrent callers; returns
/// the created tickets (model id, store id, created, region) and the cancels
/// refused because a match got there first.
async fn write_all(
    mm: &Mm,
    cancels: Vec<TicketId>,
    creates: Vec<(TicketId, TicketRequest, u64, u16)>,
) -> anyhow::Result<(Vec<Created>, u64)> {
    let mut races = 0;
    let mut set = tokio::task::JoinSet::new();
    for chunk in chunks(cancels) {
        let mm = mm.clone();
        set.spawn(async move {
            let mut races = 0u64;
            for id in chunk {
                match mm.cancel_ticket(id).await {
                    Ok(_) => {}
                    Err(MatchmakerError::AlreadyMatched { .. }) => races += 1,
                    Err(e) => return Err(e),
                }
            }
            Ok(races)
        });
    }
    while let Some(r) = set.join_next().await {
        races += r??;
    }
    let mut set = tokio::task::JoinSet::new();
    for chunk in chunks(creates) {
        let mm = mm.clone();
        set.spawn(async move {
            let mut out = Vec::with_capacity(chunk.len());
            for (model, req, created, region) in chunk {
                out.push((model, mm.create_ticket_at(req, created).await?, created, region));
            }
            Ok::<_, MatchmakerError>(out)
        });
    }
    let mut made = Vec::new();
    while let Some(r) = set.join_next().await {
        made.extend(r??);
    }
    Ok((made, races))
}

fn chunks<T>(mut v: Vec<T>) -> Vec<Vec<T>> {
    let per = v.len().div_ceil(WRITERS).max(1);
    let mut out = Vec::new();
    while !v.is_empty() {
        let rest = v.split_off(per.min(v.len()));
        out.push(std::mem::replace(&mut v, rest));
    }
    out
}

/// Match records under the pool's `("m", ..)` keys (range scan in pages).
async fn count_match_records(mm: &Mm) -> anyhow::Result<u64> {
    let pool = RegionName::new(mm.pool_region())?;
    let (mut begin, end) = keys::root(&pool).subspace(&("m",)).range();
    let mut n = 0u64;
    loop {
        let page = mm
            .store()
            .run(|tx| {
                let (b, e) = (begin.clone(), end.clone());
                async move {
                    Ok::<_, TxError<MatchmakerError>>(
                        tx.get_range_snapshot(&b, &e, Some(1_000), false).await?,
                    )
                }
            })
            .await
            .map_err(|e| anyhow::anyhow!("counting match records: {e}"))?;
        n += page.len() as u64;
        match page.last() {
            Some(last) if page.len() == 1_000 => {
                begin = last.key.clone();
                begin.push(0);
            }
            _ => return Ok(n),
        }
    }
}

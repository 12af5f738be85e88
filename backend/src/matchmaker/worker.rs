//! Matchmaking workers: each holds leases on a fair share of the pool's
//! partitions and runs rounds on them.
//!
//! # A worker's loop
//!
//! Every `heartbeat_ms`: write the worker heartbeat and count the living
//! workers (`alive`); renew held leases (dropping lost ones); give up leases
//! above the fair share `ceil(partitions / alive)`; take free or expired ones
//! up to it. Every `round_interval_ms`: for each held partition, a round:
//!
//! 1. load the partition's waiting tickets, plus — *borrowed* — the tickets of
//!    the adjacent skill bands older than the queue's band-borrow wait and the
//!    same band of neighbour regions (both directions) older than the
//!    cross-region wait, so tickets at band and region boundaries still meet;
//! 2. run a fresh [`MatchCore`] at the current wall-clock time (a match needs
//!    at least one of the partition's own tickets);
//! 3. for each match (up to `commit_concurrency` at once): allocate a server,
//!    then [`Matchmaker::commit_match`] under the lease; on failure release the
//!    server. A failed commit changes nothing, so its still-waiting tickets
//!    are simply matched in a later round;
//! 4. the partition's own tickets whose queue deadline falls before the next
//!    round get their "no match" outcome ([`Matchmaker::expire_ticket`] under
//!    the lease; [`super::deadline`]). The core's target-seeking widening
//!    state is kept per partition from one round to the next;
//! 5. the partition's [floor](super::floor) is raised past its oldest
//!    waiting tickets (listing up to 32 of them), so the next round's reads
//!    skip the deletes of the tickets matched so far.
//!
//! Two workers may race for a borrowed ticket, or a ticket may be cancelled
//! while its match commits: the commit transaction reads every ticket record,
//! so exactly one of the racing transactions commits. A dead worker's leases
//! expire after `lease_ttl_ms`, and the survivors' next lease pass takes its
//! partitions (the fair share grows as its heartbeat expires too). Killing a
//! worker at any point loses nothing: a ticket only changes state inside a
//! commit transaction, which either happened or did not.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;

use crate::store::Store;

use super::alloc::ServerAllocator;
use super::core::MatchCore;
use super::errors::{CommitError, MatchmakerError};
use super::keys::Partition;
use super::lease::Lease;
use super::stats::MatchStats;
use super::store::{now_ms, CommitOutcome, Matchmaker};
use super::types::{Match, MatchId, Ticket};
use super::widening::Widening;

/// Settings of one worker. Validated by [`Worker::new`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Unique name of this worker (e.g. `"<gateway id>/mm-<n>"`); two workers
    /// with one name would share leases.
    pub owner: String,
    /// Lease time to live, milliseconds: how long a dead worker's partitions
    /// stay unserved. Default 5,000. Must exceed `2 × heartbeat_ms` plus the
    /// clock skew between hosts.
    #[serde(default = "default_ttl")]
    pub lease_ttl_ms: u64,
    /// How often leases are renewed and rebalanced, milliseconds. Default 1,000.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_ms: u64,
    /// Pause between rounds, milliseconds. Default 250.
    #[serde(default = "default_round")]
    pub round_interval_ms: u64,
    /// Match commits in flight at once per partition round. Default 16.
    #[serde(default = "default_concurrency")]
    pub commit_concurrency: usize,
}

fn default_ttl() -> u64 {
    5_000
}
fn default_heartbeat() -> u64 {
    1_000
}
fn default_round() -> u64 {
    250
}
fn default_concurrency() -> usize {
    16
}

impl WorkerConfig {
    /// Defaults for worker `owner`.
    pub fn new(owner: impl Into<String>) -> Self {
        WorkerConfig {
            owner: owner.into(),
            lease_ttl_ms: default_ttl(),
            heartbeat_ms: default_heartbeat(),
            round_interval_ms: default_round(),
            commit_concurrency: default_concurrency(),
        }
    }

    fn validate(&self) -> Result<(), MatchmakerError> {
        let bad = MatchmakerError::InvalidWorkerConfig;
        if self.owner.is_empty() || self.owner.len() > 128 {
            return Err(bad("owner must be 1..=128 bytes"));
        }
        if self.heartbeat_ms == 0 || self.lease_ttl_ms < 2 * self.heartbeat_ms {
            return Err(bad("lease_ttl_ms must be at least 2 x heartbeat_ms (> 0)"));
        }
        if self.commit_concurrency == 0 {
            return Err(bad("commit_concurrency must be > 0"));
        }
        Ok(())
    }
}

/// Counters of one worker, shared with whoever exports metrics.
#[derive(Debug, Clone, Default)]
pub struct WorkerStats {
    /// Committed matches (quality, waits, expansions, cross-region).
    pub matches: MatchStats,
    /// Partition rounds run.
    pub rounds: u64,
    /// Matches the core proposed but the commit refused because a ticket was
    /// no longer waiting (cancelled, or taken by another worker).
    pub commit_ticket_unavailable: u64,
    /// Commits refused because the lease was lost (fencing).
    pub commit_lease_lost: u64,
    /// Matches dropped because no server could be allocated.
    pub alloc_failures: u64,
    /// Partitions held after the last lease pass.
    pub partitions_held: usize,
    /// Living workers seen at the last heartbeat.
    pub workers_alive: usize,
    /// Tickets given their deadline outcome ([`super::deadline`]).
    pub timed_out: u64,
}

/// What one partition round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Tickets of the partition itself loaded.
    pub own_tickets: usize,
    /// Tickets borrowed from adjacent bands and neighbour regions.
    pub borrowed_tickets: usize,
    /// Matches committed.
    pub committed: usize,
    /// Matches refused at commit.
    pub refused: usize,
    /// The lease was lost during the round.
    pub lease_lost: bool,
    /// Tickets given their deadline outcome.
    pub timed_out: usize,
}

/// A matchmaking worker (see the [module docs](self)).
pub struct Worker<S: Store> {
    mm: Matchmaker<S>,
    cfg: WorkerConfig,
    allocator: Arc<dyn ServerAllocator>,
    held: BTreeMap<Partition, Lease>,
    last_heartbeat_ms: u64,
    stats: Arc<Mutex<WorkerStats>>,
    /// Target-seeking widening state per partition, carried across rounds.
    widening: Mutex<BTreeMap<Partition, Widening>>,
}

impl<S: Store> std::fmt::Debug for Worker<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("owner", &self.cfg.owner)
            .field("held", &self.held.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<S: Store> Worker<S> {
    /// A worker over `mm`'s pool.
    pub fn new(
        mm: Matchmaker<S>,
        cfg: WorkerConfig,
        allocator: Arc<dyn ServerAllocator>,
    ) -> Result<Self, MatchmakerError> {
        cfg.validate()?;
        Ok(Worker {
            mm,
            cfg,
            allocator,
            held: BTreeMap::new(),
            last_heartbeat_ms: 0,
            stats: Arc::default(),
            widening: Mutex::default(),
        })
    }

    /// The worker's counters (shared; read them from a metrics task).
    pub fn stats(&self) -> Arc<Mutex<WorkerStats>> {
        self.stats.clone()
    }

    /// The partitions this worker holds.
    pub fn held(&self) -> Vec<Partition> {
        self.held.keys().cloned().collect()
    }

    /// The worker's leases.
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.held.values()
    }

    /// Heartbeat and lease pass (see the [module docs](self)).
    pub async fn maintain_leases(&mut self, now: u64) -> Result<(), MatchmakerError> {
        let (ttl, owner) = (self.cfg.lease_ttl_ms, self.cfg.owner.clone());
        let alive = self.mm.worker_heartbeat(&owner, ttl, now).await?;
        self.last_heartbeat_ms = now;
        let mut lost = Vec::new();
        for (p, lease) in self.held.iter_mut() {
            if !self.mm.renew(lease, ttl, now).await? {
                lost.push(p.clone());
            }
        }
        for p in lost {
            tracing::info!(partition = %p, owner = %owner, "matchmaker lease lost");
            self.held.remove(&p);
        }
        let all = self.mm.partitions();
        let share = all.len().div_ceil(alive.max(1));
        while self.held.len() > share {
            let (_, lease) = self.held.pop_last().expect("non-empty");
            self.mm.release(&lease).await?;
        }
        // Start the scan at an owner-dependent offset so workers starting
        // together do not all race for the same first partitions.
        let start = owner
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
            % all.len();
        for i in 0..all.len() {
            if self.held.len() >= share {
                break;
            }
            let p = &all[(start + i) % all.len()];
            if self.held.contains_key(p) {
                continue;
            }
            if let Some(lease) = self.mm.try_acquire(p, &owner, ttl, now).await? {
                tracing::debug!(partition = %p, token = lease.token, owner = %owner, "matchmaker lease taken");
                self.held.insert(p.clone(), lease);
            }
        }
        let mut s = self.stats.lock().expect("stats lock");
        s.partitions_held = self.held.len();
        s.workers_alive = alive;
        Ok(())
    }

    /// One round over every held partition at wall-clock `now`, renewing leases
    /// between partitions when a heartbeat is due.
    pub async fn round(&mut self, now: u64) -> Result<RoundReport, MatchmakerError> {
        let mut total = RoundReport::default();
        let parts: Vec<Partition> = self.held.keys().cloned().collect();
        for p in parts {
            let t = now_ms().max(now);
            if t.saturating_sub(self.last_heartbeat_ms) >= self.cfg.heartbeat_ms {
                self.maintain_leases(t).await?;
            }
            let Some(lease) = self.held.get(&p).cloned() else {
                continue;
            };
            let r = self.run_partition(&lease, t).await?;
            if r.lease_lost {
                self.held.remove(&p);
            }
            total.own_tickets += r.own_tickets;
            total.borrowed_tickets += r.borrowed_tickets;
            total.committed += r.committed;
            total.refused += r.refused;
            total.lease_lost |= r.lease_lost;
            total.timed_out += r.timed_out;
        }
        Ok(total)
    }

    /// One round on one partition under `lease` at time `now` (see the
    /// [module docs](self)). Does not renew the lease.
    pub async fn run_partition(&self, lease: &Lease, now: u64) -> Result<RoundReport, MatchmakerError> {
        let p = &lease.partition;
        let (own, borrowed) = self.load_round_tickets(p, now).await?;
        let mut report = RoundReport {
            own_tickets: own.len(),
            borrowed_tickets: borrowed.len(),
            ..RoundReport::default()
        };
        let mut core = self.round_core(p, own, borrowed)?;
        // Backfill requests of the partition are served before new matches.
        let backfills = self.mm.load_backfills(p, now).await?;
        let (fills, matches) = core.run_round_with_backfills(now, &backfills);
        let filled = super::backfill_store::commit_fills(&self.mm, lease, fills, &backfills).await?;
        report.lease_lost |= filled.lease_lost;
        self.commit_matches(lease, matches, &mut report).await?;
        self.expire_deadlines(lease, now, &mut core, &mut report).await?;
        // A partition that had no waiting ticket has no new deletes to skip.
        if !report.lease_lost && report.own_tickets > 0 {
            // An optimisation that is safe to lose (see `floor`): a conflict
            // with a create, or any other error, leaves the floor lower.
            if let Err(e) = self.mm.raise_floor(p, now).await {
                tracing::debug!(partition = %p, error = %e, "matchmaker floor not raised");
            }
        }
        Ok(report)
    }

    /// Step 1 of a round: the partition's own waiting tickets, and the
    /// tickets borrowed from adjacent bands and neighbour regions (see the
    /// [module docs](self)).
    async fn load_round_tickets(
        &self,
        p: &Partition,
        now: u64,
    ) -> Result<(Vec<Ticket>, Vec<Ticket>), MatchmakerError> {
        let cfg = self.mm.config();
        let q = cfg
            .queue(&p.queue)
            .ok_or_else(|| MatchmakerError::Corrupt(format!("lease on unknown queue {}", p.queue)))?;
        let own = self.mm.load_partition(p, None).await?;
        let mut borrowed = Vec::new();
        if let Some(after) = q.effective_band_borrow_after_ms() {
            for band in [p.band.checked_sub(1), Some(p.band + 1)].into_iter().flatten() {
                if (band as usize) < q.band_count() {
                    let adj = Partition { band, ..p.clone() };
                    borrowed.extend(
                        self.mm
                            .load_partition(&adj, Some(now.saturating_sub(after)))
                            .await?,
                    );
                }
            }
        }
        if let Some(cr) = q.cross_region {
            let mut neighbours: Vec<&str> = cfg
                .region(&p.region)
                .map(|r| r.neighbours.iter().map(String::as_str).collect())
                .unwrap_or_default();
            for r in &cfg.regions {
                if r.neighbours.contains(&p.region) && !neighbours.contains(&r.name.as_str()) {
                    neighbours.push(&r.name);
                }
            }
            for n in neighbours {
                let np = Partition {
                    region: n.to_owned(),
                    ..p.clone()
                };
                borrowed.extend(
                    self.mm
                        .load_partition(&np, Some(now.saturating_sub(cr.after_ms)))
                        .await?,
                );
            }
        }
        Ok((own, borrowed))
    }

    /// Step 2: a fresh core holding the round's tickets, with the partition's
    /// widening state carried over from its previous round.
    fn round_core(
        &self,
        p: &Partition,
        own: Vec<Ticket>,
        borrowed: Vec<Ticket>,
    ) -> Result<MatchCore, MatchmakerError> {
        let mut core = MatchCore::new(self.mm.config())?;
        for t in own {
            let id = t.id;
            if let Err(e) = core.insert(t) {
                // Only possible after a config change (queue or region removed).
                tracing::warn!(ticket = %id, error = %e, "matchmaker: stored ticket no longer fits the config");
            }
        }
        for t in borrowed {
            // A stale copy may repeat a ticket; skipping it is right.
            let _ = core.insert_borrowed(t);
        }
        if let Some(w) = self.widening.lock().expect("widening lock").remove(p) {
            core.set_widening(w);
        }
        Ok(core)
    }

    /// Step 3: allocates a server for and commits each new match (up to
    /// `commit_concurrency` at once), counting the outcomes.
    async fn commit_matches(
        &self,
        lease: &Lease,
        mut matches: Vec<Match>,
        report: &mut RoundReport,
    ) -> Result<(), MatchmakerError> {
        for m in &mut matches {
            m.id = MatchId(rand::random());
        }
        let results: Vec<(Match, Option<Result<CommitOutcome, CommitError>>)> =
            futures::stream::iter(matches)
                .map(|m| self.allocate_and_commit(lease, m))
                .buffer_unordered(self.cfg.commit_concurrency)
                .collect()
                .await;
        self.stats.lock().expect("stats lock").rounds += 1;
        super::metrics::round();
        for (m, r) in results {
            let mut s = self.stats.lock().expect("stats lock");
            let Some(r) = r else {
                report.refused += 1;
                s.alloc_failures += 1;
                super::metrics::refused("no_server");
                continue;
            };
            match r {
                Ok(_) => {
                    report.committed += 1;
                    s.matches.record(&m);
                    super::metrics::committed(&m);
                }
                Err(CommitError::TicketUnavailable(_)) => {
                    report.refused += 1;
                    s.commit_ticket_unavailable += 1;
                    super::metrics::refused("ticket_unavailable");
                }
                Err(CommitError::LeaseLost(_)) => {
                    report.refused += 1;
                    report.lease_lost = true;
                    s.commit_lease_lost += 1;
                    super::metrics::refused("lease_lost");
                }
                Err(CommitError::Corrupt(e)) => return Err(MatchmakerError::Corrupt(e)),
                Err(CommitError::Store(e)) => return Err(MatchmakerError::Store(e)),
            }
        }
        Ok(())
    }

    /// Step 4: after the round's commits (the widest window had its chance),
    /// the tickets due before the next round get their deadline outcome; the
    /// core's widening state is kept for the partition's next round.
    async fn expire_deadlines(
        &self,
        lease: &Lease,
        now: u64,
        core: &mut MatchCore,
        report: &mut RoundReport,
    ) -> Result<(), MatchmakerError> {
        let p = &lease.partition;
        let due = core.expire_due(now, now.saturating_add(self.cfg.round_interval_ms));
        (self.widening.lock().expect("widening lock")).insert(p.clone(), core.take_widening());
        if !report.lease_lost && !due.is_empty() {
            let (n, lost) = super::deadline::expire_all(&self.mm, lease, due).await?;
            report.timed_out = n;
            report.lease_lost |= lost;
            self.stats.lock().expect("stats lock").timed_out += n as u64;
        }
        Ok(())
    }

    /// Allocates a server and commits; `None` if no server could be allocated
    /// (nothing written, the tickets wait for the next round).
    async fn allocate_and_commit(
        &self,
        lease: &Lease,
        mut m: Match,
    ) -> (Match, Option<Result<CommitOutcome, CommitError>>) {
        let server = match self.allocator.allocate(&m).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(region = %m.region, error = %e, "matchmaker: no server; match dropped this round");
                return (m, None);
            }
        };
        m.server = Some(server.clone());
        let r = self.mm.commit_match(lease, &m).await;
        if r.is_err() {
            self.allocator.release(&m, &server).await;
        }
        (m, Some(r))
    }

    /// Runs the worker until `shutdown` resolves, then releases its leases and
    /// heartbeat. Store errors are logged and retried on the next tick.
    /// Dropping the future instead (a crash) is safe too: the leases expire.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let now = now_ms();
            if now.saturating_sub(self.last_heartbeat_ms) >= self.cfg.heartbeat_ms {
                if let Err(e) = self.maintain_leases(now).await {
                    tracing::warn!(error = %e, owner = %self.cfg.owner, "matchmaker lease pass failed");
                }
            }
            if let Err(e) = self.round(now).await {
                tracing::warn!(error = %e, owner = %self.cfg.owner, "matchmaker round failed");
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(Duration::from_millis(self.cfg.round_interval_ms)) => {}
            }
        }
        for lease in std::mem::take(&mut self.held).into_values() {
            let _ = self.mm.release(&lease).await;
        }
        let _ = self.mm.worker_leave(&self.cfg.owner).await;
    }
}

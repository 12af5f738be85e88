//! The orphan sweep and retention GC of a region: whichever process holds the
//! region's sweep lease releases what dead gateway incarnations held and
//! collects finished matchmaking state older than its retention.
//!
//! Every item is released in its own bounded transaction that re-checks the
//! item (still held by the dead incarnation, still waiting), so a sweep that
//! dies half way, or two sweepers overlapping after a lease expiry, release
//! each item at most once and leave nothing half done. The lease only keeps
//! the work from being done twice in parallel.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ledger::Ledger;
use crate::matchmaker::orphans::GcPage;
use crate::matchmaker::{Matchmaker, MatchmakerError};
use crate::presence::Presence;
use crate::queue::Queue;
use crate::store::Store;

use super::{Liveness, LivenessError};

/// Settings of the sweeper (gateway config `liveness.sweep`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    /// How often a sweep pass runs, milliseconds. Default 5,000. Each pass
    /// costs one lease transaction and one range read of the registrations
    /// when there is nothing to do.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// Items per page (one range read, then one transaction per item; GC
    /// deletes a whole page in one transaction). Default 100: a page of
    /// finished tickets is well under FoundationDB's 10 MB / 5 s limits.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// The resume window, milliseconds: a dead incarnation is swept
    /// `expiry + resume_window` after its last heartbeat. Set by the gateway
    /// from its session config.
    #[serde(default = "default_resume")]
    pub resume_window_ms: u64,
    /// How long finished tickets (matched, cancelled, removed), their player
    /// entries and match records are kept, milliseconds. Default 3,600,000
    /// (one hour): longer than the 10-minute window in which a reopened
    /// channel is pushed a recent match again, and long enough for support to
    /// look a match up; 0 disables the GC.
    #[serde(default = "default_retention")]
    pub finished_retention_ms: u64,
    /// How long finished matchmaking backfill requests (filled, cancelled,
    /// expired) are kept after they finished, milliseconds. Default 3,600,000
    /// (one hour: a game server or support can still read a request's outcome
    /// and placed tickets well after its lifetime of at most 10 minutes); 0
    /// keeps them forever. Open requests are never collected. Each pass
    /// deletes at most 16 pages of `batch` records.
    #[serde(default = "default_retention")]
    pub backfill_retention_ms: u64,
    /// Time-to-live of the sweep lease, milliseconds. Default 15,000 (three
    /// intervals): a dead sweeper's work resumes elsewhere after this.
    #[serde(default = "default_lease")]
    pub lease_ttl_ms: u64,
    /// The ledger's idempotency window, milliseconds: receipts older than this
    /// and duplicate records last seen before it are deleted
    /// ([`crate::ledger::retention`]). Default 604,800,000 (7 days): far longer
    /// than any client retries a request (the SDK retries for minutes; a game
    /// that queues purchases offline should resend within a day), so a retry
    /// is never applied twice in practice, while storage stops growing with
    /// total traffic. 0 keeps them forever.
    #[serde(default = "default_receipts")]
    pub receipt_retention_ms: u64,
    /// Players whose receipts one pass visits at most (the pass resumes after
    /// the last one next time). Default 1,000.
    #[serde(default = "default_ledger_players")]
    pub ledger_players_per_pass: usize,
    /// Time one pass may spend visiting players, milliseconds; the pass stops
    /// after the player it is on once this is spent. Default 1,000. Must be
    /// under `lease_ttl_ms`.
    #[serde(default = "default_ledger_budget")]
    pub ledger_pass_budget_ms: u64,
}

fn default_interval() -> u64 {
    5_000
}
fn default_batch() -> usize {
    100
}
fn default_resume() -> u64 {
    120_000
}
fn default_retention() -> u64 {
    3_600_000
}
fn default_lease() -> u64 {
    15_000
}
fn default_receipts() -> u64 {
    7 * 24 * 3_600_000
}
fn default_ledger_players() -> usize {
    1_000
}
fn default_ledger_budget() -> u64 {
    1_000
}

impl Default for SweepConfig {
    fn default() -> Self {
        SweepConfig {
            interval_ms: default_interval(),
            batch: default_batch(),
            resume_window_ms: default_resume(),
            finished_retention_ms: default_retention(),
            backfill_retention_ms: default_retention(),
            lease_ttl_ms: default_lease(),
            receipt_retention_ms: default_receipts(),
            ledger_players_per_pass: default_ledger_players(),
            ledger_pass_budget_ms: default_ledger_budget(),
        }
    }
}

impl SweepConfig {
    /// Checks the rules documented on the fields.
    pub fn validate(&self) -> Result<(), LivenessError> {
        if self.interval_ms == 0 || self.batch == 0 || self.batch > 10_000 {
            return Err(LivenessError::InvalidConfig(
                "sweep interval_ms must be > 0 and batch in 1..=10000",
            ));
        }
        if self.lease_ttl_ms <= self.interval_ms {
            return Err(LivenessError::InvalidConfig(
                "sweep lease_ttl_ms must exceed interval_ms",
            ));
        }
        if self.ledger_pass_budget_ms == 0 || self.ledger_pass_budget_ms >= self.lease_ttl_ms {
            return Err(LivenessError::InvalidConfig(
                "sweep ledger_pass_budget_ms must be > 0 and under lease_ttl_ms",
            ));
        }
        Ok(())
    }
}

/// Counters of a sweeper (exported as metrics by the gateway).
#[derive(Debug, Default)]
pub struct SweepStats {
    /// Dead incarnations fully released.
    pub incarnations_swept: AtomicU64,
    /// Orphaned tickets removed.
    pub tickets_removed: AtomicU64,
    /// Orphaned tickets handed to a player's new incarnation.
    pub tickets_rehomed: AtomicU64,
    /// Orphaned presence claims cleared.
    pub claims_cleared: AtomicU64,
    /// Login-queue entries of dead incarnations released (waiting places
    /// detached, sessions turned into re-entry reservations).
    pub queue_released: AtomicU64,
    /// Finished tickets collected by retention GC.
    pub finished_collected: AtomicU64,
    /// Age of the oldest finished ticket left after the last GC pass, ms.
    pub finished_oldest_age_ms: AtomicU64,
    /// Finished backfill requests collected by retention GC.
    pub backfills_collected: AtomicU64,
    /// Age of the oldest finished backfill request left after the last GC pass, ms.
    pub backfills_oldest_age_ms: AtomicU64,
    /// Ledger idempotency receipts collected.
    pub receipts_collected: AtomicU64,
    /// Ledger duplicate records collected.
    pub duplicates_collected: AtomicU64,
    /// Age of the oldest receipt kept among the players the last pass visited, ms.
    pub receipts_oldest_age_ms: AtomicU64,
    /// How long the last complete cycle of the receipt walk over the region
    /// took, ms, from its first pass (on whichever gateway held the lease) to
    /// the pass that reached the region's end, when this sweeper ran that
    /// pass (0 until it has). Receipts outlive the idempotency window by up
    /// to this much.
    pub receipts_cycle_ms: AtomicU64,
}

/// What one [`Sweeper::sweep_once`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Whether this sweeper held the lease (did anything).
    pub leader: bool,
    /// Dead incarnations fully released.
    pub incarnations: usize,
    /// Orphaned tickets removed.
    pub tickets_removed: usize,
    /// Orphaned tickets re-homed.
    pub tickets_rehomed: usize,
    /// Orphaned presence claims cleared.
    pub claims_cleared: usize,
    /// Login-queue entries released ([`Queue::release_holder`]).
    pub queue_released: usize,
    /// Finished tickets collected.
    pub collected: usize,
    /// Finished backfill requests collected.
    pub backfills_collected: usize,
    /// Ledger receipts and duplicate records collected.
    pub ledger_collected: usize,
}

/// The sweeper of one region (see the [module docs](self)).
pub struct Sweeper<S: Store, G: Store> {
    liveness: Liveness<S>,
    matchmaker: Matchmaker<S>,
    presence: Presence<G>,
    owner: String,
    cfg: SweepConfig,
    stats: Arc<SweepStats>,
    ledger: Option<Ledger<S>>,
    queue: Option<Queue<S>>,
}

impl<S: Store, G: Store> Sweeper<S, G> {
    /// A sweeper named `owner` (unique per process, e.g. the gateway id and
    /// incarnation) over the region's registry and pool and the global presence.
    pub fn new(
        liveness: Liveness<S>,
        matchmaker: Matchmaker<S>,
        presence: Presence<G>,
        owner: impl Into<String>,
        cfg: SweepConfig,
    ) -> Result<Self, LivenessError> {
        cfg.validate()?;
        Ok(Sweeper {
            liveness,
            matchmaker,
            presence,
            owner: owner.into(),
            cfg,
            stats: Arc::default(),
            ledger: None,
            queue: None,
        })
    }

    /// Also collects `ledger`'s receipts and duplicate records past
    /// `receipt_retention_ms` (the ledger of this region).
    pub fn with_ledger(mut self, ledger: Ledger<S>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Also releases what dead incarnations held in the region's login
    /// `queue`: each gateway enters the queue as holder
    /// [`holder_id`](super::holder_id)`(gateway, incarnation)`, and once per
    /// dead incarnation the sweep calls [`Queue::release_holder`] with it. Its
    /// waiting places become detached (they expire `place_grace` after the
    /// sweep unless their players come back), its sessions become re-entry
    /// reservations (their slots return to the budget `reentry_grace` after
    /// the sweep unless their players re-enter), so the region's slots-in-use
    /// counter never keeps a dead gateway's slots.
    pub fn with_queue(mut self, queue: Queue<S>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// The counters.
    pub fn stats(&self) -> Arc<SweepStats> {
        self.stats.clone()
    }

    /// One pass at wall-clock `now_ms`: if this sweeper holds the lease,
    /// release every incarnation dead for a resume window, then collect
    /// finished tickets and backfill requests past retention (a bounded
    /// number of pages per pass).
    pub async fn sweep_once(&self, now_ms: u64) -> Result<SweepReport, LivenessError> {
        let mut r = SweepReport::default();
        if self
            .liveness
            .try_sweep_lease(&self.owner, self.cfg.lease_ttl_ms, now_ms)
            .await?
            .is_none()
        {
            return Ok(r);
        }
        r.leader = true;
        let cutoff = now_ms.saturating_sub(self.cfg.resume_window_ms);
        for rec in self.liveness.list().await? {
            if !self.liveness.mark_swept(rec.incarnation, cutoff).await? {
                continue;
            }
            self.release_incarnation(&rec, now_ms, &mut r).await?;
        }
        if self.cfg.finished_retention_ms > 0 {
            let cutoff = now_ms.saturating_sub(self.cfg.finished_retention_ms);
            r.collected += collect_pages(&self.stats.finished_oldest_age_ms, || {
                self.matchmaker.collect_finished(cutoff, self.cfg.batch)
            })
            .await?;
        }
        if self.cfg.backfill_retention_ms > 0 {
            let cutoff = now_ms.saturating_sub(self.cfg.backfill_retention_ms);
            r.backfills_collected += collect_pages(&self.stats.backfills_oldest_age_ms, || {
                self.matchmaker.collect_finished_backfills(cutoff, self.cfg.batch)
            })
            .await?;
        }
        if let (Some(ledger), true) = (&self.ledger, self.cfg.receipt_retention_ms > 0) {
            self.collect_ledger(ledger, now_ms, &mut r).await?;
        }
        self.count(&r);
        Ok(r)
    }

    /// Releases everything dead incarnation `rec` held (its tickets, presence
    /// claims and login-queue entries), then forgets its registration.
    async fn release_incarnation(
        &self,
        rec: &super::IncarnationRecord,
        now_ms: u64,
        r: &mut SweepReport,
    ) -> Result<(), LivenessError> {
        let inc = rec.incarnation;
        loop {
            let page = self
                .matchmaker
                .sweep_holder(inc, self.cfg.batch, Some(&self.presence))
                .await?;
            r.tickets_removed += page.removed;
            r.tickets_rehomed += page.rehomed;
            if page.done {
                break;
            }
        }
        loop {
            let (cleared, done) = self.presence.sweep_incarnation(inc, self.cfg.batch).await?;
            r.claims_cleared += cleared;
            if done {
                break;
            }
        }
        if let Some(q) = &self.queue {
            // Idempotent: a pass that fails here re-runs it next time (the
            // registration is only forgotten once everything is released).
            r.queue_released += q
                .release_holder(&super::holder_id(&rec.gateway, inc), now_ms)
                .await?;
        }
        self.liveness.forget(inc).await?;
        r.incarnations += 1;
        tracing::info!(incarnation = format!("{inc:016x}"), gateway = %rec.gateway, "swept a dead gateway incarnation");
        Ok(())
    }

    /// Retention GC of the ledger's receipts and duplicate records, resuming
    /// after the last player the previous pass visited, on whichever gateway
    /// that was: the walk's position is stored beside the sweep lease
    /// (`keys::receipt_walk`), read before the pass and written after it.
    async fn collect_ledger(
        &self,
        ledger: &Ledger<S>,
        now_ms: u64,
        r: &mut SweepReport,
    ) -> Result<(), LivenessError> {
        let mut walk = self.liveness.receipt_walk().await?;
        let cycle_started_ms = *walk.cycle_started_ms.get_or_insert(now_ms);
        let cutoff = now_ms.saturating_sub(self.cfg.receipt_retention_ms);
        let lr = ledger
            .collect_region(
                cutoff,
                self.cfg.batch,
                self.cfg.ledger_players_per_pass,
                Some(Duration::from_millis(self.cfg.ledger_pass_budget_ms)),
                &mut walk.cursor,
                now_ms,
            )
            .await?;
        r.ledger_collected = lr.receipts_collected + lr.duplicates_collected;
        let s = &self.stats;
        if lr.wrapped {
            walk.cycle_started_ms = None;
            s.receipts_cycle_ms
                .store(now_ms.saturating_sub(cycle_started_ms), Ordering::Relaxed);
        }
        self.liveness.set_receipt_walk(&walk).await?;
        s.receipts_collected
            .fetch_add(lr.receipts_collected as u64, Ordering::Relaxed);
        s.duplicates_collected
            .fetch_add(lr.duplicates_collected as u64, Ordering::Relaxed);
        s.receipts_oldest_age_ms
            .store(lr.oldest_receipt_age_ms, Ordering::Relaxed);
        Ok(())
    }

    /// Adds a finished pass's report to the counters.
    fn count(&self, r: &SweepReport) {
        let s = &self.stats;
        s.incarnations_swept
            .fetch_add(r.incarnations as u64, Ordering::Relaxed);
        s.tickets_removed
            .fetch_add(r.tickets_removed as u64, Ordering::Relaxed);
        s.tickets_rehomed
            .fetch_add(r.tickets_rehomed as u64, Ordering::Relaxed);
        s.claims_cleared
            .fetch_add(r.claims_cleared as u64, Ordering::Relaxed);
        s.queue_released
            .fetch_add(r.queue_released as u64, Ordering::Relaxed);
        s.finished_collected
            .fetch_add(r.collected as u64, Ordering::Relaxed);
        s.backfills_collected
            .fetch_add(r.backfills_collected as u64, Ordering::Relaxed);
    }

    /// Runs passes every `interval_ms` until `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(Duration::from_millis(self.cfg.interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.sweep_once(crate::time::now_ms()).await {
                tracing::warn!(error = %e, "orphan sweep pass failed");
            }
        }
    }
}

/// Runs retention-GC passes of one kind (`page` deletes one page) until the
/// backlog is done, at most 16 pages per sweep pass so a backlog never starves
/// the next orphan pass; keeps the age of the oldest record left in `oldest`.
/// Returns how many records went.
async fn collect_pages<F, Fut>(oldest: &AtomicU64, mut page: F) -> Result<usize, LivenessError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<GcPage, MatchmakerError>>,
{
    let mut collected = 0;
    for _ in 0..16 {
        let p = page().await?;
        collected += p.collected;
        oldest.store(p.oldest_age_ms, Ordering::Relaxed);
        if p.done {
            break;
        }
    }
    Ok(collected)
}

//! This gateway process in the region's liveness registry (backend
//! `liveness`): its settings, its registration and heartbeat task, and the
//! orphan sweeper it runs (one sweeper of the region holds the lease at a time).
//!
//! A heartbeat refused as fenced means the region's sweep declared this
//! incarnation dead and is releasing its sessions' state: the gateway shuts
//! down rather than serve sessions whose tickets and presence are gone.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use outpost_backend::ledger::Ledger;
use outpost_backend::liveness::{Liveness, LivenessConfig, LivenessError, SweepConfig, SweepStats, Sweeper};
use outpost_backend::matchmaker::Matchmaker;
use outpost_backend::presence::Presence;
use outpost_backend::queue::Queue;
use outpost_backend::store::AnyStore;
use outpost_backend::time::now_ms;
use serde::Deserialize;
use tokio::sync::broadcast;
use tracing::{error, warn};

/// The `liveness` section of the gateway config. Every duration is in
/// milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LivenessSettings {
    /// Heartbeat interval. Default 2,000: one small write per gateway every
    /// 2 s, whatever its session count.
    pub heartbeat_interval_ms: u64,
    /// How long the registration lives without a heartbeat. Default 10,000.
    /// At least `2 × heartbeat_interval_ms` plus the clock skew between
    /// gateways. A crashed gateway's tickets and presence claims are released
    /// `expiry_ms + session.resume_window_secs` after its last heartbeat:
    /// shorter releases them sooner, longer tolerates longer store stalls
    /// before a live gateway is declared dead (and shuts itself down).
    pub expiry_ms: u64,
    /// Interval of this gateway's sweep passes. Default 5,000.
    pub sweep_interval_ms: u64,
    /// Items per sweep page. Default 100 (bounded transactions).
    pub sweep_batch: usize,
    /// Sweep lease time to live. Default 15,000 (must exceed the interval).
    pub sweep_lease_ttl_ms: u64,
    /// How long finished matchmaking tickets, their player entries and match
    /// records are kept. Default 3,600,000 (one hour: beyond the 10 minutes in
    /// which a reopened channel gets a recent match pushed again, and enough
    /// for support to look a match up). 0 keeps them forever.
    pub finished_retention_ms: u64,
    /// How long finished matchmaking backfill requests (filled, cancelled,
    /// expired) are kept. Default 3,600,000 (one hour: a game server or
    /// support can read a request's outcome well after its lifetime of at most
    /// 10 minutes). 0 keeps them forever; open requests are never collected.
    pub backfill_retention_ms: u64,
    /// The ledger's idempotency window: receipts older than this, and
    /// duplicate records last seen before it, are deleted. Default
    /// 604,800,000 (7 days): far beyond any client retry, so a retried grant
    /// or purchase is never applied twice in practice. Events are never
    /// deleted. 0 keeps receipts forever.
    pub receipt_retention_ms: u64,
    /// Players whose receipts one sweep pass visits at most. Default 1,000
    /// (one pass every `sweep_interval_ms`: 200 players a second, a region of
    /// 10 million players in about 14 hours, if the time budget below allows).
    /// A player whose old receipts are already collected costs a few small
    /// read transactions (finding the player, its cursor and first event, the
    /// range of its duplicate records, usually empty); one with receipts past
    /// the window costs a delete per receipt more. Receipts outlive the
    /// idempotency window by up to one cycle over the region (never less).
    pub ledger_players_per_pass: usize,
    /// Time one sweep pass may spend on receipts, ms. Default 1,000; must be
    /// under `sweep_lease_ttl_ms`. Players are visited one after the other,
    /// so the budget is what bounds a pass on a store with network round
    /// trips (FoundationDB: about 1–2 ms per small transaction, so a few
    /// hundred players a pass), while `ledger_players_per_pass` bounds it on
    /// the embedded store (docs/PERFORMANCE.md, "Receipt retention per
    /// pass"). A larger budget shortens the cycle at the price of a longer
    /// pass on the gateway holding the sweep lease.
    pub ledger_pass_budget_ms: u64,
    /// How long live-ops audit records (flag, segment, rollout and content
    /// changes) are kept. Default 34,560,000,000 (400 days: a yearly review
    /// plus a month of slack); 0 keeps them forever. The log grows with
    /// operator and controller actions, not with players.
    pub audit_retention_ms: u64,
    /// Interval of this gateway's global retention passes (audit records past
    /// their retention, cohort counters of ended rollouts; `crate::retention`),
    /// jittered ±10%. Default 600,000 (10 minutes); 0 disables them on this
    /// gateway. Every gateway runs them (idempotent, no lease).
    pub global_gc_interval_ms: u64,
}

impl Default for LivenessSettings {
    fn default() -> Self {
        let (l, s) = (LivenessConfig::default(), SweepConfig::default());
        LivenessSettings {
            heartbeat_interval_ms: l.heartbeat_interval_ms,
            expiry_ms: l.expiry_ms,
            sweep_interval_ms: s.interval_ms,
            sweep_batch: s.batch,
            sweep_lease_ttl_ms: s.lease_ttl_ms,
            finished_retention_ms: s.finished_retention_ms,
            backfill_retention_ms: s.backfill_retention_ms,
            receipt_retention_ms: s.receipt_retention_ms,
            ledger_players_per_pass: s.ledger_players_per_pass,
            ledger_pass_budget_ms: s.ledger_pass_budget_ms,
            audit_retention_ms: 400 * 24 * 3_600_000,
            global_gc_interval_ms: 600_000,
        }
    }
}

impl LivenessSettings {
    /// The backend heartbeat config.
    pub fn heartbeat(&self) -> LivenessConfig {
        LivenessConfig {
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            expiry_ms: self.expiry_ms,
        }
    }

    /// The backend sweep config for a resume window of `resume_window_ms`.
    pub fn sweep(&self, resume_window_ms: u64) -> SweepConfig {
        SweepConfig {
            interval_ms: self.sweep_interval_ms,
            batch: self.sweep_batch,
            resume_window_ms,
            finished_retention_ms: self.finished_retention_ms,
            backfill_retention_ms: self.backfill_retention_ms,
            lease_ttl_ms: self.sweep_lease_ttl_ms,
            receipt_retention_ms: self.receipt_retention_ms,
            ledger_players_per_pass: self.ledger_players_per_pass,
            ledger_pass_budget_ms: self.ledger_pass_budget_ms,
        }
    }

    /// Checks the rules documented on the fields.
    pub fn validate(&self, resume_window_ms: u64) -> Result<(), LivenessError> {
        self.heartbeat().validate()?;
        self.sweep(resume_window_ms).validate()
    }
}

/// Heartbeats `incarnation` until shutdown; on a clean shutdown marks it as
/// expired now (its leftovers are swept one resume window later). If the
/// registration was fenced, shuts the gateway down. Subscribed to shutdown
/// when called, before the returned future is spawned, so a shutdown sent
/// before its first poll is not missed (as for the accept loop).
pub(crate) fn heartbeat(
    liveness: Liveness<AnyStore>,
    incarnation: u64,
    settings: LivenessSettings,
    shutdown: broadcast::Sender<()>,
) -> impl std::future::Future<Output = ()> + Send {
    let mut stop = shutdown.subscribe();
    async move {
        let mut tick = tokio::time::interval(Duration::from_millis(settings.heartbeat_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.recv() => break,
                _ = tick.tick() => {}
            }
            match liveness
                .heartbeat(incarnation, now_ms() + settings.expiry_ms)
                .await
            {
                Ok(()) => {}
                Err(LivenessError::Fenced(_)) => {
                    error!(
                        incarnation = format!("{incarnation:016x}"),
                        "this gateway was declared dead by the region's sweep; shutting down"
                    );
                    metrics::counter!("outpost_liveness_fenced_total").increment(1);
                    let _ = shutdown.send(());
                    return;
                }
                Err(e) => warn!(error = %e, "liveness heartbeat failed"),
            }
        }
        let _ = liveness.heartbeat(incarnation, now_ms()).await;
    }
}

/// The region's queue for the orphan sweep, even where this gateway does not
/// queue logins: whichever gateway of the region holds the sweep lease must
/// release a dead gateway's places and slots (one range read per dead
/// incarnation when nobody queues).
pub(crate) fn sweep_queue(shared: &crate::driver::SessionDeps) -> Option<Queue<AnyStore>> {
    if let Some(q) = &shared.queue {
        return Some(q.queue.clone());
    }
    let region = outpost_backend::keyspace::RegionName::new(shared.config.region.as_str()).ok()?;
    let store = shared.regions.store(&shared.config.region)?;
    Queue::new(
        store,
        region,
        shared.config.queue.settings(),
        shared.auth.queue_keys(),
    )
    .ok()
}

/// What the sweeper also collects besides tickets and presence claims.
pub(crate) struct SweepAlso {
    /// The region's ledger (receipt and duplicate retention).
    pub ledger: Option<Ledger<AnyStore>>,
    /// The region's login queue (a dead incarnation's places and slots).
    pub queue: Option<Queue<AnyStore>>,
}

/// Runs the region sweeper until shutdown, exporting its counters.
pub(crate) async fn sweep(
    liveness: Liveness<AnyStore>,
    matchmaker: Matchmaker<AnyStore>,
    presence: Presence<AnyStore>,
    also: SweepAlso,
    owner: String,
    cfg: SweepConfig,
    mut stop: broadcast::Receiver<()>,
) {
    let sweeper = match Sweeper::new(liveness, matchmaker, presence, owner, cfg) {
        Ok(s) => {
            let SweepAlso { ledger, queue } = also;
            let s = match ledger {
                Some(l) => s.with_ledger(l),
                None => s,
            };
            match queue {
                Some(q) => s.with_queue(q),
                None => s,
            }
        }
        Err(e) => return error!(error = %e, "sweeper not started"),
    };
    let stats = sweeper.stats();
    let export = tokio::spawn(export_stats(stats.clone()));
    sweeper
        .run(async move {
            let _ = stop.recv().await;
        })
        .await;
    export.abort();
}

async fn export_stats(s: Arc<SweepStats>) {
    loop {
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        metrics::gauge!("outpost_sweep_incarnations_total").set(get(&s.incarnations_swept) as f64);
        metrics::gauge!("outpost_sweep_orphans_total", "kind" => "ticket_removed")
            .set(get(&s.tickets_removed) as f64);
        metrics::gauge!("outpost_sweep_orphans_total", "kind" => "ticket_rehomed")
            .set(get(&s.tickets_rehomed) as f64);
        metrics::gauge!("outpost_sweep_orphans_total", "kind" => "presence_claim")
            .set(get(&s.claims_cleared) as f64);
        metrics::gauge!("outpost_sweep_orphans_total", "kind" => "queue_entry")
            .set(get(&s.queue_released) as f64);
        metrics::gauge!("outpost_gc_collected_total", "kind" => "mm_finished_ticket")
            .set(get(&s.finished_collected) as f64);
        metrics::gauge!("outpost_gc_oldest_age_ms", "kind" => "mm_finished_ticket")
            .set(get(&s.finished_oldest_age_ms) as f64);
        metrics::gauge!("outpost_gc_collected_total", "kind" => "mm_finished_backfill")
            .set(get(&s.backfills_collected) as f64);
        metrics::gauge!("outpost_gc_oldest_age_ms", "kind" => "mm_finished_backfill")
            .set(get(&s.backfills_oldest_age_ms) as f64);
        metrics::gauge!("outpost_gc_collected_total", "kind" => "ledger_receipt")
            .set(get(&s.receipts_collected) as f64);
        metrics::gauge!("outpost_gc_collected_total", "kind" => "ledger_duplicate")
            .set(get(&s.duplicates_collected) as f64);
        metrics::gauge!("outpost_gc_oldest_age_ms", "kind" => "ledger_receipt")
            .set(get(&s.receipts_oldest_age_ms) as f64);
        metrics::gauge!("outpost_gc_cycle_ms", "kind" => "ledger_receipt")
            .set(get(&s.receipts_cycle_ms) as f64);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_rules_are_enforced() {
        let d = LivenessSettings::default();
        assert!(d.validate(120_000).is_ok());
        let bad = LivenessSettings {
            expiry_ms: d.heartbeat_interval_ms,
            ..d.clone()
        };
        assert!(bad.validate(120_000).is_err(), "expiry below 2 x interval");
        let bad = LivenessSettings {
            sweep_lease_ttl_ms: d.sweep_interval_ms,
            ..d.clone()
        };
        assert!(
            bad.validate(120_000).is_err(),
            "lease must outlive a pass interval"
        );
        let bad = LivenessSettings {
            ledger_pass_budget_ms: d.sweep_lease_ttl_ms,
            ..d.clone()
        };
        assert!(
            bad.validate(120_000).is_err(),
            "a receipt pass must end within the lease"
        );
        let mut c = crate::config::GatewayConfig::default();
        c.liveness.heartbeat_interval_ms = 0;
        assert!(c.validate().is_err(), "checked with the gateway config");
        let parsed: LivenessSettings = toml::from_str("expiry_ms = 20000\nreceipt_retention_ms = 0").unwrap();
        assert_eq!(
            (
                parsed.expiry_ms,
                parsed.receipt_retention_ms,
                parsed.heartbeat_interval_ms
            ),
            (20_000, 0, 2_000)
        );
    }
}

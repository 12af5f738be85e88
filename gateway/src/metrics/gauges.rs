//! Figures read at scrape time rather than recorded at events.

use outpost_backend::matchmaker::metrics::{register, BACKFILLS_OPEN, PARTITIONS_HELD, POOL_DEPTH};
use outpost_backend::matchmaker::Matchmaker;
use outpost_backend::store::AnyStore;

use crate::control::ControlPlane;

/// Sets admitted sessions, this process's matchmaking partitions, the pool
/// depth per queue and region and the pool's open backfill requests (read
/// from the store, so they cover every gateway's tickets and requests; a
/// figure whose read fails keeps its previous value).
pub(crate) async fn refresh(control: &ControlPlane) {
    metrics::gauge!("outpost_sessions_admitted").set(control.sessions.registry.admitted() as f64);
    let held: usize = {
        let workers = control.mm_stats.lock().expect("mm stats lock");
        workers
            .iter()
            .map(|w| w.lock().expect("worker stats lock").partitions_held)
            .sum()
    };
    metrics::gauge!(PARTITIONS_HELD).set(held as f64);
    let mm = &control.matchmaker;
    if let Ok(open) = mm.open_backfills().await {
        metrics::gauge!(BACKFILLS_OPEN).set(open as f64);
    }
    let cfg = mm.config();
    for q in &cfg.queues {
        for r in &cfg.regions {
            if let Ok(depth) = mm.depth(&q.name, &r.name).await {
                metrics::gauge!(POOL_DEPTH, "queue" => q.name.clone(), "region" => r.name.clone())
                    .set(depth as f64);
            }
        }
    }
}

/// Registers every configured queue and region's matchmaking series at zero.
pub(crate) fn register_matchmaking(mm: &Matchmaker<AnyStore>) {
    let cfg = mm.config();
    for q in &cfg.queues {
        for r in &cfg.regions {
            register(&q.name, &r.name);
        }
    }
}

//! Live operations state shared by every session of a gateway: the current flag
//! snapshot and content manifests (each kept fresh by a store watch, so changes
//! made anywhere reach every connected session without a restart), the
//! telemetry aggregator, and the periodic loop that flushes rollout cohort
//! counters and ticks the rollout controller.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_backend::content::{Content, PublishedManifest};
use outpost_backend::flags::{FlagSnapshot, Flags, Rollouts};
use outpost_backend::store::AnyStore;
use outpost_backend::telemetry::{flush_cohort_deltas, TelemetryAggregator, TelemetryConfig};
use outpost_backend::time::now_ms;
use tokio::sync::{broadcast, watch};
use tracing::{info, warn};

/// How often cohort counters are flushed and the rollout controller ticks.
const TICK: Duration = Duration::from_secs(2);

/// The gateway's live-ops state.
pub struct Live {
    pub flags: watch::Receiver<Arc<FlagSnapshot>>,
    pub content: watch::Receiver<Arc<Vec<PublishedManifest>>>,
    pub telemetry: Mutex<TelemetryAggregator>,
    pub flags_service: Flags<AnyStore>,
    pub content_service: Content<AnyStore>,
    pub rollouts: Rollouts<AnyStore>,
}

/// Why live ops could not start.
#[derive(Debug, thiserror::Error)]
#[error("live ops: {0}")]
pub struct LiveError(String);

impl Live {
    /// Loads the flags and content, then keeps them fresh until `shutdown`.
    pub async fn start(global: AnyStore, shutdown: &broadcast::Sender<()>) -> Result<Arc<Live>, LiveError> {
        let flags_service = Flags::new(global.clone());
        let content_service = Content::new(global.clone());
        let (snap, flags_watch) = flags_service
            .snapshot_and_watch()
            .await
            .map_err(|e| LiveError(e.to_string()))?;
        let (list, content_watch) = content_service
            .list_and_watch()
            .await
            .map_err(|e| LiveError(e.to_string()))?;
        let (flags_tx, flags_rx) = watch::channel(Arc::new(snap));
        let (content_tx, content_rx) = watch::channel(Arc::new(list));
        let telemetry =
            TelemetryAggregator::new(TelemetryConfig::default()).map_err(|e| LiveError(e.to_string()))?;
        let live = Arc::new(Live {
            flags: flags_rx,
            content: content_rx,
            telemetry: Mutex::new(telemetry),
            flags_service: flags_service.clone(),
            content_service: content_service.clone(),
            rollouts: Rollouts::new(global.clone()),
        });

        let mut stop = shutdown.subscribe();
        tokio::spawn(async move {
            let mut w = flags_watch;
            loop {
                tokio::select! { r = &mut w => if r.is_err() { tokio::time::sleep(Duration::from_secs(1)).await }, _ = stop.recv() => return }
                match flags_service.snapshot_and_watch().await {
                    Ok((snap, next)) => {
                        flags_tx.send_replace(Arc::new(snap));
                        w = next;
                    }
                    Err(e) => warn!(error = %e, "cannot reload flags; retrying"),
                }
            }
        });
        let mut stop = shutdown.subscribe();
        tokio::spawn(async move {
            let mut w = content_watch;
            loop {
                tokio::select! { r = &mut w => if r.is_err() { tokio::time::sleep(Duration::from_secs(1)).await }, _ = stop.recv() => return }
                match content_service.list_and_watch().await {
                    Ok((list, next)) => {
                        content_tx.send_replace(Arc::new(list));
                        w = next;
                    }
                    Err(e) => warn!(error = %e, "cannot reload content; retrying"),
                }
            }
        });
        let (mut stop, weak) = (shutdown.subscribe(), Arc::downgrade(&live));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            loop {
                tokio::select! { _ = tick.tick() => {}, _ = stop.recv() => return }
                let Some(live) = weak.upgrade() else { return };
                let deltas = live
                    .telemetry
                    .lock()
                    .expect("telemetry lock")
                    .take_cohort_deltas();
                if let Err(e) = flush_cohort_deltas(&global, now_ms(), &deltas).await {
                    warn!(error = %e, "cannot flush rollout cohort counters; keeping them");
                    live.telemetry
                        .lock()
                        .expect("telemetry lock")
                        .restore_cohort_deltas(deltas);
                }
                match live.rollouts.tick(now_ms()).await {
                    Ok(reports) => {
                        for r in reports.iter().filter(|r| !r.actions.is_empty()) {
                            info!(rollout = %r.rollout.id, actions = ?r.actions, "rollout advanced");
                        }
                    }
                    Err(e) => warn!(error = %e, "rollout tick failed"),
                }
            }
        });
        Ok(live)
    }
}

//! The gateway's control plane: what the admin API, the metrics listener and
//! the background tasks (matchmaker workers, the liveness heartbeat and orphan
//! sweep, retention, the ticket reaper, the login queue's upkeep, pending
//! transfers) need besides the sessions' own dependencies.
//!
//! The boundary follows who uses what. [`SessionDeps`] holds what a connection
//! needs from handshake to close and nothing else, so session code cannot
//! reach the operator's tools. [`ControlPlane`] holds the session side (the
//! operator drains, kicks and counts sessions through it) plus what only the
//! operator side and the background tasks use. Both are built once in
//! `server::start_with_stores`; [`GatewayHandle`](crate::server::GatewayHandle)
//! is a cheap handle to the control plane.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_backend::liveness::Liveness;
use outpost_backend::matchmaker::{
    Matchmaker, ServerAllocator, StaticAllocator, Worker, WorkerConfig, WorkerStats,
};
use outpost_backend::presence::Presence;
use outpost_backend::store::AnyStore;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::info;

use crate::channels::region_services::ServiceCache;
use crate::driver::tickets::{self, Ended};
use crate::driver::{DrainPlan, SessionDeps};
use crate::endpoint::SocketBuffers;
use crate::live::Live;
use crate::server::StartError;
use crate::tls::{ReloadReport, TlsError, TlsReloader, TlsStatus};
use crate::transfers::Transfers;

/// What the operator side and the background tasks of one gateway share.
pub(crate) struct ControlPlane {
    /// The session side: the admin API reads its registry (status, kick,
    /// drain progress), config, presence, transfers, regions and queue, and
    /// signals its shutdown; the background tasks stop on that signal.
    pub sessions: Arc<SessionDeps>,
    /// The region's matchmaking pool, fenced by this gateway's incarnation:
    /// admin backfill requests, the pool-depth gauges, the ticket reaper's
    /// removals. (Sessions reach matchmaking through their channel's
    /// service, which holds its own handle.)
    pub matchmaker: Matchmaker<AnyStore>,
    /// Statistics of this gateway's matchmaker workers (for `/metrics`), one
    /// entry per worker, added as the workers start.
    pub mm_stats: Mutex<Vec<Arc<Mutex<WorkerStats>>>>,
    /// Flags, content, telemetry and rollouts, for the admin API. (The
    /// channels hold their own handle, through the router.)
    pub live: Arc<Live>,
    /// The per-region service objects (player state, ledger), built once per
    /// region and shared with the channels (through the router): the admin
    /// API's ledger and the orphan sweep's.
    pub services: Arc<ServiceCache>,
    /// The sending side of `sessions.drain`: a drain starts here.
    pub drain_tx: watch::Sender<Option<DrainPlan>>,
    /// The QUIC socket's buffer sizes as the kernel granted them (`/status`).
    pub buffers: SocketBuffers,
    /// The certificate's hot reload (SIGHUP, the admin API, polling) and
    /// its figures.
    pub tls: Arc<TlsReloader>,
}

/// A cheap handle to a running gateway: drain it, stop it, read its state.
#[derive(Clone)]
pub struct GatewayHandle {
    control: Arc<ControlPlane>,
}

impl GatewayHandle {
    pub(crate) fn new(control: Arc<ControlPlane>) -> Self {
        GatewayHandle { control }
    }
}

/// What `/status` reports.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// The region this gateway serves.
    pub region: String,
    /// Live (welcomed) sessions.
    pub sessions_live: usize,
    /// Sessions admitted (logging in or live), counted against `max_sessions`.
    pub sessions_admitted: usize,
    /// Whether a drain began (`/readyz` answers 503).
    pub draining: bool,
    /// The QUIC socket's receive buffer, as the kernel granted it.
    pub udp_recv_buffer_bytes: usize,
    /// The QUIC socket's send buffer, as the kernel granted it.
    pub udp_send_buffer_bytes: usize,
    /// Certificate files, reload counts and the served certificate's expiry.
    pub tls: TlsStatus,
}

impl GatewayHandle {
    /// Starts a graceful drain (idempotent): logins are refused with `Draining`,
    /// every session gets a GoAway with a delay spread over the drain window, and
    /// the gateway stops once empty or at the drain deadline.
    pub fn drain(&self) {
        let d = &self.control.sessions.config.drain;
        let plan = DrainPlan {
            window: Duration::from_millis(d.window_ms),
            deadline: Instant::now() + Duration::from_millis(d.deadline_ms),
        };
        let started = self.control.drain_tx.send_if_modified(|cur| {
            if cur.is_some() {
                return false;
            }
            *cur = Some(plan);
            true
        });
        if !started {
            return;
        }
        info!(
            window_ms = d.window_ms,
            deadline_ms = d.deadline_ms,
            "drain started"
        );
        metrics::gauge!("outpost_draining").set(1.0);
        let h = self.clone();
        tokio::spawn(async move {
            while h.control.sessions.registry.admitted() > 0 && Instant::now() < plan.deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            info!(
                remaining = h.control.sessions.registry.admitted(),
                "drain finished; shutting down"
            );
            h.shutdown();
        });
    }

    /// Stops at once: every session is closed with `ShuttingDown`.
    pub fn shutdown(&self) {
        let _ = self.control.sessions.shutdown.send(());
    }

    pub fn is_draining(&self) -> bool {
        self.control.drain_tx.borrow().is_some()
    }

    pub fn sessions_live(&self) -> usize {
        self.control.sessions.registry.live()
    }

    pub fn status(&self) -> Status {
        let sessions = &self.control.sessions;
        Status {
            region: sessions.config.region.clone(),
            sessions_live: sessions.registry.live(),
            sessions_admitted: sessions.registry.admitted(),
            draining: self.is_draining(),
            udp_recv_buffer_bytes: self.control.buffers.recv_bytes,
            udp_send_buffer_bytes: self.control.buffers.send_bytes,
            tls: self.tls_status(),
        }
    }

    /// Flags, content, telemetry and rollouts (admin API).
    pub fn live(&self) -> &crate::live::Live {
        &self.control.live
    }

    /// The region's login queue, when enabled.
    pub(crate) fn queue(&self) -> Option<&std::sync::Arc<crate::driver::queue::RegionQueue>> {
        self.control.sessions.queue.as_ref()
    }

    /// The region's matchmaking pool (admin API: backfill requests).
    pub(crate) fn matchmaker(&self) -> &Matchmaker<AnyStore> {
        &self.control.matchmaker
    }

    /// Cross-region transfers (admin API).
    pub fn transfers(&self) -> &Transfers {
        &self.control.sessions.transfers
    }

    /// The inventory ledger of `region` (default: this gateway's), for operators.
    pub fn ledger(&self, region: Option<&str>) -> Option<outpost_backend::ledger::Ledger<AnyStore>> {
        let region = region.unwrap_or(self.control.sessions.regions.local());
        Some(self.control.services.get(region).ok()?.ledger.clone())
    }

    /// Kicks a player's session wherever it is (operator action). With
    /// cross-gateway presence (the default) this first ends the player's
    /// presence claim, which revokes every resume token of that session on
    /// every gateway of the region, and makes the gateway holding the session,
    /// whichever it is, kick it with `KickedByOperator` (its presence watch
    /// sees the ended claim); a session on this gateway is kicked at once as
    /// well. True if a session was kicked or a resumable one revoked.
    pub async fn kick(&self, player: &str) -> Result<bool, outpost_backend::presence::PresenceError> {
        let sessions = &self.control.sessions;
        let revoked = if sessions.config.session.cross_gateway_presence {
            let end = outpost_backend::presence::SessionEnd::KickedByOperator;
            sessions.presence.end_current(player, end).await?.is_some()
        } else {
            false
        };
        let local = sessions.registry.kick(
            player,
            outpost_schema::ErrorCode::KickedByOperator,
            "kicked by an operator",
        );
        Ok(revoked || local)
    }

    /// Re-reads the certificate and key files now, whatever their state (SIGHUP
    /// does this). New handshakes present the new certificate; established
    /// sessions are untouched. On error the previous certificate stays in
    /// service. Blocks briefly (reads two files): from async code, call it on
    /// `spawn_blocking`.
    pub fn reload_tls(&self) -> Result<ReloadReport, TlsError> {
        self.control.tls.reload()
    }

    /// Certificate reload figures of this gateway.
    pub fn tls_status(&self) -> TlsStatus {
        self.control.tls.status()
    }

    /// Sets the gauges read at scrape time (`crate::metrics::gauges`).
    pub(crate) async fn refresh_gauges(&self) {
        crate::metrics::gauges::refresh(&self.control).await;
    }

    pub(crate) fn shutdown_signal(&self) -> broadcast::Receiver<()> {
        self.control.sessions.shutdown.subscribe()
    }
}

/// What the background tasks take besides the control plane, made while the
/// gateway starts.
pub(crate) struct Background {
    /// The region's liveness registry this gateway registered in.
    pub liveness: Liveness<AnyStore>,
    /// This gateway's incarnation in it.
    pub incarnation: u64,
    /// The matchmaking pool without this incarnation's fence: the orphan
    /// sweep removes the tickets of dead incarnations.
    pub pool: Matchmaker<AnyStore>,
    /// The global store (presence claims, retention).
    pub global: AnyStore,
    /// The ticket reaper's queue of ended sessions.
    pub ended_sessions: mpsc::UnboundedReceiver<Ended>,
}

impl ControlPlane {
    /// Starts the background tasks; each stops when the gateway shuts down.
    pub(crate) fn spawn_background(self: &Arc<Self>, bg: Background) -> Result<(), StartError> {
        let s = &self.sessions;
        tokio::spawn(crate::driver::relay_gateway_signals(s));
        let poll = s.config.tls.reload_check_interval_ms;
        if poll > 0 {
            self.tls
                .spawn_polling(Duration::from_millis(poll), s.shutdown.subscribe());
        }
        if let Some(q) = s.queue.clone() {
            tokio::spawn(q.run(s.shutdown.subscribe()));
        }
        let transfers = s.transfers.clone();
        tokio::spawn(async move { transfers.resume_pending().await });
        self.spawn_matchmaker_workers()?;
        tokio::spawn(crate::liveness::heartbeat(
            bg.liveness.clone(),
            bg.incarnation,
            s.config.liveness.clone(),
            s.shutdown.clone(),
        ));
        tokio::spawn(crate::retention::run(
            bg.global.clone(),
            s.config.liveness.clone(),
            s.shutdown.subscribe(),
        ));
        tokio::spawn(crate::liveness::sweep(
            bg.liveness,
            bg.pool,
            Presence::new(bg.global),
            crate::liveness::SweepAlso {
                ledger: self.services.get(&s.config.region).ok().map(|s| s.ledger.clone()),
                queue: crate::liveness::sweep_queue(s),
            },
            outpost_backend::liveness::holder_id(&s.name, bg.incarnation),
            s.config
                .liveness
                .sweep(s.config.session.resume_window_secs * 1000),
            s.shutdown.subscribe(),
        ));
        tokio::spawn(tickets::run(
            self.clone(),
            bg.ended_sessions,
            s.shutdown.subscribe(),
        ));
        Ok(())
    }

    /// Starts this gateway's matchmaker workers; they stop with the gateway.
    fn spawn_matchmaker_workers(&self) -> Result<(), StartError> {
        let s = &self.sessions;
        let m = &s.config.matchmaking;
        let servers: Arc<dyn ServerAllocator> = Arc::new(StaticAllocator::new([(
            s.config.region.clone(),
            m.servers.clone(),
        )]));
        if m.workers > 0 {
            crate::metrics::gauges::register_matchmaking(&self.matchmaker);
        }
        for i in 0..m.workers {
            let owner = format!("{}/mm-{i}", s.name);
            let worker = Worker::new(self.matchmaker.clone(), WorkerConfig::new(owner), servers.clone())
                .map_err(StartError::invalid)?;
            self.mm_stats.lock().expect("mm stats lock").push(worker.stats());
            let mut stop = s.shutdown.subscribe();
            tokio::spawn(worker.run(async move {
                let _ = stop.recv().await;
            }));
        }
        Ok(())
    }
}

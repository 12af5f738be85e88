//! Starting, draining and stopping a gateway.
//!
//! Shutdown follows mini-redis: a broadcast signal tells every task to stop, and a
//! completion channel (every connection task holds a sender clone) tells the
//! gateway when the last one is gone.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_backend::identity::{Identity, IdentityError};
use outpost_backend::liveness::Liveness;
use outpost_backend::matchmaker::{Matchmaker, ServerAllocator, StaticAllocator, Worker, WorkerConfig};
use outpost_backend::presence::Presence;
use outpost_backend::store::{AnyStore, BackendKind, OpenStoreError};
use outpost_backend::time::now_ms;
use serde::Serialize;
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::auth::Authenticator;
use crate::channels::region_services::ServiceCache;
use crate::channels::Router;
use crate::config::{ConfigError, GatewayConfig, QuicRetry};
use crate::driver::{serve_connection, DrainPlan, Shared};
use crate::endpoint::{self, SocketBuffers};
use crate::live::Live;
use crate::regions::Regions;
use crate::registry::Registry;
use crate::session::{LoginConfig, SessionLimits};
use crate::tls::{CertFiles, ReloadReport, ServerIdentity, TlsError, TlsReloader, TlsStatus};
use crate::transfers::Transfers;

/// Why a gateway could not start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot bind {what}: {source}")]
    Bind {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("cannot open the store: {0}")]
    Store(#[from] OpenStoreError),
    #[error("identity service: {0}")]
    Identity(#[from] IdentityError),
}

/// A cheap handle to a running gateway: drain it, stop it, read its state.
#[derive(Clone)]
pub struct GatewayHandle {
    shared: Arc<Shared>,
    drain_tx: Arc<watch::Sender<Option<DrainPlan>>>,
    buffers: SocketBuffers,
    tls: Arc<TlsReloader>,
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
        let d = &self.shared.config.drain;
        let plan = DrainPlan {
            window: Duration::from_millis(d.window_ms),
            deadline: Instant::now() + Duration::from_millis(d.deadline_ms),
        };
        let started = self.drain_tx.send_if_modified(|cur| {
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
            while h.shared.registry.admitted() > 0 && Instant::now() < plan.deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            info!(
                remaining = h.shared.registry.admitted(),
                "drain finished; shutting down"
            );
            h.shutdown();
        });
    }

    /// Stops at once: every session is closed with `ShuttingDown`.
    pub fn shutdown(&self) {
        let _ = self.shared.shutdown.send(());
    }

    pub fn is_draining(&self) -> bool {
        self.drain_tx.borrow().is_some()
    }

    pub fn sessions_live(&self) -> usize {
        self.shared.registry.live()
    }

    pub fn status(&self) -> Status {
        Status {
            region: self.shared.config.region.clone(),
            sessions_live: self.shared.registry.live(),
            sessions_admitted: self.shared.registry.admitted(),
            draining: self.is_draining(),
            udp_recv_buffer_bytes: self.buffers.recv_bytes,
            udp_send_buffer_bytes: self.buffers.send_bytes,
            tls: self.tls_status(),
        }
    }

    /// Flags, content, telemetry and rollouts (admin API).
    pub fn live(&self) -> &crate::live::Live {
        &self.shared.live
    }

    /// The region's login queue, when enabled.
    pub(crate) fn queue(&self) -> Option<&std::sync::Arc<crate::driver::queue::RegionQueue>> {
        self.shared.queue.as_ref()
    }

    /// The region's matchmaking pool (admin API: backfill requests).
    pub(crate) fn matchmaker(&self) -> &Matchmaker<AnyStore> {
        &self.shared.matchmaker
    }

    /// Cross-region transfers (admin API).
    pub fn transfers(&self) -> &Transfers {
        &self.shared.transfers
    }

    /// The inventory ledger of `region` (default: this gateway's), for operators.
    pub fn ledger(&self, region: Option<&str>) -> Option<outpost_backend::ledger::Ledger<AnyStore>> {
        let region = region.unwrap_or(self.shared.regions.local());
        Some(self.shared.services.get(region).ok()?.ledger.clone())
    }

    /// Kicks a player's session wherever it is (operator action). With
    /// cross-gateway presence (the default) this first ends the player's
    /// presence claim, which revokes every resume token of that session on
    /// every gateway of the region, and makes the gateway holding the session,
    /// whichever it is, kick it with `KickedByOperator` (its presence watch
    /// sees the ended claim); a session on this gateway is kicked at once as
    /// well. True if a session was kicked or a resumable one revoked.
    pub async fn kick(&self, player: &str) -> Result<bool, outpost_backend::presence::PresenceError> {
        let revoked = if self.shared.config.session.cross_gateway_presence {
            let end = outpost_backend::presence::SessionEnd::KickedByOperator;
            self.shared.presence.end_current(player, end).await?.is_some()
        } else {
            false
        };
        let local = self.shared.registry.kick(
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
        self.tls.reload()
    }

    /// Certificate reload figures of this gateway.
    pub fn tls_status(&self) -> TlsStatus {
        self.tls.status()
    }

    /// Sets the gauges read at scrape time (`crate::metrics::gauges`).
    pub(crate) async fn refresh_gauges(&self) {
        crate::metrics::gauges::refresh(&self.shared).await;
    }

    pub(crate) fn shutdown_signal(&self) -> broadcast::Receiver<()> {
        self.shared.shutdown.subscribe()
    }
}

/// A started gateway.
pub struct RunningGateway {
    /// The QUIC endpoint's UDP address.
    pub quic_addr: SocketAddr,
    /// The admin HTTP address.
    pub admin_addr: SocketAddr,
    /// The metrics-only listener's address, when `metrics.listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// PEM of the development CA, when development certificates are in use.
    pub dev_ca_pem: Option<Vec<u8>>,
    admin_token: crate::admin::AdminToken,
    handle: GatewayHandle,
    task: JoinHandle<()>,
}

impl RunningGateway {
    pub fn handle(&self) -> GatewayHandle {
        self.handle.clone()
    }

    /// The admin API's bearer token (for tests and tools on this host).
    pub fn admin_token(&self) -> &str {
        self.admin_token.as_str()
    }

    /// Waits until the gateway has stopped (after a drain or a shutdown) and every
    /// connection task has finished.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Starts a gateway: validates the config, binds QUIC and admin, opens the
/// embedded store under `data_dir` (this region's keyspace and the global one).
pub async fn start(config: GatewayConfig) -> Result<RunningGateway, StartError> {
    config.validate()?;
    let region_cfg = config.region_store();
    let store = AnyStore::open(&region_cfg).await?;
    let global = match &config.global_store {
        Some(g) => AnyStore::open(g).await?,
        None => store.clone(),
    };
    let mut regions = Regions::new(&config.region, store, region_cfg.backend == BackendKind::Embedded);
    for remote in &config.remote_regions {
        regions.insert(&remote.name, AnyStore::open(&remote.store).await?);
    }
    start_with_stores(config, global, regions).await
}

/// Starts a gateway on an already-open store. Several gateways of a region share
/// one store this way: in production a FoundationDB cluster; in tests one embedded
/// store shared by gateways of the same process (an embedded data directory
/// belongs to one process, so separate gateway processes each need their own).
pub async fn start_with_store(config: GatewayConfig, store: AnyStore) -> Result<RunningGateway, StartError> {
    let regions = Regions::new(&config.region, store.clone(), true);
    start_with_stores(config, store, regions).await
}

/// Starts a gateway on open stores: the global one (identity) and the regions it
/// reaches (its own first).
pub async fn start_with_stores(
    config: GatewayConfig,
    global: AnyStore,
    regions: Regions,
) -> Result<RunningGateway, StartError> {
    config.validate()?;
    let admin_token = crate::admin::auth::resolve(&config)?;
    let regions = Arc::new(regions);
    crate::metrics::install();
    outpost_backend::store::metrics::describe(global.backend_name());
    for (_, store) in regions.iter() {
        outpost_backend::store::metrics::describe(store.backend_name());
    }
    let (tls, tls_stamp) = ServerIdentity::load_stamped(&config.tls)?;
    let (socket, buffers) =
        endpoint::bind_udp(&config).map_err(|source| StartError::Bind { what: "UDP", source })?;
    metrics::gauge!("outpost_udp_recv_buffer_bytes").set(buffers.recv_bytes as f64);
    metrics::gauge!("outpost_udp_send_buffer_bytes").set(buffers.send_bytes as f64);
    let bind_quic = |source| StartError::Bind {
        what: "QUIC endpoint",
        source,
    };
    let server_config = endpoint::server_config(&config, tls.rustls_config()?).map_err(bind_quic)?;
    let endpoint = endpoint::endpoint(&config, server_config.clone(), socket).map_err(bind_quic)?;
    let tls_reloader = Arc::new(TlsReloader::new(
        CertFiles::of(&config.tls),
        endpoint.clone(),
        server_config,
        tls_stamp,
        tls.not_after(),
    ));
    let quic_addr = endpoint
        .local_addr()
        .map_err(|source| StartError::Bind { what: "UDP", source })?;

    let global_store = global.clone();
    let identity = Identity::open(global).await?;
    let transfers = Transfers::new(identity.clone(), regions.clone());
    let s = &config.session;
    let auth = Authenticator::new(
        identity,
        config.region.clone(),
        Duration::from_secs(s.session_token_ttl_secs),
        Duration::from_secs(s.resume_window_secs),
    )
    .await?;

    let catalog = Arc::new(config.inventory.catalog()?);
    let local_store = regions
        .store(&config.region)
        .expect("the local region always has a store");
    let invalid = |e: String| StartError::Config(crate::config::ConfigError::Invalid(e));
    let liveness = Liveness::new(local_store.clone(), &config.region).map_err(|e| invalid(e.to_string()))?;
    let incarnation = liveness
        .register(&quic_addr.to_string(), config.liveness.expiry_ms, now_ms())
        .await
        .map_err(|e| invalid(format!("cannot register in the liveness registry: {e}")))?;
    info!(
        incarnation = format!("{incarnation:016x}"),
        "registered this gateway incarnation"
    );
    let presence = Presence::new(global_store.clone()).with_incarnation(incarnation);
    let holder = outpost_backend::liveness::holder_id(&quic_addr.to_string(), incarnation);
    let queue = start_queue(&config, &local_store, &auth, holder).await?;
    let pool = Matchmaker::new(
        local_store,
        &config.region,
        config.matchmaking.pool(&config.region)?,
    )
    .map_err(|e| invalid(e.to_string()))?;
    let matchmaker = pool.clone().with_incarnation(incarnation);
    let (drain_tx, drain_rx) = watch::channel(None);
    let (shutdown, _) = broadcast::channel(1);
    let l = &config.limits;
    let limits = SessionLimits {
        max_channels: l.max_channels,
        max_in_flight_per_channel: l.max_in_flight_per_channel,
        outbound_queue_frames: l.outbound_queue_frames,
        outbound_queue_bytes: l.outbound_queue_bytes,
        request_rate_per_sec: l.request_rate_per_sec,
        request_burst: l.request_burst,
        control_rate_per_sec: l.control_rate_per_sec,
        control_burst: l.control_burst,
        idle_timeout: Duration::from_millis(s.idle_timeout_ms),
    };
    let live = Live::start(global_store.clone(), &shutdown)
        .await
        .map_err(|e| StartError::Config(crate::config::ConfigError::Invalid(e.to_string())))?;
    let services = Arc::new(ServiceCache::new(regions.clone(), catalog));
    let mut router =
        Router::with_defaults(l.max_frame_size, services.clone(), config.inventory.client_grants)
            .with_live(live.clone());
    router.insert(
        outpost_schema::ChannelKind::Matchmaking,
        Arc::new(crate::channels::matchmaking::MatchmakingService::new(
            matchmaker.clone(),
            services.clone(),
        )),
    );
    let (tickets, ended_sessions) =
        crate::driver::tickets::TicketReaper::new(Duration::from_secs(config.session.resume_window_secs));
    let shared = Arc::new(Shared {
        tickets,
        registry: Registry::new(l.max_sessions),
        router,
        matchmaker: matchmaker.clone(),
        mm_stats: std::sync::Mutex::new(Vec::new()),
        live,
        services,
        regions,
        transfers: transfers.clone(),
        presence,
        name: quic_addr.to_string(),
        limits,
        login: Arc::new(login_config(&config)),
        auth,
        drain: drain_rx,
        shutdown,
        handshaking: AtomicUsize::new(0),
        queue: queue.clone(),
        config,
    });
    let handle = GatewayHandle {
        shared: shared.clone(),
        drain_tx: Arc::new(drain_tx),
        buffers,
        tls: tls_reloader.clone(),
    };
    let admin_addr = crate::admin::serve(shared.config.admin_listen, handle.clone(), &admin_token)
        .await
        .map_err(|source| StartError::Bind {
            what: "admin HTTP",
            source,
        })?;
    let metrics_addr = match shared.config.metrics.listen {
        Some(addr) => Some(
            crate::metrics::listener::serve(addr, handle.clone())
                .await
                .map_err(|source| StartError::Bind {
                    what: "metrics HTTP",
                    source,
                })?,
        ),
        None => None,
    };
    info!(%quic_addr, %admin_addr, ?metrics_addr, region = %shared.config.region, "gateway listening");

    let poll = shared.config.tls.reload_check_interval_ms;
    if poll > 0 {
        tls_reloader.spawn_polling(Duration::from_millis(poll), shared.shutdown.subscribe());
    }
    if let Some(q) = queue {
        tokio::spawn(q.run(shared.shutdown.subscribe()));
    }
    tokio::spawn(async move { transfers.resume_pending().await });
    spawn_matchmaker_workers(&shared, matchmaker)?;
    tokio::spawn(crate::liveness::heartbeat(
        liveness.clone(),
        incarnation,
        shared.config.liveness.clone(),
        shared.shutdown.clone(),
    ));
    tokio::spawn(crate::retention::run(
        global_store.clone(),
        shared.config.liveness.clone(),
        shared.shutdown.subscribe(),
    ));
    tokio::spawn(crate::liveness::sweep(
        liveness,
        pool,
        Presence::new(global_store),
        crate::liveness::SweepAlso {
            ledger: shared
                .services
                .get(&shared.config.region)
                .ok()
                .map(|s| s.ledger.clone()),
            queue: crate::liveness::sweep_queue(&shared),
        },
        outpost_backend::liveness::holder_id(&shared.name, incarnation),
        shared
            .config
            .liveness
            .sweep(shared.config.session.resume_window_secs * 1000),
        shared.shutdown.subscribe(),
    ));
    tokio::spawn(crate::driver::tickets::run(
        shared.clone(),
        ended_sessions,
        shared.shutdown.subscribe(),
    ));
    let task = tokio::spawn(accept_loop(shared, endpoint, tls_reloader));
    Ok(RunningGateway {
        quic_addr,
        admin_addr,
        metrics_addr,
        dev_ca_pem: tls.dev_ca_pem,
        admin_token,
        handle,
        task,
    })
}

/// Starts this gateway's matchmaker workers; they stop with the gateway.
/// The login rules' settings, from the gateway's configuration.
fn login_config(config: &GatewayConfig) -> LoginConfig {
    let s = &config.session;
    LoginConfig {
        region: config.region.clone(),
        hello_timeout: config.hello_timeout(),
        max_frame_size: config.limits.max_frame_size,
        heartbeat_interval_ms: s.heartbeat_interval_ms.try_into().unwrap_or(u32::MAX),
        idle_timeout_ms: s.idle_timeout_ms.try_into().unwrap_or(u32::MAX),
        max_in_flight_per_channel: config.limits.max_in_flight_per_channel,
        busy_retry_after_ms: config.admission.busy_retry_after_ms,
        busy_retry_jitter_ms: config.admission.busy_retry_jitter_ms,
        cross_gateway_presence: s.cross_gateway_presence,
        foreign_login_policy: config.foreign_login_policy,
        transfer_timeout: LOGIN_TRANSFER_TIMEOUT,
        queue: config.queue.enabled,
    }
}

/// The region's login queue, when enabled: writes the configured budget if
/// none is stored yet.
async fn start_queue(
    config: &GatewayConfig,
    store: &outpost_backend::store::AnyStore,
    auth: &Authenticator,
    holder: String,
) -> Result<Option<Arc<crate::driver::queue::RegionQueue>>, StartError> {
    if !config.queue.enabled {
        return Ok(None);
    }
    let invalid = |e: outpost_backend::queue::QueueError| {
        StartError::Config(crate::config::ConfigError::Invalid(format!("queue: {e}")))
    };
    let region = outpost_backend::keyspace::RegionName::new(config.region.as_str())
        .map_err(|e| StartError::Config(crate::config::ConfigError::Invalid(e.to_string())))?;
    let queue =
        outpost_backend::queue::Queue::new(store.clone(), region, config.queue.settings(), auth.queue_keys())
            .map_err(invalid)?;
    let rq = crate::driver::queue::RegionQueue::start(queue, config.queue.clone(), holder)
        .await
        .map_err(invalid)?;
    Ok(Some(Arc::new(rq)))
}

/// How long a login waits for a transfer of its player to this region (the
/// `transfer` foreign-login policy) before answering `Unavailable`.
const LOGIN_TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);

fn spawn_matchmaker_workers(
    shared: &Arc<Shared>,
    matchmaker: Matchmaker<AnyStore>,
) -> Result<(), StartError> {
    let m = &shared.config.matchmaking;
    let servers: Arc<dyn ServerAllocator> = Arc::new(StaticAllocator::new([(
        shared.config.region.clone(),
        m.servers.clone(),
    )]));
    if m.workers > 0 {
        crate::metrics::gauges::register_matchmaking(&matchmaker);
    }
    for i in 0..m.workers {
        let owner = format!("{}/mm-{i}", shared.name);
        let worker = Worker::new(matchmaker.clone(), WorkerConfig::new(owner), servers.clone())
            .map_err(|e| StartError::Config(crate::config::ConfigError::Invalid(e.to_string())))?;
        shared
            .mm_stats
            .lock()
            .expect("mm stats lock")
            .push(worker.stats());
        let mut stop = shared.shutdown.subscribe();
        tokio::spawn(worker.run(async move {
            let _ = stop.recv().await;
        }));
    }
    Ok(())
}

async fn accept_loop(shared: Arc<Shared>, endpoint: quinn::Endpoint, tls: Arc<TlsReloader>) {
    let mut shutdown = shared.shutdown.subscribe();
    // Every connection task holds a clone; `recv` returns `None` once all are gone.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(i) => i,
                None => break,
            },
            _ = shutdown.recv() => break,
        };
        if must_validate(&shared) && !incoming.remote_address_validated() {
            metrics::counter!("outpost_quic_retries_total").increment(1);
            if let Err(e) = incoming.retry() {
                warn!(error = %e, "QUIC retry failed");
            }
            continue;
        }
        let shared = shared.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            serve_connection(shared, incoming).await;
            drop(done);
        });
    }
    drop(done_tx);
    // Handles outlive the gateway; the endpoint (and its socket) must not.
    tls.detach();
    // Sessions see the same shutdown signal and close themselves.
    let _ = tokio::time::timeout(Duration::from_secs(5), done_rx.recv()).await;
    endpoint.close(
        crate::driver::var_code(outpost_schema::ErrorCode::ShuttingDown),
        b"gateway stopped",
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    info!("gateway stopped");
}

fn must_validate(shared: &Shared) -> bool {
    let a = &shared.config.admission;
    match a.quic_retry {
        QuicRetry::Off => false,
        QuicRetry::On => true,
        QuicRetry::Auto => shared.handshaking.load(Ordering::Relaxed) > a.retry_above_handshakes,
    }
}

//! Starting and stopping a gateway: [`start_with_stores`] builds the session
//! dependencies (`SessionDeps`) and the control plane
//! (`control::ControlPlane`, which also holds the
//! [`GatewayHandle`] that drains and stops it), serves the admin API, starts
//! the background tasks and runs the accept loop.
//!
//! Shutdown follows mini-redis: a broadcast signal tells every task to stop, and a
//! completion channel (every connection task holds a sender clone) tells the
//! gateway when the last one is gone. The admin and metrics listeners stop alike
//! (`admin::conn`), and [`RunningGateway::wait`] awaits them too.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use outpost_backend::identity::{Identity, IdentityError};
use outpost_backend::liveness::Liveness;
use outpost_backend::matchmaker::Matchmaker;
use outpost_backend::presence::Presence;
use outpost_backend::store::{AnyStore, BackendKind, OpenStoreError};
use outpost_backend::time::now_ms;
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::auth::Authenticator;
use crate::channels::region_services::ServiceCache;
use crate::channels::Router;
use crate::config::{ConfigError, GatewayConfig, QuicRetry};
use crate::control::{Background, ControlPlane};
pub use crate::control::{GatewayHandle, Status};
use crate::driver::{serve_connection, SessionDeps};
use crate::endpoint::{self, SocketBuffers};
use crate::live::Live;
use crate::regions::Regions;
use crate::registry::Registry;
use crate::session::{LoginConfig, SessionLimits};
use crate::tls::{CertFiles, ServerIdentity, TlsError, TlsReloader};
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

impl StartError {
    /// A setting the backend refused when the gateway built its services.
    pub(crate) fn invalid(e: impl std::fmt::Display) -> Self {
        StartError::Config(ConfigError::Invalid(e.to_string()))
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
    /// The admin and metrics listeners' serving tasks.
    http: Vec<JoinHandle<()>>,
}

impl RunningGateway {
    pub fn handle(&self) -> GatewayHandle {
        self.handle.clone()
    }

    /// The admin API's bearer token (for tests and tools on this host).
    pub fn admin_token(&self) -> &str {
        self.admin_token.as_str()
    }

    /// Waits until the gateway has stopped (after a drain or a shutdown), every
    /// connection task has finished and the admin and metrics listeners have
    /// answered the requests in progress at the shutdown (at most
    /// `admin_timeouts.shutdown_grace_ms`, beside the sessions' close).
    pub async fn wait(self) {
        let http = futures::future::join_all(self.http);
        let _ = tokio::join!(self.task, http);
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
    describe_metrics(&global, &regions);
    let quic = bind_quic(&config)?;

    let identity = Identity::open(global.clone()).await?;
    let transfers = Transfers::new(identity.clone(), regions.clone());
    let auth = authenticator(&config, identity).await?;
    let local_store = regions
        .store(&config.region)
        .expect("the local region always has a store");
    let (liveness, incarnation) = register_incarnation(&config, &local_store, quic.addr).await?;
    let presence = Presence::new(global.clone()).with_incarnation(incarnation);
    let holder = outpost_backend::liveness::holder_id(&quic.addr.to_string(), incarnation);
    let queue = start_queue(&config, &local_store, &auth, holder).await?;
    let pool = Matchmaker::new(
        local_store,
        &config.region,
        config.matchmaking.pool(&config.region)?,
    )
    .map_err(StartError::invalid)?;
    let matchmaker = pool.clone().with_incarnation(incarnation);
    let (drain_tx, drain_rx) = watch::channel(None);
    let (shutdown, _) = broadcast::channel(1);
    let live = Live::start(global.clone(), &shutdown)
        .await
        .map_err(StartError::invalid)?;
    let services = Arc::new(ServiceCache::new(
        regions.clone(),
        Arc::new(config.inventory.catalog()?),
    ));
    let router = router(&config, &services, &live, &matchmaker);
    let (tickets, ended_sessions) =
        crate::driver::tickets::TicketReaper::new(Duration::from_secs(config.session.resume_window_secs));
    let sessions = Arc::new(SessionDeps {
        tickets,
        registry: Registry::new(config.limits.max_sessions),
        router,
        transfers,
        regions,
        presence,
        name: quic.addr.to_string(),
        region: config.region.as_str().into(),
        limits: Arc::new(session_limits(&config)),
        login: Arc::new(login_config(&config)),
        auth,
        drain: drain_rx,
        shutdown,
        handshaking: AtomicUsize::new(0),
        queue,
        config,
    });
    let control = Arc::new(ControlPlane {
        sessions: sessions.clone(),
        matchmaker,
        mm_stats: std::sync::Mutex::new(Vec::new()),
        live,
        services,
        drain_tx,
        buffers: quic.buffers,
        tls: quic.tls.clone(),
    });
    let handle = GatewayHandle::new(control.clone());
    let (admin_addr, metrics_addr, http) = serve_http(&sessions.config, &handle, &admin_token).await?;
    info!(quic_addr = %quic.addr, %admin_addr, ?metrics_addr, region = %sessions.config.region, "gateway listening");

    control.spawn_background(Background {
        liveness,
        incarnation,
        pool,
        global,
        ended_sessions,
    })?;
    let pressure = quic.pressure.clone();
    if sessions.config.admission.refuse_while_dropping {
        // Off, nothing samples the socket's drop counter.
        tokio::spawn(pressure.clone().run(sessions.shutdown.subscribe()));
    }
    // Subscribed here, not in the task: a shutdown sent before the task's
    // first poll (a SIGTERM right after start) would otherwise be missed,
    // and the loop would wait for connections forever.
    let shutdown = sessions.shutdown.subscribe();
    let task = tokio::spawn(accept_loop(sessions, shutdown, quic.endpoint, quic.tls, pressure));
    Ok(RunningGateway {
        quic_addr: quic.addr,
        admin_addr,
        metrics_addr,
        dev_ca_pem: quic.dev_ca_pem,
        admin_token,
        handle,
        task,
        http,
    })
}

/// Describes the metrics of the gateway and of every store it opened.
fn describe_metrics(global: &AnyStore, regions: &Regions) {
    crate::metrics::install();
    outpost_backend::store::metrics::describe(global.backend_name());
    for (_, store) in regions.iter() {
        outpost_backend::store::metrics::describe(store.backend_name());
    }
}

/// The bound QUIC endpoint and what comes with it.
struct QuicListener {
    endpoint: quinn::Endpoint,
    /// The endpoint's UDP address.
    addr: SocketAddr,
    /// The UDP socket's buffer sizes, as the kernel granted them.
    buffers: SocketBuffers,
    /// Whether the kernel is dropping datagrams at the socket.
    pressure: Arc<crate::overload::ReceivePressure>,
    /// Reloads the endpoint's certificate.
    tls: Arc<TlsReloader>,
    /// PEM of the development CA, when development certificates are in use.
    dev_ca_pem: Option<Vec<u8>>,
}

/// Loads the certificate, binds the UDP socket and makes the QUIC endpoint.
fn bind_quic(config: &GatewayConfig) -> Result<QuicListener, StartError> {
    let (tls, tls_stamp) = ServerIdentity::load_stamped(&config.tls)?;
    let (socket, buffers) =
        endpoint::bind_udp(config).map_err(|source| StartError::Bind { what: "UDP", source })?;
    crate::metrics::udp::watch(&socket);
    let pressure = crate::overload::ReceivePressure::of(&socket, buffers.recv_bytes);
    metrics::gauge!("outpost_udp_recv_buffer_bytes").set(buffers.recv_bytes as f64);
    metrics::gauge!("outpost_udp_send_buffer_bytes").set(buffers.send_bytes as f64);
    let bind_quic = |source| StartError::Bind {
        what: "QUIC endpoint",
        source,
    };
    let server_config = endpoint::server_config(config, tls.rustls_config()?).map_err(bind_quic)?;
    let endpoint = endpoint::endpoint(config, server_config.clone(), socket).map_err(bind_quic)?;
    let reloader = Arc::new(TlsReloader::new(
        CertFiles::of(&config.tls),
        endpoint.clone(),
        server_config,
        tls_stamp,
        tls.not_after(),
    ));
    let addr = endpoint
        .local_addr()
        .map_err(|source| StartError::Bind { what: "UDP", source })?;
    Ok(QuicListener {
        endpoint,
        addr,
        buffers,
        pressure,
        tls: reloader,
        dev_ca_pem: tls.dev_ca_pem,
    })
}

/// The authenticator over the global identity service, with the configured
/// token lifetimes.
async fn authenticator(
    config: &GatewayConfig,
    identity: Identity<AnyStore>,
) -> Result<Authenticator, StartError> {
    let s = &config.session;
    let auth = Authenticator::new(
        identity,
        config.region.clone(),
        Duration::from_secs(s.session_token_ttl_secs),
        Duration::from_secs(s.resume_window_secs),
    )
    .await?;
    Ok(auth)
}

/// Registers this gateway incarnation in the region's liveness registry.
async fn register_incarnation(
    config: &GatewayConfig,
    store: &AnyStore,
    quic_addr: SocketAddr,
) -> Result<(Liveness<AnyStore>, u64), StartError> {
    let liveness = Liveness::new(store.clone(), &config.region).map_err(StartError::invalid)?;
    let incarnation = liveness
        .register(&quic_addr.to_string(), config.liveness.expiry_ms, now_ms())
        .await
        .map_err(|e| StartError::invalid(format!("cannot register in the liveness registry: {e}")))?;
    info!(
        incarnation = format!("{incarnation:016x}"),
        "registered this gateway incarnation"
    );
    Ok((liveness, incarnation))
}

/// The channel router: the default services, flags and content, matchmaking.
fn router(
    config: &GatewayConfig,
    services: &Arc<ServiceCache>,
    live: &Arc<Live>,
    matchmaker: &Matchmaker<AnyStore>,
) -> Router {
    let mut router = Router::with_defaults(
        config.limits.max_frame_size,
        services.clone(),
        config.inventory.client_grants,
        config.session.push_min_interval(),
    )
    .with_live(live.clone());
    router.insert(
        outpost_schema::ChannelKind::Matchmaking,
        Arc::new(crate::channels::matchmaking::MatchmakingService::new(
            matchmaker.clone(),
            services.clone(),
        )),
    );
    router
}

/// Serves the admin API and, when `metrics.listen` is set, the metrics-only
/// listener; their addresses and serving tasks.
async fn serve_http(
    config: &GatewayConfig,
    handle: &GatewayHandle,
    admin_token: &crate::admin::AdminToken,
) -> Result<(SocketAddr, Option<SocketAddr>, Vec<JoinHandle<()>>), StartError> {
    let (admin_addr, admin) = crate::admin::serve(
        config.admin_listen,
        handle.clone(),
        admin_token,
        config.admin_timeouts,
    )
    .await
    .map_err(|source| StartError::Bind {
        what: "admin HTTP",
        source,
    })?;
    let mut served = vec![admin];
    let metrics_addr = match config.metrics.listen {
        Some(addr) => {
            let (addr, metrics) =
                crate::metrics::listener::serve(addr, handle.clone(), config.admin_timeouts)
                    .await
                    .map_err(|source| StartError::Bind {
                        what: "metrics HTTP",
                        source,
                    })?;
            served.push(metrics);
            Some(addr)
        }
        None => None,
    };
    Ok((admin_addr, metrics_addr, served))
}

/// Every session's limits, from the gateway's configuration.
pub(crate) fn session_limits(config: &GatewayConfig) -> SessionLimits {
    let l = &config.limits;
    SessionLimits {
        max_channels: l.max_channels,
        max_in_flight_per_channel: l.max_in_flight_per_channel,
        outbound_queue_frames: l.outbound_queue_frames,
        outbound_queue_bytes: l.outbound_queue_bytes,
        request_rate_per_sec: l.request_rate_per_sec,
        request_burst: l.request_burst,
        control_rate_per_sec: l.control_rate_per_sec,
        control_burst: l.control_burst,
        idle_timeout: Duration::from_millis(config.session.idle_timeout_ms),
        max_refused_requests_per_window: l.max_refused_requests_per_window,
        max_failed_channels_per_window: l.max_failed_channels_per_window,
    }
}

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
    let invalid = |e: outpost_backend::queue::QueueError| StartError::invalid(format!("queue: {e}"));
    let region =
        outpost_backend::keyspace::RegionName::new(config.region.as_str()).map_err(StartError::invalid)?;
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

async fn accept_loop(
    shared: Arc<SessionDeps>,
    mut shutdown: tokio::sync::broadcast::Receiver<()>,
    endpoint: quinn::Endpoint,
    tls: Arc<TlsReloader>,
    pressure: Arc<crate::overload::ReceivePressure>,
) {
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
        if shared.config.admission.refuse_while_dropping && pressure.is_behind() {
            // The cheapest answer there is (no TLS, one small packet), while
            // the receive path cannot keep up with the sessions already in.
            metrics::counter!("outpost_quic_refused_total", "reason" => "receive_drops").increment(1);
            incoming.refuse();
            continue;
        }
        if must_validate(&shared) && !incoming.remote_address_validated() {
            metrics::counter!("outpost_quic_retries_total").increment(1);
            if let Err(e) = incoming.retry() {
                warn!(error = %e, "QUIC retry failed");
            }
            continue;
        }
        let shared = shared.clone();
        let done = done_tx.clone();
        // The connection's future is made here, not inside an `async` block:
        // the block would keep room for `incoming` (384 bytes) for the
        // session's life, beside the future's own.
        let connection = serve_connection(shared, incoming);
        tokio::spawn(connection.map(move |()| drop(done)));
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

fn must_validate(shared: &SessionDeps) -> bool {
    let a = &shared.config.admission;
    match a.quic_retry {
        QuicRetry::Off => false,
        QuicRetry::On => true,
        QuicRetry::Auto => shared.handshaking.load(Ordering::Relaxed) > a.retry_above_handshakes,
    }
}

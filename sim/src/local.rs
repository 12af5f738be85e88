//! `--local` / `--spawn-gateway`: one gateway started inside the sim process,
//! on loopback (`127.0.0.1`, free ports), with the embedded store and
//! development certificates in a temporary directory that is removed
//! afterwards. The gateway runs on a tokio runtime of its own (2 worker
//! threads) inside the process, so that thousands of virtual players on the
//! sim's runtime cannot starve its accept loop and timers. `outpost-sim
//! gateway` runs the same gateway as a process of its own, so that the sim and
//! the gateway can be measured apart. A convenience for one-command demos and tests: the gateway
//! shares the sim's runtime and CPU, so figures for capacity planning come
//! from gateways run as their own processes (`--gateway`).

use std::net::SocketAddr;

use anyhow::Context;
use outpost_gateway::{GatewayConfig, RunningGateway};
use tempfile::TempDir;

/// Name of the in-process gateway's runtime threads (threads they start
/// inherit it unless they name themselves): how `--local` finds the
/// gateway's CPU time (see [`crate::gateway_probe`]).
pub const THREAD_NAME: &str = "local-gateway";

/// A running in-process gateway. Dropping it shuts the gateway down.
pub struct LocalGateway {
    /// Its QUIC address (loopback).
    pub addr: SocketAddr,
    /// PEM of its development CA.
    pub ca_pem: Vec<u8>,
    /// Its metrics-only listener (`GET /metrics`, loopback): for
    /// `live --gateway-metrics` when it runs as `outpost-sim gateway`.
    pub metrics_addr: Option<SocketAddr>,
    running: Option<RunningGateway>,
    /// The gateway's own runtime; shut down in the background at the end (a
    /// runtime cannot be dropped from async code).
    runtime: Option<tokio::runtime::Runtime>,
    _dir: TempDir,
}

/// The local gateway's matchmaking pool for `scenario`: it serves every region's
/// players as region `local`, so the scenario's queue goes into its pool without
/// cross-region fallback. `None` when the scenario has no matchmaking.
pub fn local_pool(
    scenario: &crate::scenario::Scenario,
) -> Option<outpost_backend::matchmaker::MatchmakerConfig> {
    scenario.matchmaking.as_ref().map(|m| {
        let mut c = crate::model::matchmaker_config(scenario, m);
        c.regions = vec![outpost_backend::matchmaker::RegionConfig {
            name: "local".into(),
            neighbours: vec![],
        }];
        for q in &mut c.queues {
            q.cross_region = None;
        }
        c
    })
}

/// Gateway settings an A/B run of `outpost-sim gateway` can change; the
/// defaults are the gateway's own.
#[derive(Debug, Clone)]
pub struct GatewayKnobs {
    /// `admission.refuse_while_dropping` (on by default).
    pub refuse_while_dropping: bool,
    /// `transport.udp_recv_buffer_bytes`; `None`: the gateway's default
    /// (8 MiB, which the kernel caps at `net.core.rmem_max`).
    pub udp_recv_buffer_bytes: Option<usize>,
}

impl Default for GatewayKnobs {
    fn default() -> Self {
        GatewayKnobs {
            refuse_while_dropping: true,
            udp_recv_buffer_bytes: None,
        }
    }
}

impl LocalGateway {
    /// Starts a gateway admitting up to `max_sessions` sessions, with the
    /// scenario's matchmaking queue (if any) in its pool and client grants
    /// on (`inventory.client_grants`, for the sim's inventory grants). The
    /// other limits are the gateway's defaults: per-session bounds, 8 MiB UDP
    /// buffers (capped by `net.core.rmem_max`), QUIC Retry only above 512
    /// handshakes in progress.
    pub async fn start(
        max_sessions: usize,
        pool: Option<outpost_backend::matchmaker::MatchmakerConfig>,
    ) -> anyhow::Result<LocalGateway> {
        Self::start_on(
            "127.0.0.1:0".parse()?,
            max_sessions,
            pool,
            None,
            GatewayKnobs::default(),
        )
        .await
    }

    /// [`LocalGateway::start`] on a given QUIC address (`outpost-sim gateway`),
    /// with `store` as the region's and the global store (default: an embedded
    /// store in the temporary directory), and the settings of `knobs` (the
    /// gateway's defaults unless an A/B run changes them).
    pub async fn start_on(
        listen: std::net::SocketAddr,
        max_sessions: usize,
        pool: Option<outpost_backend::matchmaker::MatchmakerConfig>,
        store: Option<outpost_backend::store::StoreConfig>,
        knobs: GatewayKnobs,
    ) -> anyhow::Result<LocalGateway> {
        let dir = tempfile::tempdir().context("temporary directory for the local gateway")?;
        let mut config = GatewayConfig {
            listen,
            admin_listen: "127.0.0.1:0".parse()?,
            data_dir: dir.path().join("data"),
            global_store: store.clone(),
            store,
            ..GatewayConfig::default()
        };
        config.tls.dev_certs_dir = dir.path().join("certs");
        config.limits.max_sessions = max_sessions.max(1);
        config.metrics.listen = Some("127.0.0.1:0".parse()?);
        // Players grant themselves currency (the sim's inventory grants).
        config.inventory.client_grants = true;
        config.admission.refuse_while_dropping = knobs.refuse_while_dropping;
        if let Some(bytes) = knobs.udp_recv_buffer_bytes {
            config.transport.udp_recv_buffer_bytes = bytes;
        }
        if pool.is_some() {
            config.matchmaking.pool = pool;
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(THREAD_NAME)
            .enable_all()
            .build()
            .context("the local gateway's runtime")?;
        let running = runtime
            .spawn(outpost_gateway::start(config))
            .await
            .context("the local gateway's start task")?
            .context("starting the local gateway")?;
        Ok(LocalGateway {
            addr: running.quic_addr,
            metrics_addr: running.metrics_addr,
            ca_pem: running
                .dev_ca_pem
                .clone()
                .context("the local gateway has no dev CA")?,
            running: Some(running),
            runtime: Some(runtime),
            _dir: dir,
        })
    }

    /// Stops the gateway and waits (at most 10 s) until it has.
    pub async fn stop(mut self) {
        if let (Some(r), Some(rt)) = (self.running.take(), &self.runtime) {
            r.handle().shutdown();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), rt.spawn(r.wait())).await;
        }
    }
}

impl Drop for LocalGateway {
    fn drop(&mut self) {
        if let Some(r) = &self.running {
            r.handle().shutdown();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

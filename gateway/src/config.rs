//! Gateway configuration: plain structs, one TOML file, validated once at startup.
//!
//! Precedence, lowest to highest: built-in defaults, the TOML file
//! (`--config`), environment variables (`OUTPOST_*`), command-line flags. With no
//! file at all the defaults run a single-region gateway on UDP 4433 with the
//! embedded store under `./data` and development certificates under `certs/dev`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_backend::keyspace::RegionName;
use outpost_backend::store::StoreConfig;
use outpost_backend::transfer::ForeignLoginPolicy;
use serde::Deserialize;
use thiserror::Error;

#[path = "config_queue.rs"]
mod queue;
pub use queue::QueueConfig;
#[path = "config_transport.rs"]
mod transport;
pub use transport::TransportConfig;
#[path = "config_log.rs"]
mod log_section;
#[path = "config_session.rs"]
mod session;
pub use log_section::{LogConfig, LogFormat, DEFAULT_LOG_FILTER};
pub use session::SessionConfig;

/// Everything a gateway process needs to know. Every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// UDP address of the QUIC endpoint. Default `0.0.0.0:4433`.
    pub listen: SocketAddr,
    /// TCP address of the admin HTTP API (`/metrics`, `/healthz`, `/readyz`,
    /// `POST /drain`). Default `127.0.0.1:9433`: loopback only, because drain and
    /// session data must not be reachable from the internet. Port 0 picks a free port.
    pub admin_listen: SocketAddr,
    /// The admin API's bearer token (env `OUTPOST_ADMIN_TOKEN`): every admin
    /// route but `/healthz`, `/readyz`, `/metrics` and `/openapi.json` needs `Authorization:
    /// Bearer <token>`. 32..=512 bytes of printable ASCII without spaces
    /// (e.g. `openssl rand -hex 32`); shorter tokens are refused at startup.
    /// Default: none, see `admin_token_file`. Prefer the file or the
    /// environment over writing the token into a config file that others read.
    pub admin_token: Option<crate::admin::AdminToken>,
    /// A file holding the admin token (surrounding whitespace ignored), read at
    /// startup; it must exist. Default: none, in which case (and with no
    /// `admin_token`) the gateway uses `<data_dir>/admin.token`, generating a
    /// random 256-bit token there (mode 0600) on first start and reusing it
    /// afterwards. `admin_token` and `admin_token_file` exclude each other.
    pub admin_token_file: Option<PathBuf>,
    /// How long the admin API waits for a client's request head and body
    /// (`crate::admin::AdminTimeouts`).
    pub admin_timeouts: crate::admin::AdminTimeouts,
    /// Name of the region this gateway serves. Default `local`.
    pub region: String,
    /// Directory of the embedded store (region and global keyspaces). Default `./data`.
    pub data_dir: PathBuf,
    /// This region's store. Default: embedded, under `data_dir/store`, which then
    /// also holds the global keyspace and every other region's keyspace (one
    /// process owns an embedded store, so this is the single-gateway layout).
    pub store: Option<StoreConfig>,
    /// The global store (identity, signing keys, transfer records). Default: the
    /// region's store.
    pub global_store: Option<StoreConfig>,
    /// Other regions whose stores this gateway may reach: serve-via-home logins
    /// and cross-region transfers. With an embedded `store`, every region's
    /// keyspace is in that one store and this list may stay empty.
    pub remote_regions: Vec<RemoteRegion>,
    /// What to do when a player whose home is another region logs in here:
    /// `serve_via_home` (default; read and write their home region's keyspace),
    /// `redirect` (Reject `WrongRegion` naming the home region), or `transfer`
    /// (move the player's data here, then serve locally).
    pub foreign_login_policy: ForeignLoginPolicy,
    pub tls: TlsConfig,
    pub inventory: InventoryConfig,
    pub matchmaking: MatchmakingConfig,
    pub limits: LimitsConfig,
    pub session: SessionConfig,
    pub admission: AdmissionConfig,
    /// The region's launch login queue (off by default).
    pub queue: QueueConfig,
    pub drain: DrainConfig,
    pub transport: TransportConfig,
    /// This process's registration in the region's liveness registry and the
    /// orphan sweep / retention GC it takes part in (`crate::liveness`).
    pub liveness: crate::liveness::LivenessSettings,
    /// The optional metrics-only listener (`crate::metrics::listener`).
    pub metrics: crate::metrics::listener::MetricsConfig,
    /// Log format and default filter (`RUST_LOG` overrides the filter).
    pub log: LogConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: "0.0.0.0:4433".parse().expect("valid literal"),
            admin_listen: "127.0.0.1:9433".parse().expect("valid literal"),
            admin_token: None,
            admin_token_file: None,
            admin_timeouts: Default::default(),
            region: "local".into(),
            data_dir: PathBuf::from("data"),
            store: None,
            global_store: None,
            remote_regions: Vec::new(),
            foreign_login_policy: ForeignLoginPolicy::default(),
            tls: TlsConfig::default(),
            inventory: InventoryConfig::default(),
            matchmaking: MatchmakingConfig::default(),
            limits: LimitsConfig::default(),
            session: SessionConfig::default(),
            admission: AdmissionConfig::default(),
            queue: QueueConfig::default(),
            drain: DrainConfig::default(),
            transport: TransportConfig::default(),
            liveness: crate::liveness::LivenessSettings::default(),
            metrics: Default::default(),
            log: LogConfig::default(),
        }
    }
}

/// Another region's store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteRegion {
    /// The region's name (`[a-z0-9-]`, 1..=32 characters).
    pub name: String,
    /// Its store.
    pub store: StoreConfig,
}

/// Certificates. Production deployments set both paths; development leaves them
/// empty and the gateway creates (once) and uses a development CA and a
/// `localhost` certificate in `dev_certs_dir`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain of the gateway (leaf first). Default: none (dev certs).
    pub cert_path: Option<PathBuf>,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1) of the gateway. Default: none.
    pub key_path: Option<PathBuf>,
    /// Where development certificates live or are generated. Default `certs/dev`.
    pub dev_certs_dir: PathBuf,
    /// How often the served certificate and key files (the two paths above, or
    /// `gateway.pem`/`gateway.key` in `dev_certs_dir`) are checked for changes,
    /// in milliseconds; a change reloads them for new handshakes without
    /// touching established sessions. 0 turns polling off (reload on SIGHUP
    /// only). Default 10 000. A check is two `stat` calls, so shorter intervals
    /// cost next to nothing; they only shorten the time a rotated certificate
    /// waits to be served. Must be 0 or at least 100.
    pub reload_check_interval_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_path: None,
            key_path: None,
            dev_certs_dir: PathBuf::from("certs/dev"),
            reload_check_interval_ms: 10_000,
        }
    }
}

/// The inventory channel.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InventoryConfig {
    /// The item catalog (TOML or JSON: items with max stack, currencies, offers).
    /// Default: none, which uses the built-in development catalog
    /// (`gateway/src/dev_catalog.toml`).
    pub catalog_path: Option<PathBuf>,
    /// Whether clients may grant themselves items (`InventoryGrantRequest`).
    /// Default false: in production grants come from trusted services (match
    /// results, store receipts). Turn on for development, tests and load tests.
    pub client_grants: bool,
}

impl InventoryConfig {
    /// Loads and validates the catalog.
    pub fn catalog(&self) -> Result<outpost_backend::ledger::Catalog, ConfigError> {
        use outpost_backend::ledger::Catalog;
        let catalog = match &self.catalog_path {
            Some(path) => Catalog::load(path),
            None => Catalog::from_toml_str(include_str!("dev_catalog.toml")),
        }
        .map_err(|e| ConfigError::Invalid(format!("inventory catalog: {e}")))?;
        catalog
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("inventory catalog: {e}")))?;
        Ok(catalog)
    }
}

/// The matchmaking channel and this gateway's matchmaker workers.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatchmakingConfig {
    /// Regions and queues (backend `MatchmakerConfig`: team shapes, expansion
    /// steps, cross-region fallback, skill bands). Default: this gateway's region
    /// alone, with queues `duel` (1v1) and `squad` (5v5), windows widening at 0,
    /// 5 and 15 s.
    pub pool: Option<outpost_backend::matchmaker::MatchmakerConfig>,
    /// Matchmaker workers this gateway runs. Workers of every gateway sharing
    /// the store split the pool's partitions through leases; 0 leaves matching to
    /// other processes. Default 1.
    pub workers: usize,
    /// Game-server addresses handed out in matches, round-robin. Default
    /// `["127.0.0.1:7777"]`.
    pub servers: Vec<String>,
}

impl Default for MatchmakingConfig {
    fn default() -> Self {
        MatchmakingConfig {
            pool: None,
            workers: 1,
            servers: vec!["127.0.0.1:7777".into()],
        }
    }
}

impl MatchmakingConfig {
    /// The pool configuration (the default for `region` when none is set), validated.
    pub fn pool(&self, region: &str) -> Result<outpost_backend::matchmaker::MatchmakerConfig, ConfigError> {
        let pool = match &self.pool {
            Some(p) => p.clone(),
            None => {
                let expansions = r#"[{"after_ms":0,"max_skill_diff":100.0},{"after_ms":5000,"max_skill_diff":300.0},{"after_ms":15000,"max_skill_diff":1000.0}]"#;
                serde_json::from_str(&format!(
                    r#"{{"regions":[{{"name":"{region}"}}],"queues":[
                        {{"name":"duel","teams":2,"team_size":1,"expansions":{expansions}}},
                        {{"name":"squad","teams":2,"team_size":5,"expansions":{expansions}}}]}}"#
                ))
                .map_err(|e| ConfigError::Invalid(format!("default matchmaker pool: {e}")))?
            }
        };
        pool.validate().map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if !pool.regions.iter().any(|r| r.name == region) {
            return Err(ConfigError::Invalid(format!(
                "matchmaking.pool must include this gateway's region {region}"
            )));
        }
        Ok(pool)
    }
}

/// Per-session bounds. Together they cap the frames a session makes the gateway
/// hold at `max_channels × (outbound_queue_bytes + max_frame_size ×
/// (max_in_flight_per_channel + 1))` (per channel: its outbound queue, one
/// request body per request in flight and the frame being read), plus the
/// control stream's frame and QUIC's `send_window`. At the defaults that is
/// 16 × (1 MiB + 128 KiB × 33) ≈ 82 MiB for a session that fills every channel
/// with max-size requests; a typical session holds a few KiB. Not counted: a
/// request that reads all of a player's state documents (`StateList`, and the
/// `State` channel's push subscription) holds them while it runs, at most
/// 64 × 64 KiB = 4 MiB.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Sessions this gateway admits; above it logins get `Reject { ServerBusy }`.
    /// Default 100,000.
    pub max_sessions: usize,
    /// Largest frame the gateway accepts or sends, in bytes (clients may negotiate
    /// lower). Default 131,072, the protocol default: the largest state document
    /// (65,536 bytes, PROTOCOL.md 4.2) plus its request's envelope must fit one
    /// frame, which 64 KiB does not. Lower it only if no client stores documents
    /// near that size (a `StateSetRequest` over the frame size is `FrameTooLarge`
    /// and closes its channel). Larger frames raise the worst-case memory above,
    /// not the memory of sessions that send small frames.
    pub max_frame_size: u32,
    /// Channels (streams besides the control stream) a session may have open.
    /// Enforced by QUIC's stream limit. Default 16.
    pub max_channels: u32,
    /// Requests a channel may have in flight. Default 32.
    pub max_in_flight_per_channel: u32,
    /// Frames queued for one channel and not yet accepted by QUIC. When exceeded,
    /// the session is closed with `SlowConsumer`. Default 256.
    pub outbound_queue_frames: usize,
    /// Bytes queued for one channel and not yet accepted by QUIC. Default 1 MiB.
    pub outbound_queue_bytes: usize,
    /// Sustained requests per second per session (token bucket refill). Default 200.
    pub request_rate_per_sec: f64,
    /// Request burst per session (token bucket size). Default 400.
    pub request_burst: f64,
    /// Sustained control frames (pings) per second per session. Default 20.
    pub control_rate_per_sec: f64,
    /// Control-frame burst per session. Default 40.
    pub control_burst: f64,
    /// Requests a session may have refused (`RateLimited`, `TooManyInFlight`,
    /// or an id still in flight) in one 10-second window
    /// ([`REFUSAL_WINDOW`](crate::session::REFUSAL_WINDOW)); the refusal over
    /// it closes the session with `Kick { RateLimited }` (PROTOCOL.md §4).
    /// Must be > 0. Default 20,000 (2,000/s on average).
    ///
    /// Why: a refused request is not processed but is still read, decoded and
    /// answered (about 10 µs of gateway CPU each, measured on a debug
    /// build), and a client that ignores its errors can send them as fast as
    /// QUIC flow control lets it (about 50,000/s from one session on
    /// loopback: half a core) for as long as it likes. Lower cuts a flood off
    /// sooner. But a caller that honours `retry_after_ms` is still refused
    /// about once per request it is admitted (about `request_rate_per_sec ×
    /// 10` a window, 2,000 at the default rate), and concurrent callers that
    /// all honour it several times more (8 callers over a 1 ms round trip:
    /// about 16,000): keep the bound well above the former. The SDK queues beyond the in-flight bound and does not retry
    /// refusals by itself.
    pub max_refused_requests_per_window: u32,
    /// Channels a session may have refused, or closed with `Error {
    /// request_id: 0 }`, for what its client sent, per 10-second window (as
    /// `max_refused_requests_per_window`); the next closes the session with
    /// `Kick { RateLimited }` (PROTOCOL.md §4 "Failed channels"). > 0; default
    /// 100. Its own, lower bound: each costs a stream, a task and an answer,
    /// five refused requests (PERFORMANCE.md, "What a loop of failed channels
    /// costs"); under the refusals' bound one client could hold 10% of a core
    /// for ever (0.05% under 100), and no well-behaved client fails a channel.
    pub max_failed_channels_per_window: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_sessions: 100_000,
            max_frame_size: outpost_schema::DEFAULT_MAX_FRAME_SIZE,
            max_channels: 16,
            max_in_flight_per_channel: 32,
            outbound_queue_frames: 256,
            outbound_queue_bytes: 1024 * 1024,
            request_rate_per_sec: 200.0,
            request_burst: 400.0,
            control_rate_per_sec: 20.0,
            control_burst: 40.0,
            max_refused_requests_per_window: 20_000,
            max_failed_channels_per_window: 100,
        }
    }
}

/// Admission control under load.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionConfig {
    /// Base of `retry_after_ms` in a `ServerBusy` reject, in ms. Default 2,000.
    pub busy_retry_after_ms: u32,
    /// Uniform random jitter added to it, in ms, so a rejected storm spreads out
    /// instead of retrying in lockstep. Default 3,000.
    pub busy_retry_jitter_ms: u32,
    /// QUIC Retry (address validation costs one extra round trip per handshake
    /// but makes spoofed-source handshake floods cheap to drop).
    pub quic_retry: QuicRetry,
    /// With `quic_retry = "auto"`: handshakes in progress above which new
    /// connections must validate their address first. Default 512.
    pub retry_above_handshakes: usize,
    /// Refuse new QUIC connections (CONNECTION_REFUSED, before any TLS work)
    /// while the receive path is behind: the kernel kept dropping datagrams
    /// at the gateway's socket for 3 s of the last 4, until 2 s without drops
    /// with the socket's queue under half full (`crate::overload`, sampled
    /// every 250 ms on Linux by a netlink query; never engages without `/proc`). Default
    /// **true**. A gateway starved of CPU kept its sessions with it instead of
    /// collapsing (docs/PERFORMANCE.md, "Refusing new connections while the
    /// socket drops datagrams"); a login burst, which overflows the socket for
    /// a second or two, does not trip it, and SDK clients wait 1–3 s after a
    /// refusal (docs/PERFORMANCE.md, "Refusal made safe to default"). Refused
    /// connections are counted in `outpost_quic_refused_total`. Off leaves
    /// the receive path to cope alone (and nothing samples the socket's drops).
    pub refuse_while_dropping: bool,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            busy_retry_after_ms: 2_000,
            busy_retry_jitter_ms: 3_000,
            quic_retry: QuicRetry::Auto,
            retry_above_handshakes: 512,
            refuse_while_dropping: true,
        }
    }
}

/// When the gateway answers a new connection with QUIC Retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuicRetry {
    /// Never (lowest login latency).
    Off,
    /// Always (every handshake pays one extra round trip).
    On,
    /// Only while more than `retry_above_handshakes` handshakes are in progress.
    Auto,
}

/// Graceful drain (SIGTERM or `POST /drain`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DrainConfig {
    /// `GoAway.reconnect_after_ms` is drawn uniformly from `[0, window_ms]`, so
    /// sessions move to other gateways spread over this window. Default 10,000.
    pub window_ms: u64,
    /// Sessions still connected this long after the drain began are closed with
    /// `Draining` and the process exits. Must be at least `window_ms`. Default 30,000.
    pub deadline_ms: u64,
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            window_ms: 10_000,
            deadline_ms: 30_000,
        }
    }
}

/// A configuration that does not make sense, found at startup.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot parse config file {path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl GatewayConfig {
    /// Reads a TOML file over the defaults (missing keys keep their defaults).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Checks cross-field constraints once, at startup.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        let l = &self.limits;
        if self
            .metrics
            .listen
            .is_some_and(|m| m == self.admin_listen && m.port() != 0)
        {
            return bad("metrics.listen must differ from admin_listen");
        }
        for region in std::iter::once(&self.region).chain(self.remote_regions.iter().map(|r| &r.name)) {
            if let Err(e) = RegionName::new(region.as_str()) {
                return Err(ConfigError::Invalid(e.to_string()));
            }
        }
        for store in self
            .store
            .iter()
            .chain(&self.global_store)
            .chain(self.remote_regions.iter().map(|r| &r.store))
        {
            store
                .validate()
                .map_err(|e| ConfigError::Invalid(format!("store: {e}")))?;
        }
        if !(outpost_schema::MIN_MAX_FRAME_SIZE..=outpost_schema::MAX_FRAME_SIZE_CEILING)
            .contains(&l.max_frame_size)
        {
            return bad("limits.max_frame_size must be within 4 KiB..=16 MiB");
        }
        if l.max_sessions == 0 || l.max_channels == 0 || l.max_in_flight_per_channel == 0 {
            return bad("limits.max_sessions, max_channels and max_in_flight_per_channel must be > 0");
        }
        if l.outbound_queue_frames == 0 || l.outbound_queue_bytes < l.max_frame_size as usize {
            return bad("limits.outbound_queue_bytes must hold at least one max-size frame");
        }
        let rates = [
            l.request_rate_per_sec,
            l.request_burst,
            l.control_rate_per_sec,
            l.control_burst,
        ];
        if rates.iter().any(|r| !r.is_finite() || *r <= 0.0) {
            return bad("limits rates and bursts must be positive numbers");
        }
        if l.max_refused_requests_per_window == 0 || l.max_failed_channels_per_window == 0 {
            return bad(
                "limits.max_refused_requests_per_window and max_failed_channels_per_window must be > 0",
            );
        }
        let s = &self.session;
        s.validate().map_err(ConfigError::Invalid)?;
        self.liveness
            .validate(s.resume_window_secs * 1000)
            .map_err(|e| ConfigError::Invalid(format!("liveness: {e}")))?;
        if self.drain.deadline_ms < self.drain.window_ms {
            return bad("drain.deadline_ms must be at least drain.window_ms");
        }
        if self.admin_token.is_some() && self.admin_token_file.is_some() {
            return bad("set admin_token or admin_token_file, not both");
        }
        if let Some(token) = &self.admin_token {
            token.check().map_err(ConfigError::Invalid)?;
        }
        self.admin_timeouts.validate().map_err(ConfigError::Invalid)?;
        self.inventory.catalog()?;
        self.matchmaking.pool(&self.region)?;
        if self.matchmaking.workers > 0 && self.matchmaking.servers.is_empty() {
            return bad("matchmaking.servers must list at least one game server when workers run");
        }
        if self.tls.cert_path.is_some() != self.tls.key_path.is_some() {
            return bad("tls.cert_path and tls.key_path must be set together");
        }
        if (1..100).contains(&self.tls.reload_check_interval_ms) {
            return bad("tls.reload_check_interval_ms must be 0 (off) or at least 100");
        }
        self.queue
            .validate(s.resume_window_secs)
            .map_err(ConfigError::Invalid)?;
        crate::logging::filter(&self.log, None).map_err(ConfigError::Invalid)?;
        if self.transport.max_idle_timeout_ms < s.heartbeat_interval_ms {
            return bad("transport.max_idle_timeout_ms must be at least session.heartbeat_interval_ms");
        }
        if !(2..=8).contains(&self.transport.issued_connection_ids) {
            return bad("transport.issued_connection_ids must be 2 to 8");
        }
        if self.transport.min_probe_timeout_ms > 1_000 {
            return bad("transport.min_probe_timeout_ms must be at most 1000");
        }
        Ok(())
    }

    /// Whether any configured store is on FoundationDB: `main` then boots the
    /// FoundationDB network (builds with the `fdb` feature) before starting.
    pub fn uses_fdb(&self) -> bool {
        self.store
            .iter()
            .chain(&self.global_store)
            .chain(self.remote_regions.iter().map(|r| &r.store))
            .any(|s| s.backend == outpost_backend::store::BackendKind::Fdb)
    }

    /// This region's store configuration (the embedded default if none is set).
    pub fn region_store(&self) -> StoreConfig {
        self.store
            .clone()
            .unwrap_or_else(|| StoreConfig::embedded(self.data_dir.join("store")))
    }

    pub(crate) fn hello_timeout(&self) -> Duration {
        Duration::from_millis(self.session.hello_timeout_ms)
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

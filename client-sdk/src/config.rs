//! Client configuration: where the gateways are, whom to trust, how to log in,
//! and the time limits and reconnect policy the SDK applies.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub use outpost_schema::{Credentials, Platform};

use crate::error::ClientError;
use crate::telemetry::TelemetryConfig;

/// Which certificate authorities the SDK trusts for the gateway's TLS certificate.
///
/// Platform/webpki roots are out of scope for now: production deployments ship
/// their CA list (PEM) with the game, development uses the dev CA that the
/// gateway generates under `certs/dev/ca.pem`.
#[derive(Clone, Debug)]
pub enum Trust {
    /// One or more PEM-encoded CA certificates (`-----BEGIN CERTIFICATE-----`).
    /// Used both for the development CA and for a production CA list.
    DevCa { pem: Vec<u8> },
}

impl Trust {
    /// Reads a PEM CA list from a file, typically the development CA the gateway
    /// generates at `certs/dev/ca.pem`.
    pub fn dev_ca_from_file(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        let path = path.as_ref();
        let pem = std::fs::read(path)
            .map_err(|e| ClientError::Config(format!("cannot read CA file {}: {e}", path.display())))?;
        Ok(Trust::DevCa { pem })
    }

    pub(crate) fn pem(&self) -> &[u8] {
        match self {
            Trust::DevCa { pem } => pem,
        }
    }
}

/// Exponential backoff with full jitter, used between reconnect attempts.
///
/// Attempt `n` (1-based) waits a uniformly random delay in
/// `[0, min(max_delay, initial_delay * multiplier^(n-1))]`, and never less than a
/// `retry_after` the gateway asked for (Reject / GoAway).
#[derive(Clone, Debug, PartialEq)]
pub struct ReconnectPolicy {
    /// Ceiling of the first attempt's delay. Default 200 ms.
    pub initial_delay: Duration,
    /// Largest ceiling any attempt uses. Default 30 s.
    pub max_delay: Duration,
    /// Growth factor of the ceiling per attempt. Default 2.0.
    pub multiplier: f64,
    /// Give up after this many consecutive failed attempts (`None`, the default:
    /// never give up). Giving up ends the session with the last error.
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            multiplier: 2.0,
            max_attempts: None,
        }
    }
}

/// How the SDK behaves at a region's login queue (PROTOCOL.md 3.7).
///
/// With `enabled` (the default) every `Hello` announces queue support: a login
/// over the region's admission budget gets a place instead of a
/// `Reject { ServerBusy }`, and [`crate::Client::connect`] (or a reconnect)
/// waits for it, reporting [`crate::Event::Queued`] (position, ETA) at the
/// gateway's update interval and [`crate::Event::Admitted`] at the end. A
/// connection lost while waiting is re-established (to any configured gateway,
/// with `reconnect` backoff) presenting the newest queue token, which keeps
/// the place for the region's place grace (default 120 s).
#[derive(Clone, Debug, PartialEq)]
pub struct QueuePolicy {
    /// Announce queue support (`Hello.accepts_queue`). Default `true`. Off:
    /// a login over budget is refused with `ServerBusy` and a `retry_after`,
    /// as with gateways that have no queue.
    pub enabled: bool,
    /// Longest time one login may wait in the queue, counted from the first
    /// `Queued` and including reconnects while queued; then the login fails
    /// with [`ClientError::Timeout`] (the SDK leaves the queue). Default 6 h,
    /// the lifetime of a queue token: a launch queue can take hours, and the
    /// game can always stop earlier by dropping the connect future or closing
    /// the client.
    pub max_wait: Duration,
    /// Interval of the `Ping`s the SDK sends while queued (the gateway closes
    /// a queued connection silent for 30 s; PROTOCOL.md asks for at least one
    /// every 10 s). A queued connection from which nothing (no `Queued`, no
    /// `Pong`) arrives for three intervals is treated as lost. Default 5 s;
    /// 100 ms..=10 s.
    pub ping_interval: Duration,
}

impl Default for QueuePolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            max_wait: Duration::from_secs(6 * 3600),
            ping_interval: Duration::from_secs(5),
        }
    }
}

/// Everything [`crate::Client::connect`] needs. A plain struct: build it with
/// [`ClientConfig::new`] and override fields as needed.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Gateways of the region. With more than one, the SDK handshakes with all
    /// of them concurrently and logs in at the one with the lowest measured
    /// round-trip time (falling back to the next if it refuses the login).
    pub gateways: Vec<SocketAddr>,
    /// Name the gateway certificate must be valid for (TLS SNI). Default `"localhost"`.
    pub server_name: String,
    /// CAs trusted for the gateway certificate.
    pub trust: Trust,
    /// Login credentials. After the first `Welcome` the SDK prefers the
    /// `session_token` the gateway handed out and keeps these as the fallback.
    pub credentials: Credentials,
    /// Game client version reported in `Hello` (metrics, flag targeting).
    /// Default: this SDK's crate version.
    pub client_version: String,
    /// Platform reported in `Hello`. Default [`Platform::Unknown`].
    pub platform: Platform,
    /// The SDK's own error and latency reports on the `Telemetry` channel:
    /// on/off, flush interval (default 10 s) and batch bounds; see
    /// [`TelemetryConfig`].
    pub telemetry: TelemetryConfig,
    /// Time limit for one request, ping, channel open, or one QUIC handshake
    /// plus login. Includes time spent waiting for a reconnect. Default 10 s.
    pub request_timeout: Duration,
    /// Largest frame (bytes of FlatBuffer) this client accepts; the gateway
    /// negotiates the smaller of both proposals. 0 (default) = protocol default
    /// (128 KiB). Below that, the largest state documents cannot be written.
    pub max_frame_size: u32,
    /// Backoff between reconnect attempts.
    pub reconnect: ReconnectPolicy,
    /// Reconnect and resume automatically after connection loss or GoAway.
    /// Default `true`. Never after `close()` or a Kick with
    /// `ReplacedByNewLogin` / `KickedByOperator`.
    pub auto_reconnect: bool,
    /// Capacity of the event queue (events, pushes). When a consumer falls
    /// behind, the oldest events are dropped and it receives
    /// [`crate::Event::Lagged`] with the number missed. Default 1024.
    pub event_capacity: usize,
    /// A QUIC endpoint (one UDP socket) this client shares with other clients
    /// of the process, e.g. `quinn::Endpoint::client("0.0.0.0:0".parse()?)`.
    /// Default `None`: each client binds its own socket and closes it with
    /// the session, which is what a game wants.
    ///
    /// For load generators and bot hosts that run thousands of clients: a
    /// shared endpoint saves a socket, a file descriptor and a kernel receive
    /// buffer per client (quinn tells connections apart by connection id; a
    /// client's own endpoint uses zero-length ids instead, see
    /// [`crate::quic_endpoint_config`]).
    /// Trade-offs: one endpoint's packets are processed by one task, so spread
    /// many clients over a few endpoints (a handful per core); the endpoint's
    /// address family must match the gateways'. The SDK connects with its own
    /// TLS/QUIC settings (the endpoint needs no default client config) and
    /// never closes a shared endpoint; dropping the last clone closes it.
    /// `debug_kill_connection` cannot silence one connection on a shared
    /// socket, so there it closes the connection (with a CONNECTION_CLOSE)
    /// instead of going silent.
    pub endpoint: Option<quinn::Endpoint>,
    /// Path MTU discovery (RFC 8899) for datagrams this client sends: after each
    /// handshake quinn probes whether datagrams above QUIC's 1,200-byte minimum
    /// get through (and again every 10 minutes). Default **off**, like the
    /// gateway's `transport.mtu_discovery`: game traffic is small frames, and
    /// each probe is an extra datagram the gateway must receive, decrypt and
    /// acknowledge during the login storm (two per login measured in the gateway
    /// bench). Turn on for clients that upload large payloads (big state
    /// documents) on paths known to carry 1,500-byte datagrams.
    pub mtu_discovery: bool,
    /// Waiting in the region's login queue: on by default, bounded by
    /// `max_wait` (6 h); see [`QueuePolicy`].
    pub queue: QueuePolicy,
    /// Test hook: after this many `Queued` frames of one login, the SDK
    /// abandons the queued connection once (closes it with code 1, as a lost
    /// network looks to the gateway) and reconnects with its queue token.
    #[doc(hidden)]
    pub debug_queue_drop_after: Option<u32>,
}

impl ClientConfig {
    /// A configuration with the defaults documented on each field.
    pub fn new(gateways: Vec<SocketAddr>, trust: Trust, credentials: Credentials) -> Self {
        Self {
            gateways,
            server_name: "localhost".to_owned(),
            trust,
            credentials,
            client_version: env!("CARGO_PKG_VERSION").to_owned(),
            platform: Platform::Unknown,
            telemetry: TelemetryConfig::default(),
            request_timeout: Duration::from_secs(10),
            max_frame_size: 0,
            reconnect: ReconnectPolicy::default(),
            auto_reconnect: true,
            event_capacity: 1024,
            endpoint: None,
            mtu_discovery: false,
            queue: QueuePolicy::default(),
            debug_queue_drop_after: None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ClientError> {
        if self.gateways.is_empty() {
            return Err(ClientError::Config("no gateway addresses given".into()));
        }
        if self.request_timeout.is_zero() {
            return Err(ClientError::Config("request_timeout must be positive".into()));
        }
        if self.event_capacity == 0 {
            return Err(ClientError::Config("event_capacity must be positive".into()));
        }
        if !(self.reconnect.multiplier >= 1.0 && self.reconnect.multiplier.is_finite()) {
            return Err(ClientError::Config("reconnect.multiplier must be >= 1".into()));
        }
        if self.queue.max_wait.is_zero() {
            return Err(ClientError::Config("queue.max_wait must be positive".into()));
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(10)).contains(&self.queue.ping_interval) {
            return Err(ClientError::Config(
                "queue.ping_interval must be within 100 ms..=10 s".into(),
            ));
        }
        self.telemetry.validate()?;
        Ok(())
    }
}

//! # outpost-client: the Outpost client SDK
//!
//! What a game client links to talk to Outpost gateways: it holds one QUIC
//! connection (ALPN `outpost/1`, TLS 1.3) to the best gateway of a region, logs
//! in, keeps the session alive with heartbeats, and survives network loss,
//! gateway drains and restarts by reconnecting and resuming by itself.
//! The wire protocol is `schema/PROTOCOL.md`.
//!
//! Main types:
//! - [`ClientConfig`]: gateways, trust ([`Trust`]), [`Credentials`], timeouts,
//!   [`ReconnectPolicy`].
//! - [`Client`]: a cheap-clone handle to a session driven by a background task:
//!   [`Client::ping`], [`Client::open_channel`], [`Client::echo`],
//!   [`Client::events`], [`Client::close`].
//! - [`StateClient`] ([`Client::state`]): the player's versioned documents.
//! - [`InventoryClient`] ([`Client::inventory`]): the player's ledger; writes
//!   carry idempotency keys the SDK keeps across its retries.
//! - [`MatchmakingClient`] ([`Client::matchmaking`]): tickets; matches arrive as pushes.
//! - [`LiveClient`] ([`Client::live`]): feature flags (typed, cached, read
//!   synchronously) and content manifests, kept current by pushes;
//!   [`Event::Live`] announces changes.
//! - [`TelemetryReporter`] ([`Client::telemetry`]): the SDK reports request
//!   failures and latencies by itself, batched and bounded
//!   ([`TelemetryConfig`]); the game adds its own errors and latencies.
//! - [`Channel`]: one service stream; [`Channel::request`] with request ids and
//!   timeouts. Handles keep working across reconnects.
//! - [`Event`] / [`Events`]: connection lifecycle and server pushes, through a
//!   bounded queue.
//! - [`ClientError`]: every failure, typed ([`ClientError::is_retryable`]).
//! - [`blocking::Client`]: the same for code without an async runtime.
//!
//! ```no_run
//! use outpost_client::{ChannelKind, Client, ClientConfig, Credentials, Event, Trust};
//!
//! # async fn run() -> Result<(), outpost_client::ClientError> {
//! let config = ClientConfig::new(
//!     vec!["127.0.0.1:4433".parse().unwrap()],
//!     Trust::dev_ca_from_file("certs/dev/ca.pem")?,
//!     Credentials::Device { device_id: "dev-1".into(), secret: "0123456789abcdef".into() },
//! );
//! let client = Client::connect(config).await?;
//! let mut events = client.events();
//! println!("player {} rtt {:?}", client.player_id(), client.ping().await?);
//!
//! let echo = client.open_channel(ChannelKind::Echo).await?;
//! assert_eq!(echo.echo(b"hi".to_vec(), 2).await?, b"hi");
//! while let Some(ev) = events.recv().await {
//!     match ev {
//!         Event::Push { channel, body } => println!("push on {channel:?}: {body:?}"),
//!         Event::Kicked { code, .. } => println!("kicked: {code:?}"),
//!         other => println!("{other:?}"),
//!     }
//! #   break;
//! }
//! client.close().await;
//! # Ok(()) }
//! ```
//!
//! ## Reconnect and resume
//! With `auto_reconnect` (the default) a lost connection (network error,
//! missing Pong for two heartbeat intervals while the client runs: a pause of
//! the game's own process is not counted, protocol error, retryable Kick) is
//! followed by reconnect attempts with exponential backoff and full jitter
//! ([`backoff`]), never earlier than a `retry_after` the gateway asked for. After
//! `GoAway` the SDK waits `reconnect_after`, stops sending on the old connection
//! (new requests wait for the next one), lets the requests already sent be
//! answered, then moves to the best gateway of the list: a drain or rolling
//! restart fails no call. Each attempt presents the resume token of the last `Welcome` and,
//! as fallback, the `session_token` from `Welcome` (or the configured
//! credentials). Channels are re-opened on the new connection. Requests in
//! flight when a connection dies fail with [`ClientError::ConnectionLost`] and
//! are not re-sent (see [`Channel`]). No reconnect after [`Client::close`] or a
//! Kick with `ReplacedByNewLogin` / `KickedByOperator`.
//!
//! ## Login queue
//! When a region is at capacity its gateways may queue logins instead of
//! refusing them (PROTOCOL.md 3.7). The SDK announces queue support by default
//! ([`QueuePolicy::enabled`]); a queued [`Client::connect`] (or a reconnect)
//! does not return until the login is admitted, and reports the wait as
//! [`Event::Queued`] `{ position, eta, queue_length, paused, gateway }` at the
//! gateway's update interval (default 5 s), then [`Event::Admitted`] and
//! `Connected`. Use [`Client::connect_with_events`] (or
//! [`blocking::Client::connect_with_events`]) to see them while `connect`
//! waits. Positions never go up for one place. While queued the SDK pings
//! every [`QueuePolicy::ping_interval`]; a connection lost while queued (or
//! silent for three intervals) is re-established with `reconnect` backoff,
//! trying the other gateways first, and presents the newest queue token, which
//! keeps the place for the region's place grace (default 120 s). A refused
//! token (`QueueTokenInvalid`, `QueueTokenExpired`, `QueuePlaceGone`) is
//! dropped and the login retried at once (the account gets its place back if
//! it still holds one). The whole wait is bounded by [`QueuePolicy::max_wait`]
//! (default 6 h), after which `connect` fails with [`ClientError::Timeout`].
//! Dropping the `connect` future leaves the queue (the place then expires
//! after the grace).

#![forbid(unsafe_code)]

pub mod backoff;
pub mod blocking;
mod channel;
mod client;
mod config;
mod conn_state;
mod connection;
mod error;
mod events;
mod framing;
pub mod inventory;
mod live;
mod login;
mod mailbox;
mod matchmaking;
mod queue;
mod session;
mod socket;
mod state;
mod telemetry;
mod telemetry_flush;
mod tls;

#[cfg(test)]
mod size_tests;

pub use channel::Channel;
pub use client::Client;
pub use config::{ClientConfig, Credentials, Platform, QueuePolicy, ReconnectPolicy, Trust};
pub use connection::rank_by_rtt;
pub use error::{ClientError, ServerError};
pub use events::{Event, Events};
pub use inventory::{new_idempotency_key, InventoryClient};
pub use live::{FlagSnapshot, FlagWatch, LiveClient, LiveEvent};
pub use matchmaking::{MatchmakingClient, TicketInfo};
pub use outpost_schema::{
    AssetAmount, AssetDelta, AssetKind, ChannelKind, ContentAsset, ContentManifest, ErrorCode, FlagValue,
    InventoryEvent, InventoryEventKind, InventoryReceipt, MatchInfo, NoMatchReason, PushBody, RegionRtt,
    RequestBody, ResponseBody, StateDocument, TicketStatus,
};
pub use session::WelcomeInfo;
pub use state::{is_conflict, StateClient};
pub use telemetry::{
    error_name, TelemetryConfig, TelemetryReporter, TelemetryStats, MAX_COUNT_PER_ERROR,
    MAX_ERRORS_PER_REPORT, MAX_LATENCIES_PER_REPORT,
};
pub use tls::{quic_endpoint_config, quic_transport_config, MIN_PROBE_TIMEOUT};

//! # outpost-gateway: the QUIC front door of an Outpost region
//!
//! A gateway terminates game clients' QUIC connections (TLS 1.3, ALPN
//! `outpost/1`), logs them in, holds their sessions, and routes each channel to
//! a backend service. It owns admission control, rate limits, bounded queues,
//! graceful drain and the admin HTTP API. Storage internals are the backend's.
//!
//! Main types:
//! - [`config::GatewayConfig`]: every knob, with units and defaults.
//! - [`server::start`] → [`server::RunningGateway`] / [`server::GatewayHandle`]:
//!   run, drain, stop.
//! - [`session::Session`]: the sans-IO session state machine (heartbeats, limits,
//!   drain timing), unit-tested on a fake clock.
//! - [`channels::ChannelService`] and [`channels::Router`]: how services attach.
//!
//! Module map: `config` (settings) · `tls` (certificates) · `endpoint` (UDP socket
//! and QUIC transport) · `frame_io` (frames on streams) · `auth` (login, the one
//! place identity errors become wire codes) · `registry` (capacity, one session
//! per player) · `liveness` (this process's heartbeat, the orphan sweep) ·
//! `session` (rules, no IO) · `driver` (runs sessions over quinn) ·
//! `channels` (services) · `admin` (HTTP) · `metrics` · `overload` (refusing new
//! connections while the socket drops datagrams) · `logging` (log output) ·
//! `server` (lifecycle).
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod channels;
pub mod config;
mod control;
mod driver;
pub mod endpoint;
pub mod frame_io;
pub mod live;
pub mod liveness;
pub mod logging;
pub mod metrics;
pub mod overload;
mod queue_metrics;
pub mod regions;
pub mod registry;
mod retention;
pub mod server;
pub mod session;
pub mod tls;
pub mod transfers;

pub use config::GatewayConfig;
pub use driver::SessionCore;
pub use server::{start, start_with_store, start_with_stores, GatewayHandle, RunningGateway, StartError};

//! Matchmaker (per region group): tickets for solo players and parties, skill
//! windows that widen with wait, cross-region fallback, and a store-backed pool
//! split into leased partitions so more workers mean more throughput.
//!
//! # Layers
//!
//! - [`core::MatchCore`]: the algorithm on an in-memory pool, with time passed
//!   in. No store, no network, no clock: the simulator runs it on virtual time
//!   with millions of tickets, and store workers run it once per round.
//! - [`config`]: queues (team shape, expansion steps, cross-region fallback,
//!   skill bands) and regions (neighbours), validated once.
//! - [`alloc`]: game-server allocation ([`alloc::ServerAllocator`]; default
//!   [`alloc::StaticAllocator`]).
//! - [`stats`]: statistics the gateway exports as metrics.
//!
//! Everything takes and returns plain Rust types ([`types`]).

pub mod alloc;
pub mod config;
pub mod core;
pub(crate) mod pool;
pub mod stats;
pub(crate) mod teams;
pub mod types;

pub use alloc::{AllocError, ServerAllocator, StaticAllocator};
pub use config::{
    ConfigError, CrossRegionConfig, ExpansionStep, MatchmakerConfig, QueueConfig, RegionConfig,
};
pub use core::{CoreError, MatchCore};
pub use stats::{Histogram, MatchStats, QueueRegionStats};
pub use types::{
    Match, MatchId, MatchedTicket, RegionLatency, ServerAssignment, Skill, Team, Ticket, TicketId,
};

#[cfg(test)]
mod core_tests;

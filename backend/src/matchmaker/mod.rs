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
//!   skill bands, deadline, wait target) and regions (neighbours), validated once.
//! - [`deadline`]: bounded wait, a final "no match" outcome at a queue's
//!   deadline, in the core and in the store; [`widening`]: target-seeking
//!   widening (per-pool schedule speeds adapted to a wait target).
//! - [`alloc`]: game-server allocation ([`alloc::ServerAllocator`]; default
//!   [`alloc::StaticAllocator`]).
//! - [`stats`]: plain counters of formed matches; [`metrics`]: what the
//!   workers record through the `metrics` facade (the gateway exports it).
//! - [`Matchmaker`] ([`store`]): the pool in the Store — create, cancel and
//!   status of tickets, per-player watches, match commits. Keys: [`keys`].
//! - [`lease`] and [`Worker`] ([`worker`]): partition leases with heartbeats and
//!   fencing tokens; workers that split the partitions and run rounds.
//! - [`backfill`] ([`backfill_store`]): a match in progress asks for
//!   replacement players; requests are served before new matches, each filled
//!   exactly once.
//!
//! Everything takes and returns plain Rust types ([`types`]).
//!
//! # The pool in the store
//!
//! A matchmaker serves a *pool*: the regions that may fall back to each other,
//! kept in one store under the keyspace of one region (`pool_region`; usually
//! the only region). Regions in different stores are not fallback neighbours.
//!
//! - **Partitions.** A waiting ticket has one index key in its partition
//!   `(queue, home region, skill band)`, sorted by creation time. Workers lease
//!   partitions; more workers (in one process or in many gateways sharing the
//!   store) split them, so throughput grows with workers until there is one
//!   worker per partition. A partition's [`floor`] is a creation time below
//!   which its few waiting tickets are listed by name, so rounds do not read
//!   through the deletes of tickets matched long ago.
//! - **Never matched twice, never lost.** A ticket's record holds its state:
//!   `waiting` → `matched` | `cancelled` | `removed` | `timed_out`, each final
//!   (`timed_out`: no match before the queue's deadline, [`deadline`]). Every state
//!   change happens in one transaction that reads the record (a read conflict),
//!   checks it is `waiting`, and writes the new state, the index key removal and
//!   the player entries together. A match commit additionally reads the
//!   worker's lease and fails unless its fencing token is current. Two commits
//!   that want the same ticket, or a commit racing a cancel, therefore conflict
//!   and exactly one wins; the loser changes nothing and its other tickets stay
//!   waiting. A worker that dies mid-round leaves only whole commits behind.
//!   Retried commits ("commit result unknown") are idempotent: the match id is
//!   drawn before the transaction and a ticket already matched into *that*
//!   match means "done".
//! - **Pushing the match.** Every player of a ticket has an entry
//!   `("r", pool, "mm", "pl", player)` rewritten on each state change; the
//!   gateway holds [`Matchmaker::watch_player`] for each queued session and
//!   pushes the match when the entry turns `matched`, whichever worker (in
//!   whichever process) made it.
//! - **Disconnects.** The gateway calls [`Matchmaker::remove_player_tickets`]
//!   once a session's resume window has expired; a session that resumes keeps
//!   its ticket (see that method for the contract). That is a fast path kept in
//!   the gateway's memory; the guarantee comes from liveness: a ticket records
//!   the gateway incarnation holding it ([`Matchmaker::with_incarnation`]), and
//!   the orphan sweep ([`orphans`], run by [`crate::liveness::Sweeper`])
//!   removes or re-homes the tickets of an incarnation that died.
//! - **Idempotent queueing.** [`Matchmaker::create_ticket`] for players who
//!   already wait together in the same queue returns their ticket (moving it to
//!   the caller's incarnation); another queue is
//!   [`MatchmakerError::AlreadyQueued`].
//! - **Retention.** Finished tickets are listed by finish time; the sweep
//!   deletes them (and their matches) after `finished_retention_ms`
//!   ([`Matchmaker::collect_finished`]); finished backfill requests after
//!   `backfill_retention_ms` ([`backfill_gc`]).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use outpost_backend::matchmaker::*;
//! use outpost_backend::store::{AnyStore, StoreConfig};
//!
//! let store = AnyStore::open(&StoreConfig::embedded("./data/eu")).await?;
//! let config: MatchmakerConfig = serde_json::from_str(r#"{
//!   "regions": [{"name": "eu"}],
//!   "queues": [{"name": "ranked-5v5", "teams": 2, "team_size": 5,
//!               "expansions": [{"after_ms": 0, "max_skill_diff": 50.0},
//!                              {"after_ms": 5000, "max_skill_diff": 200.0}]}]
//! }"#)?;
//! let mm = Matchmaker::new(store, "eu", config)?;
//!
//! // Workers (any number, in any process sharing the store).
//! let servers = Arc::new(StaticAllocator::new([("eu".to_string(), vec!["10.0.0.5:7777".to_string()])]));
//! let worker = Worker::new(mm.clone(), WorkerConfig::new("gw-eu-1/mm-0"), servers)?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let task = tokio::spawn(worker.run(async { let _ = stopped.await; }));
//!
//! // A session queues and waits for its match.
//! let player = "0123456789abcdef0123456789abcdef".to_string();
//! let ticket = mm.create_ticket(TicketRequest {
//!     players: vec![player.clone()],
//!     queue: "ranked-5v5".into(),
//!     skill: Skill { rating: 1500.0, uncertainty: 80.0 },
//!     home_region: "eu".into(),
//!     latencies: vec![RegionLatency { region: "eu".into(), rtt_ms: 18 }],
//!     max_latency_ms: None,
//! }).await?;
//! loop {
//!     let (status, watch) = mm.watch_player(&player).await?;
//!     if let Some(PlayerTicket { assigned: Some(m), .. }) = status {
//!         println!("match {} on {:?}", m.id, m.server);
//!         break;
//!     }
//!     watch.await?;
//! }
//! # let _ = (ticket, stop, task);
//! # Ok(()) }
//! ```

pub mod alloc;
pub mod backfill;
pub mod backfill_gc;
pub mod backfill_store;
pub mod config;
pub mod core;
pub mod deadline;
pub mod errors;
pub mod floor;
pub mod keys;
pub mod lease;
pub mod metrics;
pub mod orphans;
pub(crate) mod pool;
pub(crate) mod reads;
pub mod stats;
pub mod store;
pub(crate) mod teams;
pub mod types;
pub mod widening;
pub mod worker;

pub use alloc::{AllocError, ServerAllocator, StaticAllocator};
pub use backfill::{Backfill, BackfillFill, BackfillId, BackfillPlacement};
pub use backfill_store::{
    BackfillError, BackfillOutcome, BackfillRecord, BackfillRequest, BackfillState, FillReport,
};
pub use config::{
    ConfigError, CrossRegionConfig, ExpansionStep, MatchmakerConfig, QueueConfig, RegionConfig,
};
pub use core::{check_ticket, CoreError, MatchCore};
pub use deadline::{ExpireOutcome, NoMatch, NoMatchReason};
pub use errors::{CommitError, MatchmakerError};
pub use keys::{Partition, TicketState};
pub use lease::Lease;
pub use stats::{MatchStats, QueueRegionStats};
pub use store::{CommitOutcome, Matchmaker, PlayerTicket, PlayerWatch, TicketRequest};
pub use types::{
    Match, MatchId, MatchedTicket, RegionLatency, ServerAssignment, Skill, Team, Ticket, TicketId,
};
pub use widening::{TargetWait, Widening};
pub use worker::{RoundReport, Worker, WorkerConfig, WorkerStats};

#[cfg(test)]
mod backfill_ops_tests;
#[cfg(test)]
mod backfill_tests;
#[cfg(test)]
mod core_tests;
#[cfg(test)]
mod deadline_store_tests;
#[cfg(test)]
mod deadline_tests;
#[cfg(test)]
mod floor_stress_tests;
#[cfg(test)]
mod floor_tests;
#[cfg(test)]
mod store_tests;

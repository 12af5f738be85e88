//! `outpost-backend`: Outpost's backend services as a library, and the storage they
//! run on.
//!
//! - [`store`]: the [`Store`](store::Store) trait (FoundationDB transaction
//!   semantics) and its backends: embedded (fjall) and FoundationDB (feature `fdb`),
//!   chosen at runtime through [`AnyStore`](store::AnyStore) /
//!   [`StoreConfig`](store::StoreConfig).
//! - [`keyspace`]: the tuple-encoded key layout (per-region and global subspaces);
//!   `backend/KEYSPACE.md` lists every key family.
//!
//! The backend knows nothing of QUIC or FlatBuffers: services take and return plain
//! Rust types.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod content;
pub mod flags;
pub mod identity;
pub mod keyspace;
pub mod ledger;
pub mod matchmaker;
pub mod presence;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod transfer;

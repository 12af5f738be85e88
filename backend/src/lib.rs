//! `outpost-backend`: Outpost's backend services as a library, and the storage they
//! run on.
//!
//! - [`store`]: the [`Store`](store::Store) trait (FoundationDB transaction
//!   semantics) and its backends: embedded (fjall) and FoundationDB (feature `fdb`),
//!   chosen at runtime through [`AnyStore`](store::AnyStore) /
//!   [`StoreConfig`](store::StoreConfig).
//! - [`keyspace`]: the tuple-encoded key layout (per-region and global subspaces);
//!   `backend/KEYSPACE.md` lists every key family.
//! - [`codec`]: the shared stored-value encodings (v1 records, counters).
//! - [`error_class`]: the class of every service error ([`ErrorClass`]), for
//!   edges that turn errors into wire codes.
//! - Shared by several services: [`audit`] (the live-ops audit log), [`fence`]
//!   (the per-player transfer fence), [`names`] (short-name validators),
//!   [`rerun`] (op markers: idempotent reruns after unknown commit results).
//! - The services: [`identity`], [`presence`], [`state`], [`ledger`],
//!   [`matchmaker`], [`queue`], [`flags`], [`content`], [`telemetry`], [`transfer`].
//!
//! The backend knows nothing of QUIC or FlatBuffers: services take and return plain
//! Rust types.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod codec;
pub mod content;
pub mod error_class;
pub mod fence;
pub mod flags;
pub mod identity;
pub mod keyspace;
pub mod lease;
pub mod ledger;
pub mod liveness;
pub mod matchmaker;
pub mod names;
pub mod presence;
pub mod queue;
pub mod rerun;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod transfer;

pub use error_class::{Classify, ErrorClass};

//! Gateway liveness keys in a region's keyspace, and their records.
//!
//! # Key Schema
//!
//! ```text
//! ("r", region, "gw", "inc", incarnation) -> v1 IncarnationRecord
//!        {gateway, incarnation, started_ms, expires_ms, swept}: one gateway
//!        process's registration, rewritten by its heartbeat; `swept` once
//!        the orphan sweep declared it dead (heartbeats then fail); deleted
//!        when the sweep has released everything it held
//! ("r", region, "gw", "sweep") -> v1 SweepLease {owner, token, expires_ms}
//!        who runs the orphan sweep and retention GC of the region now;
//!        never deleted, so token only grows
//! ("r", region, "gw", "rwalk") -> v1 ReceiptWalk {cursor, cycle_started_ms}
//!        where the ledger's receipt retention walk over the region is: the
//!        player the next pass starts after (null: the region's start) and
//!        when the current cycle began; written by the lease holder after
//!        each pass, so the walk survives restarts and lease moves
//! ```
//!
//! `incarnation` is a random non-zero 64-bit integer drawn at process start.
//! v1 values are the byte `1` followed by JSON.

use foundationdb_tuple::Subspace;
use serde::{Deserialize, Serialize};

use crate::keyspace::RegionName;

/// `("r", region, "gw")`.
pub fn root(region: &RegionName) -> Subspace {
    crate::keyspace::region_family(region, "gw")
}

/// `("r", region, "gw", "inc")`: every registered incarnation.
pub fn incarnations(region: &RegionName) -> Subspace {
    root(region).subspace(&("inc",))
}

/// `("r", region, "gw", "inc", incarnation)`.
pub fn incarnation(region: &RegionName, incarnation: u64) -> Vec<u8> {
    incarnations(region).pack(&(incarnation,))
}

/// `("r", region, "gw", "sweep")`.
pub fn sweep_lease(region: &RegionName) -> Vec<u8> {
    root(region).pack(&("sweep",))
}

/// `("r", region, "gw", "rwalk")`.
pub fn receipt_walk(region: &RegionName) -> Vec<u8> {
    root(region).pack(&("rwalk",))
}

/// Where the receipt retention walk over the region is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReceiptWalk {
    /// The player the next pass starts after (`None`: the region's start).
    pub cursor: Option<String>,
    /// When the current cycle's first pass ran (wall clock, unix ms).
    pub cycle_started_ms: Option<u64>,
}

/// One gateway process's registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncarnationRecord {
    /// The gateway's id (its configured name or address).
    pub gateway: String,
    /// This process's incarnation.
    pub incarnation: u64,
    /// When it registered (its clock), unix ms.
    pub started_ms: u64,
    /// Its last heartbeat's `now + expiry` (its clock), unix ms.
    pub expires_ms: u64,
    /// Declared dead by the orphan sweep: its heartbeats fail from now on.
    #[serde(default)]
    pub swept: bool,
}

/// The sweep lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SweepLease {
    pub owner: String,
    pub token: u64,
    pub expires_ms: u64,
}

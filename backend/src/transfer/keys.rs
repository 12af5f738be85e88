//! The transfer's keys in the **global** keyspace.
//!
//! # Key Schema
//!
//! ```text
//! ("g", "xfer", "rec", transfer_id)   -> v1 JSON TransferRecord
//!                                        { id, player, from, to, step, created_unix, updated_unix }
//! ("g", "xfer", "active", player)     -> v1 JSON { id }: the player's unfinished transfer
//!                                        (at most one; cleared with the step to Done)
//! ```
//!
//! The per-region player fence is in [`crate::fence`].

use foundationdb_tuple::Subspace;

/// The transfer subspace `("g", "xfer")`.
pub fn transfers() -> Subspace {
    crate::keyspace::global_family("xfer")
}

/// `("g", "xfer", "rec", id)`.
pub fn record(id: &str) -> Vec<u8> {
    transfers().pack(&("rec", id))
}

/// The subspace of active-transfer pointers, `("g", "xfer", "active")`.
pub fn active_all() -> Subspace {
    transfers().subspace(&("active",))
}

/// `("g", "xfer", "active", player)`.
pub fn active(player: &str) -> Vec<u8> {
    active_all().pack(&(player,))
}

//! Presence keys.
//!
//! # Key Schema
//!
//! ```text
//! ("g", "presence", player) -> Claim   v1: [1] ++ since_ms u64 BE ++ session_id u64 BE ++ gateway (UTF-8)
//! ```

use foundationdb_tuple::Subspace;

use crate::keyspace::global_family;

/// `("g", "presence")`.
pub fn family() -> Subspace {
    global_family("presence")
}

/// The player's presence key.
pub fn presence(player: &str) -> Vec<u8> {
    family().pack(&(player,))
}

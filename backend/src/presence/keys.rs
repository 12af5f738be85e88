//! Presence keys.
//!
//! # Key Schema
//!
//! ```text
//! ("g", "presence", player) -> Claim   live:  [1] ++ since_ms u64 BE ++ session_id u64 BE ++ gateway (UTF-8)
//!                                      ended: [2] ++ since_ms u64 BE ++ session_id u64 BE ++ end u8 ++ gateway (UTF-8)
//!                                             end: 1 kicked by an operator, 2 logged out
//! ```
//!
//! Written by every login before `Welcome` (a claim, or for a resume a
//! check-and-claim), by operator kicks and logouts (ended), read by every session's
//! displacement watch. An ended claim revokes its session's resume tokens; it
//! stays until the next login replaces it (a sweep may remove it only after the
//! resume window, when every token that could name it has expired).

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

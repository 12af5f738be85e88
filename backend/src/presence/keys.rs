//! Presence keys.
//!
//! # Key Schema
//!
//! ```text
//! ("g", "presence", player) -> Claim   live:  [1] ++ since_ms u64 BE ++ session_id u64 BE ++ gateway (UTF-8)
//!                                      ended: [2] ++ since_ms u64 BE ++ session_id u64 BE ++ end u8 ++ gateway (UTF-8)
//!                                             end: 1 kicked by an operator, 2 logged out
//!                                      with the holder's gateway incarnation (non-zero; `crate::liveness`):
//!                                      live:  [3] ++ since_ms ++ session_id ++ incarnation u64 BE ++ gateway
//!                                      ended: [4] ++ since_ms ++ session_id ++ incarnation u64 BE ++ end u8 ++ gateway
//! ("g", "presence_inc", incarnation, player) -> [1]
//!        the holder index: present while the player's claim (v3 / v4) names
//!        that incarnation; written and cleared in the claim's transaction;
//!        the orphan sweep reads one dead incarnation's range
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

/// `("g", "presence_inc", incarnation)`: claims held by one gateway incarnation.
pub fn held_by(incarnation: u64) -> Subspace {
    global_family("presence_inc").subspace(&(incarnation,))
}

/// `("g", "presence_inc", incarnation, player)`.
pub fn holder(incarnation: u64, player: &str) -> Vec<u8> {
    held_by(incarnation).pack(&(player,))
}

/// The player's presence key.
pub fn presence(player: &str) -> Vec<u8> {
    family().pack(&(player,))
}

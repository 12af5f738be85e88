//! The login queue's keys in the region keyspace.
//!
//! # Key Schema
//!
//! Every key is a FoundationDB tuple under `("r", region, "lq")`:
//!
//! ```text
//! ("r", region, "lq", "cfg")             -> v1 JSON Budget {max_sessions, max_admissions_per_sec,
//!                                            paused, updated_ms}; absent: unlimited
//! ("r", region, "lq", "used")            -> 8-byte LE counter: slots in use (live sessions, admitted
//!                                            places not yet taken, re-entry reservations)
//! ("r", region, "lq", "rate")            -> v1 JSON RateWindow {window_start_ms, admitted}: the
//!                                            admission serialization point (every admission reads
//!                                            and rewrites it)
//! ("r", region, "lq", "w", stamp)        -> v1 JSON WaitingPlace {player, place, enqueued_ms}: the
//!                                            FIFO; `stamp` is the enqueue transaction's
//!                                            versionstamp (tuple Versionstamp, user version 0)
//! ("r", region, "lq", "acct", player)    -> v1 JSON AccountEntry: the account's one place / slot
//! ("r", region, "lq", "h", holder, player) -> [1]: holder index (which gateway holds what),
//!                                            for the fleet-liveness orphan sweep
//! ("r", region, "lq", "exp", deadline_ms, player) -> [1]: expiry index (detached places,
//!                                            untaken admissions, re-entry reservations)
//! ("r", region, "lq", "stat", "adm"|"aband") -> 8-byte LE counters: admissions, abandoned places
//! ("r", region, "lq", "op", "tick"|"sweep") -> op marker (`crate::rerun`): the last admission
//!                                            tick's / expiry sweep batch's op id and answer
//! ("r", region, "lq", "op", "rel", holder) -> op marker: the last `release_holder` batch for
//!                                            that gateway
//! ```
//!
//! The entry (`acct`) is the truth; the holder and expiry indexes are kept in
//! the same transactions as every entry change and are checked against the
//! entry before anything is acted on.

use foundationdb_tuple::{Subspace, Versionstamp};

use crate::keyspace::RegionName;

/// `("r", region, "lq", "op", scope)`: the op marker of one kind of region-wide
/// work (`tick`, `sweep`; see `crate::rerun`).
pub fn op_marker(region: &RegionName, scope: &str) -> Vec<u8> {
    root(region).pack(&("op", scope))
}

/// `("r", region, "lq", "op", "rel", holder)`: the op marker of
/// `release_holder` batches for gateway `holder`.
pub fn release_marker(region: &RegionName, holder: &str) -> Vec<u8> {
    root(region).pack(&("op", "rel", holder))
}

/// `("r", region, "lq")`.
pub fn root(region: &RegionName) -> Subspace {
    crate::keyspace::region_family(region, "lq")
}

/// The budget record.
pub fn budget(region: &RegionName) -> Vec<u8> {
    root(region).pack(&("cfg",))
}

/// The slots-in-use counter.
pub fn used(region: &RegionName) -> Vec<u8> {
    root(region).pack(&("used",))
}

/// The admission rate window.
pub fn rate(region: &RegionName) -> Vec<u8> {
    root(region).pack(&("rate",))
}

/// The waiting index (the FIFO).
pub fn waiting(region: &RegionName) -> Subspace {
    root(region).subspace(&("w",))
}

/// A waiting key with an incomplete versionstamp (and its 4-byte offset suffix).
pub fn waiting_new(region: &RegionName) -> Vec<u8> {
    waiting(region).pack_with_versionstamp(&(Versionstamp::incomplete(0),))
}

/// The waiting key of a place enqueued with `stamp`.
pub fn waiting_at(region: &RegionName, stamp: &Versionstamp) -> Vec<u8> {
    waiting(region).pack(&(stamp,))
}

/// The account entry.
pub fn account(region: &RegionName, player: &str) -> Vec<u8> {
    root(region).pack(&("acct", player))
}

/// The holder index of one gateway.
pub fn holder(region: &RegionName, gateway: &str) -> Subspace {
    root(region).subspace(&("h", gateway))
}

/// The expiry index.
pub fn expiry(region: &RegionName) -> Subspace {
    root(region).subspace(&("exp",))
}

/// One expiry index key.
pub fn expiry_at(region: &RegionName, deadline_ms: u64, player: &str) -> Vec<u8> {
    expiry(region).pack(&(deadline_ms, player))
}

/// The admissions counter.
pub fn admissions(region: &RegionName) -> Vec<u8> {
    root(region).pack(&("stat", "adm"))
}

/// The abandoned-places counter.
pub fn abandoned(region: &RegionName) -> Vec<u8> {
    root(region).pack(&("stat", "aband"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_keys_sort_by_stamp_and_stay_in_the_family() {
        let r = RegionName::new("eu-west").unwrap();
        let a = waiting_at(&r, &Versionstamp::complete([0, 0, 0, 0, 0, 0, 0, 1, 0, 0], 0));
        let b = waiting_at(&r, &Versionstamp::complete([0, 0, 0, 0, 0, 0, 0, 1, 0, 1], 0));
        assert!(a < b);
        let (wb, we) = waiting(&r).range();
        assert!(a > wb && b < we);
        let (rb, re) = root(&r).range();
        assert!(account(&r, "p") > rb && account(&r, "p") < re);
        assert!(!waiting(&r).is_start_of(&account(&r, "p")));
    }
}

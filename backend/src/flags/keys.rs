//! Feature flags' and rollouts' keys in the **global** keyspace.
//!
//! # Key Schema
//!
//! Every key is a FoundationDB tuple under the global subspace `("g")`. Values
//! start with a one-byte schema version (currently `1`) followed by JSON, except
//! counters (raw 8-byte little-endian, atomic add, no schema byte) and segment
//! membership markers (the single byte `1`).
//!
//! ```text
//! ("g", "flags", "flag", flag_key)            -> v1 JSON FlagRecord { flag, version, updated_ms, updated_by }
//! ("g", "flags", "chg")                       -> 8-byte LE counter; +1 in every transaction that
//!                                                changes a flag, a segment or a rollout's percentage;
//!                                                watched by gateways (re-evaluate and push)
//! ("g", "flags", "seg", segment, player)      -> [1]   player is in segment
//! ("g", "flags", "segn", segment)             -> 8-byte LE count of the segment's members
//! ("g", "flags", "segt")                      -> 8-byte LE count of all segments' members
//!                                                (both read in the transaction that changes them)
//! ("g", "flags", "sgop", segment)             -> 16-byte op id ++ 8-byte BE count: the segment's
//!                                                last add/remove (idempotency of its reruns)
//! ("g", "flags", "ro", rollout_id)            -> v1 JSON Rollout (plan, state, version)
//! ("g", "flags", "roa", flag_key)             -> v1 JSON { id, rule }: the flag's running rollout
//! ("g", "flags", "roop", rollout_id)          -> 16-byte op id ++ v1 JSON TickReport: the rollout's
//!                                                last transition (idempotency of its reruns)
//! ("g", "flags", "op", flag_key)              -> 16-byte op id ++ 8-byte BE version ++ 8-byte BE
//!                                                updated_ms: the flag's last set/delete (idempotency)
//! ```
//!
//! - `flag_key`, `segment`: 1..=64 bytes of `[a-z0-9_.-]`; `player`: 32 lowercase
//!   hex; `rollout_id`: `ro-` + 16 lowercase hex.
//! - The audit log that flag, segment and rollout changes append to has its own
//!   keys (`crate::audit::keys`).
//! - The per-rollout cohort counters that telemetry writes and the rollout
//!   controller reads live with telemetry (`crate::telemetry::keys`).

use foundationdb_tuple::Subspace;

/// The flags subspace `("g", "flags")`.
pub fn flags_root() -> Subspace {
    crate::keyspace::global_family("flags")
}

/// The subspace of all flags, `("g", "flags", "flag")`.
pub fn flags() -> Subspace {
    flags_root().subspace(&("flag",))
}

/// `("g", "flags", "flag", key)`: one flag.
pub fn flag(key: &str) -> Vec<u8> {
    flags().pack(&(key,))
}

/// `("g", "flags", "chg")`: the flags change counter.
pub fn changes() -> Vec<u8> {
    flags_root().pack(&("chg",))
}

/// `("g", "flags", "seg", segment)`: a segment's members.
pub fn segment_members(segment: &str) -> Subspace {
    flags_root().subspace(&("seg", segment))
}

/// `("g", "flags", "seg")`: every segment's members.
pub fn all_segments() -> Subspace {
    flags_root().subspace(&("seg",))
}

/// `("g", "flags", "op", key)`: the last set or delete of a flag (idempotency).
pub fn last_op(key: &str) -> Vec<u8> {
    flags_root().pack(&("op", key))
}

/// `("g", "flags", "sgop", segment)`: the segment's last add or remove
/// (idempotency of its reruns).
pub fn segment_op(segment: &str) -> Vec<u8> {
    flags_root().pack(&("sgop", segment))
}

/// The subspace of all segment counts, `("g", "flags", "segn")`.
pub fn segment_counts() -> Subspace {
    flags_root().subspace(&("segn",))
}

/// `("g", "flags", "segt")`: all segments' member count.
pub fn segment_total() -> Vec<u8> {
    flags_root().pack(&("segt",))
}

/// `("g", "flags", "segn", segment)`: a segment's member count.
pub fn segment_count(segment: &str) -> Vec<u8> {
    flags_root().pack(&("segn", segment))
}

/// The subspace of all rollouts, `("g", "flags", "ro")`.
pub fn rollouts() -> Subspace {
    flags_root().subspace(&("ro",))
}

/// `("g", "flags", "ro", id)`: one rollout.
pub fn rollout(id: &str) -> Vec<u8> {
    rollouts().pack(&(id,))
}

/// `("g", "flags", "roop", id)`: the rollout's last transition (idempotency of
/// its reruns).
pub fn rollout_op(id: &str) -> Vec<u8> {
    flags_root().pack(&("roop", id))
}

/// `("g", "flags", "roa")`: every running rollout, by flag.
pub fn active_rollouts() -> Subspace {
    flags_root().subspace(&("roa",))
}

/// `("g", "flags", "roa", flag_key)`: the flag's running rollout.
pub fn active_rollout(flag_key: &str) -> Vec<u8> {
    active_rollouts().pack(&(flag_key,))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inside(key: &[u8], (b, e): &(Vec<u8>, Vec<u8>)) -> bool {
        key > b.as_slice() && key < e.as_slice()
    }

    #[test]
    fn layout() {
        let all = flags().range();
        assert!(inside(&flag("a"), &all));
        assert!(!inside(&changes(), &all));
        assert!(!inside(&rollout("ro-1"), &all));
        assert!(!inside(&active_rollout("a"), &all));
        assert!(inside(
            &segment_members("vip").pack(&("p",)),
            &segment_members("vip").range()
        ));
        assert!(!inside(
            &segment_members("vip2").pack(&("p",)),
            &segment_members("vip").range()
        ));
        let g = crate::keyspace::global().range();
        assert!(inside(&flag("a"), &g) && inside(&changes(), &g));
    }
}

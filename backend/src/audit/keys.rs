//! The audit log's keys in the **global** keyspace.
//!
//! # Key Schema
//!
//! Every key is a FoundationDB tuple under the global subspace `("g")`. Values
//! are v1 records: the schema byte `1` followed by JSON
//! ([`crate::codec::encode_v1`]).
//!
//! ```text
//! ("g", "audit", "log", versionstamp)         -> v1 JSON AuditRecord, in commit order
//! ("g", "audit", "tgt", target, versionstamp) -> the same v1 JSON AuditRecord, indexed by target
//! ```
//!
//! - `target`: what changed, such as `flag:<key>`, `segment:<name>`,
//!   `rollout:<id>` or `content:<id>`.
//! - `versionstamp`: a tuple versionstamp (10-byte commit stamp + 2-byte order
//!   within the transaction), filled in at commit, so audit keys are
//!   conflict-free appends in commit order.

use foundationdb_tuple::{Subspace, Versionstamp};

/// The audit subspace `("g", "audit")`.
pub fn audit_root() -> Subspace {
    crate::keyspace::global_family("audit")
}

/// `("g", "audit", "log")`: every audit record in commit order.
pub fn audit_log() -> Subspace {
    audit_root().subspace(&("log",))
}

/// `("g", "audit", "tgt", target)`: one target's audit records in commit order.
pub fn audit_by_target(target: &str) -> Subspace {
    audit_root().subspace(&("tgt", target))
}

/// A versionstamped key (with its 4-byte offset suffix) in `sub`, order `seq`
/// within the transaction.
pub(crate) fn versionstamped(sub: &Subspace, seq: u16) -> Vec<u8> {
    sub.pack_with_versionstamp(&(Versionstamp::incomplete(seq),))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let (b, e) = audit_log().range();
        let other = audit_by_target("flag:a").pack(&("x",));
        assert!(!(other.as_slice() > b.as_slice() && other.as_slice() < e.as_slice()));
        let (gb, ge) = crate::keyspace::global().range();
        assert!(b > gb && e < ge);
    }
}

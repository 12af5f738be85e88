//! Content's keys in the **global** keyspace.
//!
//! # Key Schema
//!
//! Every key is a FoundationDB tuple under `("g", "content")`. Values start with a
//! one-byte schema version (currently `1`) followed by JSON, except the change
//! counter (raw 8-byte little-endian, atomic add, no schema byte).
//!
//! ```text
//! ("g", "content", "man", content_id, version)  -> v1 JSON ManifestRecord
//!                                                  { manifest, published_ms, published_by };
//!                                                  written once, never changed (immutable)
//! ("g", "content", "latest", content_id)        -> v1 JSON { version }: the latest version
//! ("g", "content", "chg")                       -> 8-byte LE counter, +1 per publish; watched
//!                                                  by gateways to push new manifests live
//! ```
//!
//! - `content_id`: 1..=64 bytes of `[a-z0-9_.-]`; `version`: a positive integer
//!   (tuple integer encoding, so versions sort numerically).

use foundationdb_tuple::Subspace;

/// Content's subspace `("g", "content")`.
pub fn root() -> Subspace {
    crate::keyspace::global_family("content")
}

/// `("g", "content", "man", id)`: every version of one content id.
pub fn versions(id: &str) -> Subspace {
    root().subspace(&("man", id))
}

/// `("g", "content", "man", id, version)`: one manifest.
pub fn manifest(id: &str, version: u64) -> Vec<u8> {
    versions(id).pack(&(version,))
}

/// `("g", "content", "latest")`: the latest-version pointers of every id.
pub fn latest_all() -> Subspace {
    root().subspace(&("latest",))
}

/// `("g", "content", "latest", id)`: one id's latest version.
pub fn latest(id: &str) -> Vec<u8> {
    latest_all().pack(&(id,))
}

/// `("g", "content", "chg")`: the publish counter.
pub fn changes() -> Vec<u8> {
    root().pack(&("chg",))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically_and_ids_do_not_overlap() {
        assert!(manifest("maps", 9) < manifest("maps", 10));
        let (b, e) = versions("maps").range();
        let k = manifest("maps2", 1);
        assert!(!(k > b && k < e));
        assert!(manifest("maps", 1) > b && manifest("maps", 1) < e);
        let (lb, le) = latest_all().range();
        assert!(changes() < lb || changes() >= le);
    }
}

//! The key layout shared by every service: FoundationDB tuples
//! (`foundationdb-tuple`, identical bytes on both backends) under one subspace per
//! region plus one global subspace.
//!
//! # Key Schema
//!
//! ```text
//! ("g", family, ...)                 global keyspace: identity, signing keys, ...
//! ("r", region, family, ...)         one region's keyspace: player state, ledger, ...
//! ```
//!
//! - The first element separates the global keyspace (`"g"`) from regional ones
//!   (`"r"`). On FoundationDB the global keyspace lives in the global cluster and
//!   each region's in that region's cluster; on the embedded backend they may share
//!   one store. Because the region name is part of every regional key, two regions
//!   can share a store without overlapping, and a region's data can be moved to its
//!   own cluster without rewriting keys.
//! - `region` is a [`RegionName`]: 1..=32 characters of `[a-z0-9-]` (for example
//!   `eu-west`).
//! - `family` is a short string naming a key family owned by one service. Every
//!   family is listed in `backend/KEYSPACE.md` (layout, writer, readers, value
//!   schema version). To add one: pick a name not in that table, add a constructor
//!   next to the service that owns it built on [`global`] or [`region`] (or
//!   [`global_family`] / [`region_family`]), and add a row to the table.
//! - Values carry their own schema version (the owning service documents how,
//!   typically a leading version byte); counters written with atomic add are raw
//!   8-byte little-endian integers.
//!
//! The embedded backend also keeps one record outside this layout, in a separate
//! fjall keyspace that no transaction can read: its last commit version.

use foundationdb_tuple::Subspace;

/// Tag of the global keyspace: `("g", ...)`.
pub const GLOBAL_TAG: &str = "g";
/// Tag of regional keyspaces: `("r", region, ...)`.
pub const REGION_TAG: &str = "r";

/// A validated region name: 1..=32 characters of `[a-z0-9-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionName(String);

/// A region name that breaks the rules of [`RegionName`].
#[derive(Debug, thiserror::Error)]
#[error("invalid region name {0:?}: use 1 to 32 characters of a-z, 0-9 and '-'")]
pub struct InvalidRegionName(pub String);

impl RegionName {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidRegionName> {
        let name = name.into();
        let ok = (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(RegionName(name))
        } else {
            Err(InvalidRegionName(name))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RegionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The global keyspace, `("g")`.
pub fn global() -> Subspace {
    Subspace::all().subspace(&(GLOBAL_TAG,))
}

/// One region's keyspace, `("r", region)`.
pub fn region(region: &RegionName) -> Subspace {
    Subspace::all().subspace(&(REGION_TAG, region.as_str()))
}

/// A global key family, `("g", family)`.
pub fn global_family(family: &str) -> Subspace {
    global().subspace(&(family,))
}

/// A regional key family, `("r", region, family)`.
pub fn region_family(region_name: &RegionName, family: &str) -> Subspace {
    region(region_name).subspace(&(family,))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_names() {
        assert!(RegionName::new("eu-west").is_ok());
        assert!(RegionName::new("").is_err());
        assert!(RegionName::new("EU").is_err());
        assert!(RegionName::new("a".repeat(33)).is_err());
    }

    #[test]
    fn regions_and_global_do_not_overlap() {
        let eu = RegionName::new("eu").expect("valid");
        let eu_west = RegionName::new("eu-west").expect("valid");
        let (gb, ge) = global().range();
        for r in [&eu, &eu_west] {
            let (b, e) = region(r).range();
            assert!(e <= gb || ge <= b, "region {r} overlaps global");
        }
        // A region is not a prefix of another whose name extends it.
        let key = region_family(&eu_west, "state").pack(&("p1",));
        assert!(!region(&eu).is_start_of(&key));
        assert!(region(&eu_west).is_start_of(&key));
        let (vals,): (String,) = region_family(&eu_west, "state").unpack(&key).expect("unpack");
        assert_eq!(vals, "p1");
    }
}

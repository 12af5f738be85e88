//! Player state's keys in a **region** keyspace, and the subspace helpers that
//! build them.
//!
//! # Key Schema
//!
//! Every key is a FoundationDB tuple under the region subspace `("r", region)`.
//!
//! ```text
//! ("r", region, "st", player, "doc", name) -> v1 document:
//!        [0]      schema version = 1
//!        [1..9]   version, u64 big-endian (1 for the first write, +1 per update)
//!        [9..17]  updated_ms, u64 big-endian (unix milliseconds)
//!        [17..]   the document bytes (opaque to the backend, at most 64 KiB)
//! ("r", region, "st", player, "chg")       -> 8-byte little-endian counter (atomic add,
//!                                             no schema byte), +1 in every transaction
//!                                             that changes one of the player's documents;
//!                                             watched for live pushes
//! ```
//!
//! Everything of a player lives under `("r", region, "st", player)`
//! ([`player`]), which is the family the cross-region transfer moves. The player
//! fence checked by every write lives with the transfer
//! ([`crate::fence`]).

use foundationdb_tuple::Subspace;

use crate::keyspace::RegionName;

/// Everything player state keeps for `player` in `region`:
/// `("r", region, "st", player)`.
pub fn player(region_name: &RegionName, player: &str) -> Subspace {
    crate::keyspace::region_family(region_name, "st").subspace(&(player,))
}

/// The subspace of the player's documents, `("r", region, "st", player, "doc")`.
pub fn docs(region_name: &RegionName, player_id: &str) -> Subspace {
    player(region_name, player_id).subspace(&("doc",))
}

/// `("r", region, "st", player, "doc", name)`: one document.
pub fn doc(region_name: &RegionName, player_id: &str, name: &str) -> Vec<u8> {
    docs(region_name, player_id).pack(&(name,))
}

/// `("r", region, "st", player, "chg")`: the player's change counter.
pub fn changes(region_name: &RegionName, player_id: &str) -> Vec<u8> {
    player(region_name, player_id).pack(&("chg",))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inside(key: &[u8], (b, e): &(Vec<u8>, Vec<u8>)) -> bool {
        key > b.as_slice() && key < e.as_slice()
    }

    #[test]
    fn region_matches_the_shared_keyspace() {
        let name = RegionName::new("eu-west").unwrap();
        assert_eq!(
            player(&name, "p").bytes(),
            crate::keyspace::region_family(&name, "st")
                .subspace(&("p",))
                .bytes()
        );
    }

    #[test]
    fn layout() {
        let (eu, us) = (RegionName::new("eu").unwrap(), RegionName::new("us").unwrap());
        let p = player(&eu, "p1").range();
        assert!(inside(&doc(&eu, "p1", "profile"), &p));
        assert!(inside(&changes(&eu, "p1"), &p));
        assert!(!inside(&changes(&eu, "p1"), &docs(&eu, "p1").range()));
        // Other players and regions are outside.
        assert!(!inside(&doc(&eu, "p2", "profile"), &p));
        assert!(!inside(&doc(&us, "p1", "profile"), &p));
        // A player id that is a prefix of another does not overlap (tuple encoding).
        assert!(!inside(&doc(&eu, "p10", "profile"), &p));
        // The player fence is outside the family the transfer clears.
        assert!(!inside(&crate::fence::key(&eu, "p1"), &p));
    }
}

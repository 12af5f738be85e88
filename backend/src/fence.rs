//! The per-region **player fence**: a key that a cross-region transfer sets on a
//! player in the source and destination regions, and that every service checks in
//! the same transaction as each write to that player's data.
//!
//! # Key Schema
//!
//! ```text
//! ("r", region, "pl", player, "fence") -> v1 JSON Fence
//! ```
//!
//! | state | set by step | meaning in this region | writes | reads |
//! |---|---|---|---|---|
//! | (absent) | | normal | allowed | allowed |
//! | `outgoing` | fence source | data is being copied out | refused | allowed |
//! | `incoming` | copy | data is being copied in | refused | refused |
//! | `moved` | clear source | data now lives in `to` | refused | refused |
//!
//! Reading the fence adds a read conflict, so a write that raced with the
//! transaction setting the fence conflicts and re-runs, then sees the fence: no
//! write can slip into the source after the copy has read it.
//!
//! Its own module, shared by the services that own per-player data (state,
//! ledger) and by the transfer that sets it, so none of them depends on another
//! for it.

use serde::{Deserialize, Serialize};

use crate::codec::{decode_v1, encode_v1, CodecError};
use crate::keyspace::RegionName;
use crate::store::{Transaction, TxError};

/// `("r", region, "pl", player, "fence")`.
pub fn key(region: &RegionName, player: &str) -> Vec<u8> {
    crate::keyspace::region_family(region, "pl").pack(&(player, "fence"))
}

/// A player's fence in one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Fence {
    /// The player's data is being copied out of this region to `to`.
    Outgoing {
        /// Transfer id.
        transfer: String,
        /// Destination region.
        to: String,
    },
    /// The player's data is being copied into this region from `from`.
    Incoming {
        /// Transfer id.
        transfer: String,
        /// Source region.
        from: String,
    },
    /// The player's data moved from this region to `to`.
    Moved {
        /// Transfer id.
        transfer: String,
        /// The region that holds the data now.
        to: String,
    },
}

impl Fence {
    /// The transfer that set this fence.
    pub fn transfer(&self) -> &str {
        match self {
            Fence::Outgoing { transfer, .. }
            | Fence::Incoming { transfer, .. }
            | Fence::Moved { transfer, .. } => transfer,
        }
    }

    /// Whether reads of the player's data in this region are refused.
    pub fn blocks_reads(&self) -> bool {
        !matches!(self, Fence::Outgoing { .. })
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        encode_v1(self)
    }

    /// Decodes a stored fence; the error names what is wrong (the messages
    /// name the fence, as they always did).
    pub(crate) fn decode(raw: &[u8]) -> Result<Fence, String> {
        decode_v1(raw).map_err(|e| match e {
            CodecError::UnsupportedVersion(v) => format!("unsupported fence schema version {v}"),
            CodecError::Empty => "empty fence value".into(),
            CodecError::Json(e) => e.to_string(),
        })
    }
}

/// Reads the player's fence in `region` (adds a read conflict on it). `map` turns
/// a decode failure into the caller's error type.
pub async fn read<T: Transaction, E>(
    tx: &T,
    region: &RegionName,
    player: &str,
    map: impl FnOnce(String) -> E,
) -> Result<Option<Fence>, TxError<E>> {
    match tx.get(&key(region, player)).await? {
        Some(raw) => Fence::decode(&raw).map(Some).map_err(|e| TxError::User(map(e))),
        None => Ok(None),
    }
}

/// Sets the player's fence in `region`.
pub(crate) fn set<T: Transaction, E>(
    tx: &T,
    region: &RegionName,
    player: &str,
    fence: &Fence,
) -> Result<(), TxError<E>> {
    tx.set(&key(region, player), &fence.encode())?;
    Ok(())
}

/// Removes the player's fence in `region`.
pub(crate) fn clear<T: Transaction, E>(tx: &T, region: &RegionName, player: &str) -> Result<(), TxError<E>> {
    tx.clear(&key(region, player))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fence_encoding() {
        let f = Fence::Moved {
            transfer: "t1".into(),
            to: "us".into(),
        };
        let raw = f.encode();
        assert_eq!(raw[0], crate::codec::SCHEMA_V1);
        assert!(std::str::from_utf8(&raw[1..])
            .unwrap()
            .contains(r#""state":"moved""#));
        assert_eq!(Fence::decode(&raw).unwrap(), f);
        assert!(Fence::decode(&[9, b'{', b'}']).is_err());
        assert!(f.blocks_reads());
        assert!(!Fence::Outgoing {
            transfer: "t".into(),
            to: "b".into()
        }
        .blocks_reads());
    }
}

//! Transfer records, steps, the fault-injection hook points, and the per-player
//! key families a transfer moves.

use foundationdb_tuple::Subspace;
use serde::{Deserialize, Serialize};

use super::errors::TransferError;
use crate::keyspace::RegionName;

/// A transfer's id: 32 lowercase hex characters.
pub type TransferId = String;

/// The steps of a transfer, in order. The record names the **last completed**
/// step; resuming runs the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferStep {
    /// The record exists; nothing has been touched yet.
    Started,
    /// The source region refuses writes to the player (fence `outgoing`).
    SourceFenced,
    /// The player's data is in the destination, which is fenced `incoming`.
    Copied,
    /// Identity names the destination as the player's home (same transaction as
    /// this record update).
    HomeSwitched,
    /// The source holds none of the player's data; its fence says `moved`.
    SourceCleared,
    /// The destination's fence is lifted; the transfer is over.
    Done,
}

impl TransferStep {
    /// The step after this one (`Done` stays `Done`).
    pub fn next(self) -> TransferStep {
        use TransferStep::*;
        match self {
            Started => SourceFenced,
            SourceFenced => Copied,
            Copied => HomeSwitched,
            HomeSwitched => SourceCleared,
            SourceCleared | Done => Done,
        }
    }

    /// Every step a transfer completes, in order (all but `Started`).
    pub const COMPLETED: [TransferStep; 5] = [
        TransferStep::SourceFenced,
        TransferStep::Copied,
        TransferStep::HomeSwitched,
        TransferStep::SourceCleared,
        TransferStep::Done,
    ];
}

/// Where a fault-injection hook runs (see
/// [`Transfer::resume_with_hook`](super::Transfer::resume_with_hook)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookPoint {
    /// The step's effect committed; the record does not say so yet.
    AfterEffect(TransferStep),
    /// The record says the step is complete.
    AfterRecord(TransferStep),
}

/// A transfer record, kept in the global keyspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRecord {
    /// Its id.
    pub id: TransferId,
    /// The player moved.
    pub player: String,
    /// Source region (the player's home when the transfer started).
    pub from: String,
    /// Destination region.
    pub to: String,
    /// The last completed step.
    pub step: TransferStep,
    /// When the transfer started (unix seconds).
    pub created_unix: u64,
    /// When the record last changed (unix seconds).
    pub updated_unix: u64,
}

/// Encodes a transfer record ([`crate::codec::encode_v1`]).
pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    crate::codec::encode_v1(v)
}

/// Decodes a transfer record written by [`encode`].
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(raw: &[u8]) -> Result<T, TransferError> {
    crate::codec::decode_v1(raw).map_err(|e| TransferError::Corrupt(e.to_string()))
}

/// A family of per-player keys in a region keyspace that a transfer moves.
///
/// Every key the family keeps for `player` in `region` must lie inside
/// `player_subspace(region, player).range()`, and the part of the key after the
/// subspace prefix must not depend on the region (it is copied verbatim). Values
/// are copied as they are (their schema-version bytes included). A family must
/// check the player fence ([`crate::fence`]) in every transaction that writes
/// those keys.
pub trait PlayerFamily: Send + Sync + 'static {
    /// A short name for logs and errors.
    fn name(&self) -> &'static str;
    /// The subspace holding all of the family's keys for `player` in `region`.
    fn player_subspace(&self, region: &RegionName, player: &str) -> Subspace;
}

/// Player state's family: `("r", region, "st", player)` (documents and change
/// counter).
#[derive(Debug, Clone, Copy, Default)]
pub struct StateFamily;

impl PlayerFamily for StateFamily {
    fn name(&self) -> &'static str {
        "state"
    }
    fn player_subspace(&self, region: &RegionName, player: &str) -> Subspace {
        crate::state::keys::player(region, player)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_ordered_and_chain() {
        let mut s = TransferStep::Started;
        for expected in TransferStep::COMPLETED {
            assert!(s < expected);
            s = s.next();
            assert_eq!(s, expected);
        }
        assert_eq!(TransferStep::Done.next(), TransferStep::Done);
        assert_eq!(
            serde_json::to_string(&TransferStep::HomeSwitched).unwrap(),
            "\"home_switched\""
        );
    }
}

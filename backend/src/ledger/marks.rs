//! The "indexed" marker ([`keys::indexed`]): one key that vouches for both
//! per-player markers a write and a balance read depend on, "held_all" (the
//! held-asset index is complete, [`super::projection`]) and "tot_all" (the
//! per-asset totals are exact, [`super::totals`]).
//!
//! Why: every write checked both markers, and the inventory-changed push
//! after it read both again; each is a skiplist search in a memtable holding
//! every recent version of every player's keys (docs/PERFORMANCE.md, "Grant
//! transaction cut"). With this marker a write reads one key on its common
//! path instead of two, and so does the push.
//!
//! How it stays true: a write sets it ([`ensure`]) only after it found or set
//! both markers in the same transaction, before any balance change of the
//! write; neither marker is ever removed (a transfer copies all three with the
//! rest of the ledger, and clears them all when the ledger leaves). A ledger
//! written before the marker has none, so its next write checks (and, where
//! missing, sets) the two markers as before and then sets it. Readers
//! ([`complete`]) fall back to the two markers without it. Like the two, it is
//! read by snapshot on the write path: a marker in the snapshot stays set.

use crate::keyspace::RegionName;
use crate::store::{Transaction, TxError};

use super::errors::LedgerError;
use super::{keys, projection, totals};

type TxResult<T> = Result<T, TxError<LedgerError>>;

/// The marker's value (v1).
const MARKER: &[u8] = &[1];

/// Makes the player's held-asset index complete and totals exact (see the
/// module docs) before a write changes balances: one snapshot read when the
/// marker is set; otherwise [`totals::ensure`] and
/// [`projection::ensure_held_all`], then the marker.
pub(super) async fn ensure<T: Transaction>(tx: &T, region: &RegionName, player: &str) -> TxResult<()> {
    let marker = keys::indexed(region, player);
    if tx.get_snapshot(&marker).await?.is_some() {
        return Ok(());
    }
    totals::ensure(tx, region, player).await?;
    projection::ensure_held_all(tx, region, player).await?;
    tx.set(&marker, MARKER)?;
    Ok(())
}

/// Whether both the held-asset index and the totals are complete for the
/// player: the marker, or else both "held_all" and "tot_all" (a ledger not
/// written since the marker existed). `snapshot`: without read conflicts.
pub(super) async fn complete<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
    snapshot: bool,
) -> TxResult<bool> {
    let get = |key: Vec<u8>| async move {
        if snapshot {
            tx.get_snapshot(&key).await
        } else {
            tx.get(&key).await
        }
    };
    if get(keys::indexed(region, player)).await?.is_some() {
        return Ok(true);
    }
    Ok(get(keys::totals_all(region, player)).await?.is_some()
        && get(keys::held_all(region, player)).await?.is_some())
}

//! Per-asset totals: the sum of an asset's escrow shards, kept in one more
//! key (`(.., "tot", 1, kind, id)`, [`keys::total`]) so that the balances can
//! be read with one point read per asset instead of one per shard.
//!
//! Why: the gateway's inventory-changed push reads every balance after every
//! change. Through the held-asset index that was a point read per shard, 32
//! for a default limited currency, each a skiplist search in a memtable
//! holding every recent version of every key: ~32% of the gateway's CPU in
//! the many-player grant bench (docs/PERFORMANCE.md, "The InventoryChanged
//! push's read"). A total is one key per asset.
//!
//! How it stays exact:
//!
//! - every write of a shard ([`super::projection`], [`super::escrow`]) adds
//!   the same delta to the asset's total in the same transaction, by an atomic
//!   add ([`add`]): blind, so concurrent grants still conflict with nothing;
//! - a ledger written before totals existed has none (or, after a writer that
//!   knew them ran beside one that did not, wrong ones), so totals are read
//!   only under the **"tot_all" marker** ([`keys::totals_all`]). The player's
//!   first write without it ([`ensure`], before any balance change of the
//!   write) reads every shard by one range read *with conflicts*, sets each
//!   asset's total to the sum, and sets the marker: a concurrent write of a
//!   shard makes one of the two retry, so no add is lost between the read
//!   and the set. Later writes find the marker (snapshot read) and only add;
//! - a transfer copies totals and marker with the rest of the ledger;
//! - the audit compares every total with its shards while the marker is set.
//!
//! Reading ([`read`]) needs the held-asset index to be complete too ("held_all",
//! see [`keys`]): it lists the assets, then each total is one point read. A
//! total never written is 0 (the marker vouches that every asset with shards
//! got one). A writer built before totals existed (a rolling upgrade) does not
//! add to them: do not run it beside this one (the audit reports the drift).

use std::collections::BTreeMap;

use crate::codec::decode_counter;
use crate::keyspace::RegionName;
use crate::store::{Transaction, TxError};

use super::errors::LedgerError;
use super::projection::{decode_asset, held_assets, read_all_scan};
use super::types::{Asset, Balances};
use super::{keys, marks};

type TxResult<T> = Result<T, TxError<LedgerError>>;

/// The marker's value (v1).
const MARKER: &[u8] = &[1];

/// Adds `delta` to `asset`'s total (with every shard write of the asset).
pub(super) fn add<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
    asset: &Asset,
    delta: i64,
) -> TxResult<()> {
    tx.atomic_add(&keys::total(region, player, asset), delta)?;
    Ok(())
}

/// Makes the player's totals exact before a write changes balances: if the
/// "tot_all" marker is missing (snapshot read), clears every total, sets
/// each asset's total from one range read of the shards with conflicts, and
/// sets the marker. Must run
/// before the write's own shard and total adds (it overwrites totals).
pub(super) async fn ensure<T: Transaction>(tx: &T, region: &RegionName, player: &str) -> TxResult<()> {
    let marker = keys::totals_all(region, player);
    if tx.get_snapshot(&marker).await?.is_some() {
        return Ok(());
    }
    // Totals left without the marker (none are expected) would outlive the
    // set below for an asset with no shards: clear them all first (blind).
    let (b, e) = keys::totals(region, player).range();
    tx.clear_range(&b, &e)?;
    for (asset, shards) in read_all_scan(tx, region, player, false).await? {
        let sum: i64 = shards.iter().map(|s| s.1).sum();
        tx.set(&keys::total(region, player, &asset), &sum.to_le_bytes())?;
    }
    tx.set(&marker, MARKER)?;
    Ok(())
}

/// The player's balances (every asset with a positive total) from the
/// held-asset index and one point read per asset, or `None` when the totals
/// or the index are not complete ([`marks::complete`]: "indexed", else
/// "tot_all" and "held_all"): the caller then reads the shards. `snapshot`:
/// without read conflicts.
pub(super) async fn read<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
    snapshot: bool,
) -> TxResult<Option<Balances>> {
    let get = |key: Vec<u8>| async move {
        if snapshot {
            tx.get_snapshot(&key).await
        } else {
            tx.get(&key).await
        }
    };
    if !marks::complete(tx, region, player, snapshot).await? {
        return Ok(None);
    }
    // The totals' subspace once, not per asset (see `read_shards`).
    let totals = keys::totals(region, player);
    let mut out = Balances::new();
    for asset in held_assets(tx, region, player, snapshot).await? {
        let key = totals.pack(&(asset.kind.tag(), asset.id.as_str()));
        let total = decode_counter(get(key).await?.as_deref());
        if total > 0 {
            out.insert(asset, total as u64);
        }
    }
    Ok(Some(out))
}

/// Every stored total of the player (by one range read, for the audit), or
/// `None` without the "tot_all" marker.
pub(super) async fn read_stored<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
) -> TxResult<Option<BTreeMap<Asset, i64>>> {
    if tx
        .get_snapshot(&keys::totals_all(region, player))
        .await?
        .is_none()
    {
        return Ok(None);
    }
    let sub = keys::totals(region, player);
    let (b, e) = sub.range();
    let mut out = BTreeMap::new();
    for kv in tx.get_range_snapshot(&b, &e, None, false).await? {
        out.insert(
            decode_asset(&sub, &kv.key, "total")?,
            decode_counter(Some(&kv.value)),
        );
    }
    Ok(Some(out))
}

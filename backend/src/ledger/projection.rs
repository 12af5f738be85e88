//! The balance projection inside a write transaction: credits and debits of one
//! asset of one player, kept in escrow shards (see the module docs of
//! [`super`], "Hot players").

use std::collections::BTreeMap;

use foundationdb_tuple::Subspace;

use crate::keyspace::RegionName;
use crate::store::{KeyValue, Transaction, TxError};

use super::catalog::{AssetRule, Catalog};
use super::errors::LedgerError;
use super::escrow;
use super::keys;
use super::totals;
use super::types::{Asset, AssetKind, Balances};
use crate::codec::decode_counter;

/// The ceiling of an *unlimited* asset's balance: far below `i64::MAX`, so the
/// conflict-free credits of unlimited assets (checked against a snapshot read)
/// cannot overflow even with millions of concurrent [`MAX_AMOUNT`](super::MAX_AMOUNT)
/// grants.
pub const UNLIMITED_CEILING: u64 = 1 << 60;

type TxResult<T> = Result<T, TxError<LedgerError>>;

/// Reads one asset's shards (shard → value), with or without read conflicts.
/// `point` (a hot player, see [`super::hot`]): the catalog's `shards` by point
/// reads, then any shard at or past `shards` (left by an older catalog with
/// more) by a range read; otherwise one range read over the asset.
///
/// The store keeps every version of a key until compaction, and a range read
/// steps over all of them (fjall's MVCC merge), while a point read seeks to the
/// one it needs. A hot player's shards take thousands of writes a second, so
/// one range read over them was ~80% of a hot grant's CPU (docs/PERFORMANCE.md,
/// "Durable writes"). The keys past `shards` are not written under this
/// catalog, so the range read over them stays cheap. Both ways return the same
/// values and register the same conflicts (the asset's subspace holds shard
/// keys only).
pub(super) async fn read_shards<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
    asset: &Asset,
    shards: u16,
    point: bool,
    snapshot: bool,
) -> TxResult<BTreeMap<u16, i64>> {
    let mut out = BTreeMap::new();
    let shards = if point { shards } else { 0 };
    // The subspace once, not per shard: building it is several allocations
    // and a tuple encoding each time (they showed in the profile).
    let sub = keys::asset(region, player, asset);
    for s in 0..shards {
        let key = sub.pack(&(s,));
        let v = if snapshot {
            tx.get_snapshot(&key).await?
        } else {
            tx.get(&key).await?
        };
        if let Some(v) = v {
            out.insert(s, decode_counter(Some(&v)));
        }
    }
    let b = sub.pack(&(shards,));
    let (_, e) = sub.range();
    let kvs = range(tx, &b, &e, snapshot).await?;
    for kv in kvs {
        let (s,): (u16,) = sub
            .unpack(&kv.key)
            .map_err(|_| TxError::User(LedgerError::Corrupt("undecodable balance shard key".into())))?;
        out.insert(s, decode_counter(Some(&kv.value)));
    }
    Ok(out)
}

/// A range read, with or without read conflicts.
async fn range<T: Transaction>(tx: &T, b: &[u8], e: &[u8], snapshot: bool) -> TxResult<Vec<KeyValue>> {
    Ok(if snapshot {
        tx.get_range_snapshot(b, e, None, false).await?
    } else {
        tx.get_range(b, e, None, false).await?
    })
}

fn total(shards: &BTreeMap<u16, i64>) -> i64 {
    shards.values().sum()
}

fn as_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Adds `amount` of `asset` to `player`'s balance, within the asset's limit.
///
/// - Unlimited: an atomic add to shard 0, no read conflict on it; a snapshot
///   read keeps the balance under [`UNLIMITED_CEILING`], and a layout record
///   left from when the asset was limited is cleared ([`escrow::forget_layout`]).
/// - Limited: escrow shards ([`escrow`]): the fast path reads and adds to one
///   shard; the exact path reads every shard with a conflict.
///
/// The write's transaction ran [`super::marks::ensure`] for `player` first
/// (the held-asset index is complete but for this asset, [`note_held`]: here
/// for an unlimited asset, in [`escrow::credit_limited`] for a limited one).
pub(crate) async fn credit<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
    asset: &Asset,
    rule: AssetRule,
    point: bool,
    amount: u64,
) -> TxResult<()> {
    let Some(limit) = rule.limit else {
        note_held(tx, region, player, asset).await?;
        let bal = as_u64(total(
            &read_shards(tx, region, player, asset, rule.shards, point, true).await?,
        ));
        if bal + amount > UNLIMITED_CEILING {
            return Err(TxError::User(LedgerError::LimitExceeded {
                asset: asset.clone(),
                limit: UNLIMITED_CEILING,
                balance: bal,
                adding: amount,
            }));
        }
        escrow::forget_layout(tx, region, player, asset).await?;
        let delta = i64::try_from(amount).expect("amounts are bounded");
        tx.atomic_add(&keys::shard(region, player, asset, 0), delta)?;
        totals::add(tx, region, player, asset, delta)?;
        return Ok(());
    };
    escrow::credit_limited(tx, region, player, asset, rule, limit, point, amount).await
}

/// Removes `amount` of `asset` from `player`'s balance, or fails with
/// [`LedgerError::Insufficient`]. Reads every shard with a conflict (exact),
/// and takes from the fullest shards first.
pub(crate) async fn debit<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
    asset: &Asset,
    rule: AssetRule,
    point: bool,
    amount: u64,
) -> TxResult<()> {
    let shards = read_shards(tx, region, player, asset, rule.shards, point, false).await?;
    let bal = as_u64(total(&shards));
    if bal < amount {
        return Err(TxError::User(LedgerError::Insufficient {
            asset: asset.clone(),
            balance: bal,
            requested: amount,
        }));
    }
    let mut by_size: Vec<(u16, i64)> = shards.into_iter().filter(|&(_, v)| v > 0).collect();
    by_size.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut left = amount;
    for (s, v) in by_size {
        let take = as_u64(v).min(left);
        tx.atomic_add(&keys::shard(region, player, asset, s), -(take as i64))?;
        left -= take;
        if left == 0 {
            break;
        }
    }
    debug_assert_eq!(left, 0);
    totals::add(tx, region, player, asset, -(amount as i64))?;
    Ok(())
}

/// The value of a "held" index entry and of the "held_all" marker (v1).
const HELD: &[u8] = &[1];

/// Keeps the held-asset index ([`keys::held`]) complete at a credit of
/// `asset`: its entry is set unless the snapshot has it. The rest of the
/// index is complete already: [`ensure_held_all`] ran earlier in the write's
/// transaction ([`super::marks::ensure`], before any balance change). Blind
/// writes and snapshot reads only: concurrent credits do not conflict on the
/// index. (A writer that does not know the index, i.e. an older version
/// during a rolling upgrade, could credit a new asset without indexing it;
/// the audit reads balances by the range read and would report it.)
pub(super) async fn note_held<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
    asset: &Asset,
) -> TxResult<()> {
    let key = keys::held_asset(region, player, asset);
    if tx.get_snapshot(&key).await?.is_none() {
        tx.set(&key, HELD)?;
    }
    Ok(())
}

/// On the player's first write since the index exists ("held_all" missing
/// from the snapshot): indexes every asset found under "bal" (one range
/// read, snapshot) and sets the "held_all" marker. Runs before the write's
/// balance changes (its credits index their own assets, [`note_held`]).
pub(super) async fn ensure_held_all<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
) -> TxResult<()> {
    let marker = keys::held_all(region, player);
    if tx.get_snapshot(&marker).await?.is_none() {
        for a in read_all_scan(tx, region, player, true).await?.keys() {
            tx.set(&keys::held_asset(region, player, a), HELD)?;
        }
        tx.set(&marker, HELD)?;
    }
    Ok(())
}

/// A player's balances (the sum of each asset's shards), raw: signed, zero
/// balances included. `snapshot`: without read conflicts. `point` (a hot
/// player, see [`super::hot`]) and once the held-asset index is complete
/// ("held_all"): reads the index and then each asset's
/// shards by point reads ([`read_shards`], with the catalog's shard count; an
/// asset no longer in the catalog by a range read); otherwise by one range
/// read over every balance ([`read_all_scan`]).
pub(crate) async fn read_all<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
    catalog: &Catalog,
    point: bool,
    snapshot: bool,
) -> TxResult<BTreeMap<Asset, Vec<(u16, i64)>>> {
    if !point {
        return read_all_scan(tx, region, player, snapshot).await;
    }
    let marker = keys::held_all(region, player);
    let indexed = if snapshot {
        tx.get_snapshot(&marker).await?
    } else {
        tx.get(&marker).await?
    };
    if indexed.is_none() {
        return read_all_scan(tx, region, player, snapshot).await;
    }
    let mut out = BTreeMap::new();
    for asset in held_assets(tx, region, player, snapshot).await? {
        let shards = catalog.rule(&asset).map(|r| r.shards).unwrap_or(0);
        let found = read_shards(tx, region, player, &asset, shards, true, snapshot).await?;
        if !found.is_empty() {
            out.insert(asset, found.into_iter().collect());
        }
    }
    Ok(out)
}

/// The held-asset index ([`keys::held`]) by one range read: every asset the
/// player has a balance key for, once "held_all" is set.
pub(super) async fn held_assets<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
    snapshot: bool,
) -> TxResult<Vec<Asset>> {
    let sub = keys::held(region, player);
    let (b, e) = sub.range();
    let kvs = range(tx, &b, &e, snapshot).await?;
    kvs.iter()
        .map(|kv| decode_asset(&sub, &kv.key, "held-asset"))
        .collect()
}

/// Decodes a key `(.., kind, id)` below `sub` (the held-asset index, the
/// totals); `what` names the key in the error.
pub(super) fn decode_asset(sub: &Subspace, key: &[u8], what: &str) -> TxResult<Asset> {
    let (tag, id): (String, String) = sub
        .unpack(key)
        .map_err(|_| TxError::User(LedgerError::Corrupt(format!("undecodable {what} key"))))?;
    let kind = AssetKind::from_tag(&tag)
        .ok_or_else(|| TxError::User(LedgerError::Corrupt(format!("unknown asset kind tag {tag:?}"))))?;
    Ok(Asset { kind, id })
}

/// A player's balances as [`read_all`], by one range read over every balance
/// shard (the ground truth the audit uses; steps over every stored version of
/// the shards).
pub(crate) async fn read_all_scan<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
    snapshot: bool,
) -> TxResult<BTreeMap<Asset, Vec<(u16, i64)>>> {
    let sub = keys::balances(region, player);
    let (b, e) = sub.range();
    let kvs = range(tx, &b, &e, snapshot).await?;
    let mut out: BTreeMap<Asset, Vec<(u16, i64)>> = BTreeMap::new();
    for kv in kvs {
        let (tag, id, s): (String, String, u16) = sub
            .unpack(&kv.key)
            .map_err(|_| TxError::User(LedgerError::Corrupt("undecodable balance key".into())))?;
        let kind = AssetKind::from_tag(&tag)
            .ok_or_else(|| TxError::User(LedgerError::Corrupt(format!("unknown asset kind tag {tag:?}"))))?;
        out.entry(Asset { kind, id })
            .or_default()
            .push((s, decode_counter(Some(&kv.value))));
    }
    Ok(out)
}

/// The public view: every asset with a positive total.
pub(crate) fn to_balances(raw: &BTreeMap<Asset, Vec<(u16, i64)>>) -> Balances {
    raw.iter()
        .filter_map(|(a, shards)| {
            let t: i64 = shards.iter().map(|s| s.1).sum();
            (t > 0).then(|| (a.clone(), t as u64))
        })
        .collect()
}

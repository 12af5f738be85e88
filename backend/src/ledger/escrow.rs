//! Credits of limited assets: escrow shards and the layout record.
//!
//! A limited asset's balance is split over `n` escrow shards whose capacities
//! add up to the limit ([`AssetRule::shard_capacity`]). If every shard is
//! within its capacity, a credit that keeps *the shard it adds to* within its
//! capacity keeps the total within the limit, whatever the other shards hold:
//! the limit never needs the total on this path.
//!
//! "Every shard is within its capacity" is what the **layout record**
//! ([`keys::escrow_layout`]) vouches for: `(limit, n)`, present only while
//! every shard of the asset is within `capacity(limit, n, s)` (shards at or
//! past `n` hold 0). Every write keeps that true:
//!
//! - the fast path (below) adds to one shard within its capacity;
//! - the exact path reads every shard with conflicts and, after its write,
//!   sets the record to its catalog's layout if every shard is within it, or
//!   clears it otherwise (a limit lowered under a full balance);
//! - debits only shrink positive shards;
//! - an unlimited asset's credit (no capacities) clears the record
//!   ([`forget_layout`]), so an asset made limited again starts exact;
//! - a transfer copies shards and record together.
//!
//! So a credit whose catalog layout equals the record (read **with** a
//! conflict: a concurrent exact path that changes it makes one of the two
//! retry) needs to read only the shard it picks (with a conflict): the **fast
//! path**, two point reads whatever `n` is. Before the record, the fast path
//! read all `n` shards to check they were within capacity (the stale-catalog
//! guard); for a hot player with 32 shards those point reads into a memtable
//! holding thousands of versions of each were most of a grant's time
//! (docs/PERFORMANCE.md, "Durable grants, session 7").
//!
//! The fast path tries up to [`PROBES`] shards picked at random; if none has
//! room for the amount (near the limit, or a large grant) it takes the exact
//! path: every shard read with a conflict, the total checked against the
//! limit, the amount spread over the room left. A credit that finds no record
//! (the asset's first credit, a ledger written before the record existed, a
//! catalog change) also takes the exact path once and then writes the record.
//!
//! The record also vouches that the asset is in the held-asset index
//! ([`keys::held_asset`]): every version that writes the record (the index
//! is older than the record) indexed the asset in the same transaction, on
//! the credit that set it, and index entries are never removed. So a credit
//! that finds a record skips the index check ([`note_held`], a snapshot point
//! read); one without a record makes it.
//!
//! Trade-offs: random probes can miss the last shards with room, so near the
//! limit more credits take the exact path (which conflicts with every
//! concurrent writer of the asset) than when every shard was read; a probe of
//! a full shard registers a read conflict on it (only a debit writes a full
//! shard). Writers with different catalogs at the same time (a rolling
//! deploy) each keep their own limit: a fast path runs only under a record
//! equal to its own catalog's layout, i.e. with every shard within its own
//! capacities, and each exact path checks the total; they just keep resetting
//! each other's record (slower). A writer built before the record existed
//! does not keep it: with the same catalog it keeps every shard within
//! capacity anyway, with a different one it is unsupported (as before).

use crate::codec::decode_counter;
use crate::keyspace::RegionName;
use crate::store::{Transaction, TxError};

use super::catalog::AssetRule;
use super::errors::LedgerError;
use super::keys;
use super::projection::{note_held, read_shards};
use super::totals;
use super::types::Asset;

type TxResult<T> = Result<T, TxError<LedgerError>>;

/// Shards the fast path tries before the exact path.
const PROBES: usize = 3;

/// The layout record's value (v1): `[1][limit u64 BE][shards u16 BE]`.
fn encode_layout(limit: u64, shards: u16) -> [u8; 11] {
    let mut v = [0u8; 11];
    v[0] = 1;
    v[1..9].copy_from_slice(&limit.to_be_bytes());
    v[9..11].copy_from_slice(&shards.to_be_bytes());
    v
}

fn as_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Clears the asset's layout record if there is one (an unlimited asset's
/// credit: it adds without capacities). Reads it with a conflict; it is
/// written only when a layout changes.
pub(super) async fn forget_layout<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
    asset: &Asset,
) -> TxResult<()> {
    let key = keys::escrow_layout(region, player, asset);
    if tx.get(&key).await?.is_some() {
        tx.clear(&key)?;
    }
    Ok(())
}

/// Adds `amount` (> 0) of a limited asset (`limit`, `rule.shards` escrow
/// shards) to `player`'s balance, within the limit (module docs).
/// `point`: how the exact path reads the shards ([`super::hot`]).
#[allow(clippy::too_many_arguments)]
pub(super) async fn credit_limited<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
    asset: &Asset,
    rule: AssetRule,
    limit: u64,
    point: bool,
    amount: u64,
) -> TxResult<()> {
    let layout_key = keys::escrow_layout(region, player, asset);
    let layout = tx.get(&layout_key).await?;
    if layout.is_none() {
        // With a record the asset is in the held-asset index already (see
        // the module docs): only a credit without one needs to check.
        note_held(tx, region, player, asset).await?;
    }
    let ours = encode_layout(limit, rule.shards);
    let current = layout.as_deref() == Some(&ours[..]);
    if current && rule.shards > 1 && fast(tx, region, player, asset, rule, amount).await? {
        return Ok(());
    }
    let mut shards = read_shards(tx, region, player, asset, rule.shards, point, false).await?;
    let bal = as_u64(shards.values().sum());
    let over = || {
        TxError::User(LedgerError::LimitExceeded {
            asset: asset.clone(),
            limit,
            balance: bal,
            adding: amount,
        })
    };
    if bal + amount > limit {
        return Err(over());
    }
    // Spread over the room left in each shard, starting at a random shard so
    // concurrent exact paths do not all fill shard 0.
    let start = rand::random::<u16>() % rule.shards;
    let mut plan = Vec::new();
    let mut left = amount;
    for i in 0..rule.shards {
        let s = (start + i) % rule.shards;
        let b = as_u64(shards.get(&s).copied().unwrap_or(0));
        let take = rule.shard_capacity(s).saturating_sub(b).min(left);
        if take > 0 {
            plan.push((s, take));
            left -= take;
        }
        if left == 0 {
            break;
        }
    }
    if left > 0 {
        // Only if shards are over their capacity (the limit was lowered).
        return Err(over());
    }
    for (s, take) in plan {
        tx.atomic_add(&keys::shard(region, player, asset, s), take as i64)?;
        *shards.entry(s).or_default() += take as i64;
    }
    totals::add(tx, region, player, asset, amount as i64)?;
    let within = shards
        .iter()
        .all(|(&s, &b)| b >= 0 && as_u64(b) <= rule.shard_capacity(s));
    if within && !current {
        tx.set(&layout_key, &ours)?;
    } else if !within && layout.is_some() {
        tx.clear(&layout_key)?;
    }
    Ok(())
}

/// The fast path: up to [`PROBES`] distinct shards picked at random, each read
/// with a conflict; adds to the first with room. Exact only while the layout
/// record matches the catalog (module docs). `false`: none had room.
async fn fast<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
    asset: &Asset,
    rule: AssetRule,
    amount: u64,
) -> TxResult<bool> {
    let delta = i64::try_from(amount).expect("amounts are bounded");
    let sub = keys::asset(region, player, asset);
    let n = rule.shards;
    let mut tried: Vec<u16> = Vec::with_capacity(PROBES);
    while tried.len() < PROBES.min(usize::from(n)) {
        let s = rand::random::<u16>() % n;
        if tried.contains(&s) {
            continue;
        }
        tried.push(s);
        let key = sub.pack(&(s,));
        let b = decode_counter(tx.get(&key).await?.as_deref());
        if b >= 0 && as_u64(b) + amount <= rule.shard_capacity(s) {
            tx.atomic_add(&key, delta)?;
            totals::add(tx, region, player, asset, delta)?;
            return Ok(true);
        }
    }
    Ok(false)
}

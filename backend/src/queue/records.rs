//! The queue's in-transaction record helpers: reading the budget, the rate
//! window and account entries, writing entries with their indexes in step.

use foundationdb_tuple::Versionstamp;

use super::types::{AccountEntry, RateWindow, WaitingPlace};
use super::{keys, Budget, QueueError, QueueSettings, Stamp, TxResult};
use crate::codec::{decode_counter, decode_v1, encode_v1};
use crate::keyspace::RegionName;
use crate::store::{Transaction, TxError};

/// Reads the budget, slots in use and rate window (all with read conflicts:
/// the admission serialization point) and returns how many may be admitted now.
pub(crate) async fn admission_room<T: Transaction>(
    tx: &T,
    region: &RegionName,
    settings: &QueueSettings,
    now_ms: u64,
) -> TxResult<(Budget, RateWindow, u32)> {
    let budget = read_budget(tx, region).await?;
    let used = decode_counter(tx.get(&keys::used(region)).await?.as_deref()).max(0) as u64;
    let mut rate: RateWindow = match tx.get(&keys::rate(region)).await? {
        Some(raw) => decode_v1(&raw).map_err(|e| TxError::User(QueueError::corrupt("rate", e)))?,
        None => RateWindow::default(),
    };
    let by_rate = rate.room(now_ms, budget.max_admissions_per_sec);
    let by_slots = u64::from(budget.max_sessions).saturating_sub(used);
    let room = if budget.paused {
        0
    } else {
        by_slots
            .min(u64::from(by_rate))
            .min(u64::from(settings.max_batch)) as u32
    };
    Ok((budget, rate, room))
}

pub(crate) async fn read_budget<T: Transaction>(tx: &T, region: &RegionName) -> TxResult<Budget> {
    match tx.get(&keys::budget(region)).await? {
        Some(raw) => decode_v1(&raw).map_err(|e| TxError::User(QueueError::corrupt("budget", e))),
        None => Ok(Budget::unlimited()),
    }
}

pub(crate) async fn read_entry<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
) -> TxResult<Option<AccountEntry>> {
    match tx.get(&keys::account(region, player)).await? {
        Some(raw) => Ok(Some(
            decode_v1(&raw).map_err(|e| TxError::User(QueueError::corrupt("account", e)))?,
        )),
        None => Ok(None),
    }
}

/// Writes an entry, keeping the holder and expiry indexes in step with `old`.
pub(crate) fn write_entry<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
    old: Option<&AccountEntry>,
    new: &AccountEntry,
) -> TxResult<()> {
    if let Some(old) = old {
        if old.holder != new.holder {
            tx.clear(&keys::holder(region, &old.holder).pack(&(player,)))?;
        }
        if let Some(d) = old.expires_ms.filter(|d| Some(*d) != new.expires_ms) {
            tx.clear(&keys::expiry_at(region, d, player))?;
        }
    }
    tx.set(&keys::holder(region, &new.holder).pack(&(player,)), &[1])?;
    if let Some(d) = new.expires_ms {
        tx.set(&keys::expiry_at(region, d, player), &[1])?;
    }
    tx.set(&keys::account(region, player), &encode_v1(new))?;
    Ok(())
}

/// Removes an entry and its index keys (not its FIFO key).
pub(crate) fn clear_entry<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
    old: &AccountEntry,
) -> TxResult<()> {
    tx.clear(&keys::holder(region, &old.holder).pack(&(player,)))?;
    if let Some(d) = old.expires_ms {
        tx.clear(&keys::expiry_at(region, d, player))?;
    }
    tx.clear(&keys::account(region, player))?;
    Ok(())
}

/// Scans the FIFO for `place` (snapshot read).
pub(crate) async fn find_stamp_tx<T: Transaction>(
    tx: &T,
    region: &RegionName,
    place: u64,
) -> TxResult<Option<Stamp>> {
    let sub = keys::waiting(region);
    let (b, e) = sub.range();
    for kv in tx.get_range_snapshot(&b, &e, None, false).await? {
        let w: WaitingPlace =
            decode_v1(&kv.value).map_err(|e| TxError::User(QueueError::corrupt("waiting", e)))?;
        if w.place == place {
            return Ok(Some(stamp_of(&sub, &kv.key)?));
        }
    }
    Ok(None)
}

/// The stamp of a FIFO key.
pub(crate) fn stamp_of(sub: &foundationdb_tuple::Subspace, key: &[u8]) -> TxResult<Stamp> {
    let (vs,): (Versionstamp,) = sub.unpack(key).map_err(|e| {
        TxError::User(QueueError::Corrupt {
            family: "waiting",
            detail: e.to_string(),
        })
    })?;
    Ok(Stamp::from_versionstamp(&vs))
}

//! The floor of a partition's waiting index: a creation time below which every
//! waiting ticket of the partition is listed by name, so that a round reads
//! those few keys and the index from the floor on, instead of the index from
//! the partition's first key.
//!
//! # Why
//!
//! Every ticket is written into its partition's waiting index once and deleted
//! once (matched, cancelled, removed, timed out). An LSM store keeps each
//! delete as a tombstone until compaction drops it (the embedded store's fjall
//! keeps it in its memtable until a flush, then in table files until
//! compaction reaches the last level), and a range read walks every one of
//! them to find the live keys. A round that read the whole partition therefore
//! walked the deletes of every ticket matched in it for as long as the store
//! kept them: its cost grew with the partition's history, not with the tickets
//! waiting. In a steady 10,000-player gateway that was 9.8% of the gateway's
//! CPU (docs/PERFORMANCE.md, "Where a steady 10,000-player gateway spends its
//! CPU").
//!
//! Most matched tickets are older than most waiting ones, so a lower bound on
//! the waiting tickets' creation time skips nearly all of those deletes. But a
//! single ticket that cannot match (a rating at the tail of the distribution,
//! a party whose latency limit no server meets) would pin a plain lower bound
//! for as long as it waits, which without a queue deadline is forever. So the
//! floor names up to [`MAX_BELOW`] such stragglers instead of stopping at them.
//!
//! # The invariant, and why it holds
//!
//! At every committed version, every key of partition P's waiting index with
//! `created_ms < floor(P).created_ms` is listed in `floor(P).below` (an absent
//! floor is 0 with an empty list). Deletes cannot break it (a listed ticket
//! that left is a stale entry, skipped by readers and dropped by the next
//! raise). Two writers maintain it:
//!
//! - **Lowering** (`lower`): the transaction that creates a ticket reads the
//!   floor with a read conflict and, if its ticket is older than the floor
//!   (another gateway's clock trails this one, a create retried for a while),
//!   lists it, or, with the list full, lowers the floor to the ticket.
//! - **Raising** (`Matchmaker::raise_floor`, by the lease holder after each
//!   round): one transaction reads the floor with a read conflict, drops the
//!   listed tickets that left, and reads the index from the floor through
//!   the round's time, with a read conflict, up to one key more than the list
//!   has room for. It lists what it read and moves the floor to the first key
//!   it could not list (or past everything it read, to the round's time, when
//!   all fit; over a range with no waiting ticket, only every
//!   [`IDLE_ADVANCE_MS`]). Tickets created after the round's time are above
//!   the new floor: the raise does not read them, so creates arriving while
//!   it runs do not make it fail.
//!
//! A create that commits between the raise's reads and its commit either wrote
//! into the range the raise read, or wrote the floor (its ticket is below it):
//! the raise conflicts and changes nothing. A create whose floor read came
//! before a raise that committed first conflicts on the floor key, retries,
//! and lists itself under the raised floor if it must. A create above the
//! raise's range needs nothing. The raise is a single attempt with relaxed
//! durability: a conflict, an error, or a crash that loses it leaves the
//! previous floor, which is always safe, and the next round tries again.
//!
//! Readers ([`Matchmaker::load_partition`]) read the floor, the listed keys and
//! the first page of the index in one snapshot, so all three are of the same
//! version. Deletes above the floor (tickets matched while older ones wait
//! unlisted) are still walked; the floor passes them at the next raise.

use foundationdb_tuple::Subspace;

use crate::keyspace::RegionName;
use crate::store::{Durability, KeyValue, Store, TransactOptions, Transaction, TxError};

use super::errors::MatchmakerError;
use super::keys::{self, BelowFloor, FloorRecord, Partition};
use super::store::{corrupt, Matchmaker};
use super::types::TicketId;

/// Tickets a floor lists below itself. Each costs every load of the partition
/// one point read (a round loads its own partition and, with band borrowing,
/// two more), against walking every delete below the oldest waiting ticket.
pub const MAX_BELOW: usize = 32;

/// How often, at most, a raise moves the floor over an empty index (ms): only
/// the deletes of tickets created and gone since the last move lie there, few
/// by then, while moving it every round would write each idle partition's
/// floor four times a second.
pub const IDLE_ADVANCE_MS: u64 = 10_000;

/// The partition's floor as `tx` sees it; `snapshot`: without a read conflict.
pub(crate) async fn read<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    p: &Partition,
    snapshot: bool,
) -> Result<FloorRecord, TxError<MatchmakerError>> {
    let key = keys::floor(pool, p);
    let raw = if snapshot {
        tx.get_snapshot(&key).await?
    } else {
        tx.get(&key).await?
    };
    match raw {
        Some(raw) => keys::decode(&raw).map_err(corrupt),
        None => Ok(FloorRecord::default()),
    }
}

/// In the transaction that inserts waiting ticket `ticket`, created at
/// `created_ms`: lists it under the floor if it is older than the floor, or
/// lowers the floor to it when the list is full (see the [module docs](self)).
pub(crate) async fn lower<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    p: &Partition,
    created_ms: u64,
    ticket: TicketId,
) -> Result<(), TxError<MatchmakerError>> {
    let mut floor = read(tx, pool, p, false).await?;
    if created_ms >= floor.created_ms {
        return Ok(());
    }
    if floor.below.len() < MAX_BELOW {
        floor.below.push(BelowFloor { created_ms, ticket });
    } else {
        floor.created_ms = created_ms;
        floor.below.retain(|b| b.created_ms < created_ms);
    }
    write(tx, pool, p, &floor)
}

fn write<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    p: &Partition,
    floor: &FloorRecord,
) -> Result<(), TxError<MatchmakerError>> {
    tx.set(&keys::floor(pool, p), &keys::encode(floor))?;
    Ok(())
}

/// The listed tickets of `floor` still waiting and created before `before`,
/// oldest first, each with its index pair, read in `tx` without read
/// conflicts (a listed key, once deleted, never comes back: ticket ids are
/// never reused).
pub(crate) async fn read_listed<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    p: &Partition,
    floor: &FloorRecord,
    before: Option<u64>,
) -> Result<Vec<(BelowFloor, KeyValue)>, TxError<MatchmakerError>> {
    let mut listed: Vec<BelowFloor> = floor
        .below
        .iter()
        .filter(|b| b.created_ms < floor.created_ms && before.is_none_or(|t| b.created_ms < t))
        .copied()
        .collect();
    listed.sort_unstable();
    listed.dedup();
    let keys: Vec<Vec<u8>> = listed
        .iter()
        .map(|b| keys::waiting(pool, p, b.created_ms, b.ticket))
        .collect();
    // All at once: on FoundationDB each read is a round trip, and a round
    // reads up to MAX_BELOW of them per partition it loads, and again in
    // its raise.
    let values = futures::future::try_join_all(keys.iter().map(|k| tx.get_snapshot(k))).await?;
    Ok(listed
        .into_iter()
        .zip(keys.into_iter().zip(values))
        .filter_map(|(b, (key, value))| value.map(|value| (b, KeyValue { key, value })))
        .collect())
}

/// The body of a raise: the new floor, or `None` when it stays.
pub(super) async fn raise_in<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    p: &Partition,
    now: u64,
) -> Result<Option<FloorRecord>, TxError<MatchmakerError>> {
    let old = read(tx, pool, p, false).await?;
    if now < old.created_ms {
        // Nothing created up to `now` to pass (the floor only moves up to it).
        return Ok(None);
    }
    let mut below: Vec<BelowFloor> = Vec::with_capacity(MAX_BELOW);
    below.extend(
        read_listed(tx, pool, p, &old, None)
            .await?
            .into_iter()
            .map(|(b, _)| b),
    );
    let pruned = below.len() != old.below.len();
    let room = MAX_BELOW - below.len();
    let sub = keys::partition(pool, p);
    // Up to `now` only: a create after it (the usual case while a round
    // runs) is above the new floor and must not make the raise fail.
    // Limited, the read conflict covers [floor, last key read]: a create in
    // that range conflicts; one above it is above the new floor.
    let end = sub.pack(&(now.saturating_add(1),));
    let scan = tx
        .get_range(&sub.pack(&(old.created_ms,)), &end, Some(room + 1), false)
        .await?;
    let idle = scan.is_empty() && !pruned && now < old.created_ms.saturating_add(IDLE_ADVANCE_MS);
    let mut new_floor = if idle { old.created_ms } else { now };
    for (i, kv) in scan.iter().enumerate() {
        let entry = index_entry(&sub, kv)?;
        if i == room {
            new_floor = entry.created_ms;
            break;
        }
        // At most `now + 1`: the scan stops after `now`.
        new_floor = new_floor.max(entry.created_ms + 1);
        below.push(entry);
    }
    // Listed tickets are below the floor (several tickets may share a
    // creation time with the first one not listed).
    below.retain(|b| b.created_ms < new_floor);
    let new = FloorRecord {
        created_ms: new_floor,
        below,
    };
    if new.created_ms <= old.created_ms {
        return Ok(None);
    }
    write(tx, pool, p, &new)?;
    Ok(Some(new))
}

/// The creation time and ticket of a waiting-index pair, from its key.
fn index_entry(sub: &Subspace, kv: &KeyValue) -> Result<BelowFloor, TxError<MatchmakerError>> {
    let (created_ms, ticket): (u64, u64) = sub
        .unpack(&kv.key)
        .map_err(|e| corrupt(format!("waiting index key: {e:?}")))?;
    Ok(BelowFloor {
        created_ms,
        ticket: TicketId(ticket),
    })
}

impl<S: Store> Matchmaker<S> {
    /// Raises partition `p`'s floor past its oldest waiting tickets, listing
    /// up to [`MAX_BELOW`] of them (past all created up to `now` if they fit;
    /// over a range with none, at most every [`IDLE_ADVANCE_MS`]); returns
    /// the new floor, or `None` if it stayed. One attempt with relaxed
    /// durability: a conflict with a concurrent create is returned as an
    /// error and leaves the floor as it was, which is safe (see the
    /// [module docs](self)). The partition's lease holder calls it after each
    /// round.
    pub(crate) async fn raise_floor(
        &self,
        p: &Partition,
        now: u64,
    ) -> Result<Option<FloorRecord>, MatchmakerError> {
        let options = TransactOptions {
            retry_limit: Some(1),
            durability: Durability::Relaxed,
            ..TransactOptions::default()
        };
        let pool = self.pool_name().clone();
        let raised = self
            .store()
            .transact(options, |tx| {
                let (pool, p) = (pool.clone(), p.clone());
                async move { raise_in(&tx, &pool, &p, now).await }
            })
            .await?;
        Ok(raised)
    }

    /// Partition `p`'s floor.
    #[cfg(test)]
    pub(crate) async fn partition_floor(&self, p: &Partition) -> Result<FloorRecord, MatchmakerError> {
        let pool = self.pool_name().clone();
        let floor = self
            .store()
            .run(|tx| {
                let (pool, p) = (pool.clone(), p.clone());
                async move { read(&tx, &pool, &p, true).await }
            })
            .await?;
        Ok(floor)
    }
}

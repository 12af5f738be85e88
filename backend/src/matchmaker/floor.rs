//! The floor of a partition's waiting index: a lower bound on the
//! `created_ms` of every ticket waiting in the partition, so that a round reads
//! the index from the floor instead of from the partition's first key.
//!
//! # Why
//!
//! Every ticket is written into its partition's waiting index once and deleted
//! once (matched, cancelled, removed, timed out). An LSM store keeps each
//! delete as a tombstone until compaction drops it: the embedded store's fjall
//! keeps every one in its memtable until the memtable (64 MiB) is flushed, and
//! a range read walks them all to find the live keys. A round that read the
//! whole partition therefore walked the deletes of every ticket matched since
//! the last flush, and its cost grew with the time since that flush, not with
//! the tickets waiting: 9.8% of a steady 10,000-player gateway's CPU went to
//! skipping them (docs/PERFORMANCE.md, "Where a steady 10,000-player gateway
//! spends its CPU"). Matched tickets are mostly the oldest ones, so nearly all
//! of those deletes sit below the oldest ticket still waiting.
//!
//! # The invariant, and why it holds
//!
//! At every committed version, every key of partition P's waiting index has
//! `created_ms >= floor(P)` (an absent floor is 0). Deletes cannot break it;
//! two writers maintain it:
//!
//! - **Lowering** ([`lower`]): the transaction that creates a ticket reads the
//!   floor with a read conflict and, if its ticket is older (another gateway's
//!   clock behind this one, a create whose transaction retried for a while),
//!   lowers the floor to the ticket's `created_ms`.
//! - **Raising** ([`Matchmaker::raise_floor`], by the lease holder after each
//!   round): one transaction reads the floor and the first waiting key at or
//!   above it, both with read conflicts, and raises the floor to that key's
//!   `created_ms` (to the round's time when the partition is empty).
//!
//! A create that commits between the raise's reads and its commit either wrote
//! into the range the raise read (its ticket is at or above the old floor) or
//! wrote the floor (its ticket is below it): the raise conflicts and changes
//! nothing. A create whose floor read came before a raise that committed first
//! conflicts on the floor key, retries, and lowers the raised floor if it must.
//! The raise is a single attempt with relaxed durability: a conflict, an error
//! or a crash that loses it leaves a lower floor, which is always safe, and the
//! next round tries again.
//!
//! Readers ([`Matchmaker::load_partition`]) read the floor and the first page
//! of the index in one snapshot, so they see a floor and an index of the same
//! version. Deletes above the oldest waiting ticket (tickets matched out of
//! creation order) are still walked; the floor bounds the walk by the age of
//! the oldest waiting ticket, which a queue's deadline bounds in turn.

use crate::keyspace::RegionName;
use crate::store::{Durability, Store, TransactOptions, Transaction, TxError};

use super::errors::MatchmakerError;
use super::keys::{self, FloorRecord, Partition};
use super::store::{corrupt, Matchmaker};
use super::types::Ticket;

/// The partition's floor as `tx` sees it (0 when absent); `snapshot`: without
/// a read conflict.
pub(crate) async fn read<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    p: &Partition,
    snapshot: bool,
) -> Result<u64, TxError<MatchmakerError>> {
    let key = keys::floor(pool, p);
    let raw = if snapshot {
        tx.get_snapshot(&key).await?
    } else {
        tx.get(&key).await?
    };
    match raw {
        Some(raw) => Ok(keys::decode::<FloorRecord>(&raw).map_err(corrupt)?.created_ms),
        None => Ok(0),
    }
}

/// In the transaction that inserts a waiting ticket created at `created_ms`:
/// lowers the floor to it if it is older (see the [module docs](self)).
pub(crate) async fn lower<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    p: &Partition,
    created_ms: u64,
) -> Result<(), TxError<MatchmakerError>> {
    if created_ms < read(tx, pool, p, false).await? {
        write(tx, pool, p, created_ms)?;
    }
    Ok(())
}

fn write<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    p: &Partition,
    created_ms: u64,
) -> Result<(), TxError<MatchmakerError>> {
    tx.set(&keys::floor(pool, p), &keys::encode(&FloorRecord { created_ms }))?;
    Ok(())
}

/// The body of a raise: the new floor, or `None` when it stays.
pub(super) async fn raise_in<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    p: &Partition,
    now: u64,
) -> Result<Option<u64>, TxError<MatchmakerError>> {
    let floor = read(tx, pool, p, false).await?;
    let sub = keys::partition(pool, p);
    let (_, end) = sub.range();
    // Limited to one key, the read conflict covers [floor, first key]: a
    // create below the first key conflicts, one above it does not need to.
    let first = tx.get_range(&sub.pack(&(floor,)), &end, Some(1), false).await?;
    let to = match first.first() {
        Some(kv) => keys::decode::<Ticket>(&kv.value).map_err(corrupt)?.created_ms,
        None => now,
    };
    if to <= floor {
        return Ok(None);
    }
    write(tx, pool, p, to)?;
    Ok(Some(to))
}

impl<S: Store> Matchmaker<S> {
    /// Raises partition `p`'s floor to its oldest waiting ticket (to `now` if
    /// none waits); returns the new floor, or `None` if it stayed. One attempt
    /// with relaxed durability: a conflict with a concurrent create is
    /// returned as an error and leaves the floor where it was, which is safe
    /// (see the [module docs](self)). The partition's lease holder calls it
    /// after each round.
    pub(crate) async fn raise_floor(&self, p: &Partition, now: u64) -> Result<Option<u64>, MatchmakerError> {
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

    /// Partition `p`'s floor (0 when it has none): for tests and diagnostics.
    pub async fn partition_floor(&self, p: &Partition) -> Result<u64, MatchmakerError> {
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

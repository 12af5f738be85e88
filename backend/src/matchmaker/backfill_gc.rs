//! Retention GC of finished backfill requests (`filled`, `cancelled`,
//! `expired`): every request that reaches a final state gets an entry in the
//! finished-backfill index `("r", pool, "mm", "bfin", updated_ms, backfill)`
//! in the transaction that closes it ([`super::keys`]); the region's sweep
//! ([`crate::liveness::Sweeper`], `backfill_retention_ms`) deletes the
//! records older than the retention, a bounded page per transaction, oldest
//! first. An `open` request is never in the index, and a record found `open`
//! through a stray entry is kept (only the entry goes).

use crate::keyspace::RegionName;
use crate::store::{Store, Transaction, TxError};

use super::backfill::BackfillId;
use super::backfill_store::{BackfillRecord, BackfillState};
use super::errors::MatchmakerError;
use super::keys;
use super::orphans::{Finished, GcPage};
use super::store::{corrupt, Matchmaker};

impl<S: Store> Matchmaker<S> {
    /// Deletes up to `batch` backfill records that reached a final state at or
    /// before `cutoff_ms`, oldest first, in one transaction (the record and its
    /// finished-index entry). A rerun after an unknown commit result answers
    /// with the first attempt's count.
    pub async fn collect_finished_backfills(
        &self,
        cutoff_ms: u64,
        batch: usize,
    ) -> Result<GcPage, MatchmakerError> {
        self.collect_gc(Finished::Backfills, cutoff_ms, batch).await
    }
}

/// Deletes finished backfill request `id` (see
/// [`Matchmaker::collect_finished_backfills`]). `false`: there was no record,
/// or it is open (never deleted while open: the index entry was a stray one,
/// and closing the request writes a new one).
pub(super) async fn delete_backfill<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    id: BackfillId,
) -> Result<bool, TxError<MatchmakerError>> {
    let key = keys::backfill(pool, id);
    let Some(raw) = tx.get(&key).await? else {
        return Ok(false);
    };
    let rec: BackfillRecord = keys::decode(&raw).map_err(corrupt)?;
    if rec.state == BackfillState::Open {
        return Ok(false);
    }
    tx.clear(&key)?;
    Ok(true)
}

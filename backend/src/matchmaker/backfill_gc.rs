//! Retention GC of finished backfill requests (`filled`, `cancelled`,
//! `expired`): every request that reaches a final state gets an entry in the
//! finished-backfill index `("r", pool, "mm", "bfin", updated_ms, backfill)`
//! in the transaction that closes it ([`super::keys`]); the region's sweep
//! ([`crate::liveness::Sweeper`], `backfill_retention_ms`) deletes the
//! records older than the retention, a bounded page per transaction, oldest
//! first. An `open` request is never in the index, and a record found `open`
//! through a stray entry is kept (only the entry goes).

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

/// Deletes one page of finished backfill records (see
/// [`Matchmaker::collect_gc`]).
pub(super) async fn collect_page<T: Transaction>(
    tx: &T,
    pool: &crate::keyspace::RegionName,
    cutoff_ms: u64,
    batch: usize,
) -> Result<GcPage, TxError<MatchmakerError>> {
    let sub = keys::backfill_finished_all(pool);
    let (b, _) = sub.range();
    let end = sub.pack(&(cutoff_ms.saturating_add(1),));
    let page = tx.get_range(&b, &end, Some(batch), false).await?;
    let mut out = GcPage {
        done: page.len() < batch,
        ..GcPage::default()
    };
    for kv in &page {
        let (_, id): (u64, u64) = sub.unpack(&kv.key).map_err(|e| corrupt(e.to_string()))?;
        let key = keys::backfill(pool, BackfillId(id));
        tx.clear(&kv.key)?;
        let Some(raw) = tx.get(&key).await? else {
            continue;
        };
        let rec: BackfillRecord = keys::decode(&raw).map_err(corrupt)?;
        if rec.state == BackfillState::Open {
            // Never deleted while open (a stray entry; closing it writes a new one).
            continue;
        }
        tx.clear(&key)?;
        out.collected += 1;
    }
    Ok(out)
}

//! Retention of idempotency receipts and duplicate records.
//!
//! A receipt `(.., "idem", key, vs)` exists so a retried request with the same
//! idempotency key returns its first result instead of applying twice; a
//! duplicate record `(.., "dup", key)` tells operators a key was retried. Both
//! are only needed for as long as a client may still retry: the **idempotency
//! window**. After it they are deleted here; a request reusing a key after the
//! window is applied as new (PROTOCOL.md and the ledger docs state the window).
//!
//! Events (the audit trail) and balances are never touched, so the audit of
//! every ledger stays exactly as clean as before GC: it folds events against
//! balances and never reads receipts.
//!
//! Cost: receipts are keyed by idempotency key, not by time, so a pass reads
//! every receipt of a player (in pages, each page its own bounded transaction)
//! and deletes the old ones. Run it rarely (the sweeper's default: a pass over
//! a bounded number of players per sweep interval, resuming where it stopped).
//! Players a transfer is moving (any fence) are skipped and seen next round.

use crate::fence;
use crate::store::{Store, Transaction, TxError};

use super::errors::LedgerError;
use super::types::{decode_json, DuplicateRecord, StoredReceipt};
use super::{keys, Ledger};

/// What a retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Players visited.
    pub players: usize,
    /// Players skipped because a transfer fence is set.
    pub skipped_fenced: usize,
    /// Receipts deleted.
    pub receipts_collected: usize,
    /// Duplicate records deleted.
    pub duplicates_collected: usize,
    /// Age of the oldest receipt kept among the visited players, ms (0: none).
    pub oldest_receipt_age_ms: u64,
    /// Whether the pass reached the end of the region (the next starts over).
    pub wrapped: bool,
}

impl<S: Store> Ledger<S> {
    /// Deletes `player`'s receipts created at or before `cutoff_ms` and
    /// duplicate records last seen at or before it, `batch` keys read per
    /// transaction. Returns `None` if a transfer fence is set (nothing done).
    pub async fn collect_player(
        &self,
        player: &str,
        cutoff_ms: u64,
        batch: usize,
        now_ms: u64,
    ) -> Result<Option<RetentionReport>, LedgerError> {
        let mut report = RetentionReport::default();
        for sub in [
            keys::player(&self.region, player).subspace(&("idem",)),
            keys::dups(&self.region, player),
        ] {
            let is_receipts = sub.bytes() != keys::dups(&self.region, player).bytes();
            let (mut cursor, end) = sub.range();
            loop {
                let (b, e, region, p) = (
                    cursor.clone(),
                    end.clone(),
                    self.region.clone(),
                    player.to_owned(),
                );
                let page = self
                    .store
                    .run(|tx| {
                        let (b, e, region, p) = (b.clone(), e.clone(), region.clone(), p.clone());
                        async move {
                            if fence::read(&tx, &region, &p, LedgerError::Corrupt)
                                .await?
                                .is_some()
                            {
                                return Ok(None);
                            }
                            let kvs = tx.get_range(&b, &e, Some(batch), false).await?;
                            let (mut deleted, mut oldest) = (0usize, u64::MAX);
                            for kv in &kvs {
                                let t = if is_receipts {
                                    decode_json::<StoredReceipt>(&kv.value, "receipt")
                                        .map_err(TxError::User)?
                                        .at_ms
                                } else {
                                    decode_json::<DuplicateRecord>(&kv.value, "duplicate record")
                                        .map_err(TxError::User)?
                                        .last_seen_ms
                                };
                                if t <= cutoff_ms {
                                    tx.clear(&kv.key)?;
                                    deleted += 1;
                                } else if is_receipts {
                                    oldest = oldest.min(t);
                                }
                            }
                            let next = (kvs.len() == batch).then(|| {
                                let mut k = kvs.last().expect("full page").key.clone();
                                k.push(0);
                                k
                            });
                            Ok::<_, TxError<LedgerError>>(Some((deleted, oldest, next)))
                        }
                    })
                    .await?;
                let Some((deleted, oldest, next)) = page else {
                    return Ok(None);
                };
                if is_receipts {
                    report.receipts_collected += deleted;
                    if oldest != u64::MAX {
                        report.oldest_receipt_age_ms =
                            report.oldest_receipt_age_ms.max(now_ms.saturating_sub(oldest));
                    }
                } else {
                    report.duplicates_collected += deleted;
                }
                match next {
                    Some(n) => cursor = n,
                    None => break,
                }
            }
        }
        report.players = 1;
        Ok(Some(report))
    }

    /// Runs [`collect_player`](Self::collect_player) on up to `max_players`
    /// players of the region, starting after `cursor` (a player id; `None`:
    /// from the first) and leaving it where the next pass resumes.
    pub async fn collect_region(
        &self,
        cutoff_ms: u64,
        batch: usize,
        max_players: usize,
        cursor: &mut Option<String>,
        now_ms: u64,
    ) -> Result<RetentionReport, LedgerError> {
        let all = keys::ledgers(&self.region);
        let prefix_len = all.bytes().len();
        let mut total = RetentionReport::default();
        for _ in 0..max_players {
            let begin = match cursor.as_deref() {
                Some(p) => keys::player(&self.region, p).range().1,
                None => all.range().0,
            };
            let end = all.range().1;
            let first = self
                .store
                .run(|tx| {
                    let (b, e) = (begin.clone(), end.clone());
                    async move {
                        Ok::<_, TxError<LedgerError>>(tx.get_range_snapshot(&b, &e, Some(1), false).await?)
                    }
                })
                .await?;
            let Some(kv) = first.into_iter().next() else {
                *cursor = None;
                total.wrapped = true;
                break;
            };
            let player =
                match foundationdb_tuple::unpack::<Vec<foundationdb_tuple::Element>>(&kv.key[prefix_len..])
                    .ok()
                    .and_then(|els| els.into_iter().next())
                {
                    Some(foundationdb_tuple::Element::String(s)) => s.into_owned(),
                    _ => {
                        return Err(LedgerError::Corrupt(
                            "undecodable key in the ledger subspace".into(),
                        ))
                    }
                };
            match self.collect_player(&player, cutoff_ms, batch, now_ms).await? {
                Some(r) => {
                    total.players += 1;
                    total.receipts_collected += r.receipts_collected;
                    total.duplicates_collected += r.duplicates_collected;
                    total.oldest_receipt_age_ms = total.oldest_receipt_age_ms.max(r.oldest_receipt_age_ms);
                }
                None => total.skipped_fenced += 1,
            }
            *cursor = Some(player);
        }
        Ok(total)
    }
}

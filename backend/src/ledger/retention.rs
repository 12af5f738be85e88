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
//! # Receipts are found through the events
//!
//! Receipts are keyed by idempotency key, not by time, so finding the old ones
//! among them means reading all of them. Every receipt is written by the same
//! commit as its event, under the same versionstamp, and events are keyed in
//! commit order: so a pass walks the player's events from a cursor
//! (`(.., "rcur")`, the last event dealt with), deletes the receipt of each
//! event older than the cutoff (found by a point read), and stops at the first
//! event that is not, leaving the cursor there. A pass costs the receipts it
//! deletes plus one event read, whatever else the player holds: a hot account
//! with a million receipts inside the window costs one read, where reading
//! every receipt cost a million per pass (and a pass longer than the sweep
//! lease let another gateway's sweep start beside it).
//!
//! Events are in commit order and their `at_ms` is the writer's clock, so with
//! skewed clocks an event may be older than one before it: its receipt waits
//! until the one before it expires (as long as the skew). The counterparty's
//! event of a trade has no receipt (the initiator holds it): nothing to delete.
//! The event and receipt reads are snapshot reads, so the grants a hot player
//! keeps committing do not conflict with its retention; the cursor's read is
//! not, so two passes over the same player cannot both move it.
//!
//! Duplicate records are rare (one per retried key) and are still found by
//! reading all of a player's. Players a transfer is moving (any fence) are
//! skipped and seen next round.

use std::time::{Duration, Instant};

use crate::fence;
use crate::keyspace::RegionName;
use crate::store::{Store, Transaction, TxError};

use super::errors::LedgerError;
use super::types::{decode_json, DuplicateRecord, EventId};
use super::{decode_event, keys, Ledger};

/// Event pages one pass reads for one player at most: a backlog (the first
/// pass over a ledger with years of events, or a long pause) is worked off
/// over several passes instead of holding one.
const MAX_EVENT_PAGES_PER_PLAYER: usize = 64;

/// What a retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Players visited.
    pub players: usize,
    /// Players skipped because a transfer fence is set.
    pub skipped_fenced: usize,
    /// Receipts deleted. Can fall short after a commit whose result was
    /// unknown (the retry loop's rerun reports its own page only); the
    /// deletes themselves happen once either way.
    pub receipts_collected: usize,
    /// Duplicate records deleted.
    pub duplicates_collected: usize,
    /// Events read to find the receipts (those whose receipts were deleted,
    /// and the first one that was not old enough): the pass's cost.
    pub events_read: usize,
    /// Age of the oldest event whose receipt is kept, among the visited
    /// players, ms (0: none; a lower bound when a player's backlog was not
    /// worked off in this pass).
    pub oldest_receipt_age_ms: u64,
    /// Whether the pass reached the end of the region (the next starts over).
    pub wrapped: bool,
    /// Whether the region pass stopped at its time budget before visiting
    /// `max_players` ([`Ledger::collect_region`]).
    pub out_of_time: bool,
}

/// One page of the receipt walk (see the module docs).
struct ReceiptPage {
    deleted: usize,
    events_read: usize,
    /// `at_ms` of the first event not old enough, if the page reached one.
    kept_at_ms: Option<u64>,
    /// `at_ms` of the last event dealt with.
    last_at_ms: Option<u64>,
    /// The page was full and every event in it old: read on.
    more: bool,
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
        let mut report = RetentionReport {
            players: 1,
            ..RetentionReport::default()
        };
        let mut oldest_kept = None;
        for n in 0..MAX_EVENT_PAGES_PER_PLAYER {
            // The first page is one event: usually the walk is caught up and
            // that event is inside the window, so the pass ends there.
            let limit = if n == 0 { 1 } else { batch };
            let (region, p) = (self.region.clone(), player.to_owned());
            let page = self
                .store
                .run(|tx| {
                    let (region, p) = (region.clone(), p.clone());
                    async move { receipt_page(&tx, &region, &p, cutoff_ms, limit).await }
                })
                .await?;
            let Some(page) = page else {
                return Ok(None);
            };
            report.receipts_collected += page.deleted;
            report.events_read += page.events_read;
            oldest_kept = page.kept_at_ms.or(page.last_at_ms);
            if !page.more {
                break;
            }
        }
        if let Some(at) = oldest_kept {
            report.oldest_receipt_age_ms = now_ms.saturating_sub(at);
        }
        match self.collect_duplicates(player, cutoff_ms, batch).await? {
            Some(n) => report.duplicates_collected = n,
            None => return Ok(None),
        }
        Ok(Some(report))
    }

    /// Deletes `player`'s duplicate records last seen at or before
    /// `cutoff_ms`, reading all of them in pages; `None` if fenced.
    async fn collect_duplicates(
        &self,
        player: &str,
        cutoff_ms: u64,
        batch: usize,
    ) -> Result<Option<usize>, LedgerError> {
        let (mut cursor, end) = keys::dups(&self.region, player).range();
        let mut deleted = 0;
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
                        if fenced(&tx, &region, &p).await? {
                            return Ok(None);
                        }
                        let kvs = tx.get_range(&b, &e, Some(batch), false).await?;
                        let mut deleted = 0usize;
                        for kv in &kvs {
                            let rec = decode_json::<DuplicateRecord>(&kv.value, "duplicate record")
                                .map_err(TxError::User)?;
                            if rec.last_seen_ms <= cutoff_ms {
                                tx.clear(&kv.key)?;
                                deleted += 1;
                            }
                        }
                        let next = (kvs.len() == batch).then(|| {
                            let mut k = kvs.last().expect("full page").key.clone();
                            k.push(0);
                            k
                        });
                        Ok::<_, TxError<LedgerError>>(Some((deleted, next)))
                    }
                })
                .await?;
            let Some((n, next)) = page else {
                return Ok(None);
            };
            deleted += n;
            match next {
                Some(n) => cursor = n,
                None => return Ok(Some(deleted)),
            }
        }
    }

    /// Runs [`collect_player`](Self::collect_player) on up to `max_players`
    /// players of the region, starting after `cursor` (a player id; `None`:
    /// from the first) and leaving it where the next pass resumes.
    ///
    /// `budget` bounds the pass's duration: once it is spent, the pass stops
    /// after the player it is on (at least one player is visited) and sets
    /// `out_of_time`. Players are visited one after the other, each costing a
    /// few small transactions, so what a pass can visit in a given time
    /// depends on the store's latency: the budget keeps a pass short on a
    /// store with network round trips while `max_players` caps the work on a
    /// fast one.
    pub async fn collect_region(
        &self,
        cutoff_ms: u64,
        batch: usize,
        max_players: usize,
        budget: Option<Duration>,
        cursor: &mut Option<String>,
        now_ms: u64,
    ) -> Result<RetentionReport, LedgerError> {
        let all = keys::ledgers(&self.region);
        let prefix_len = all.bytes().len();
        let mut total = RetentionReport::default();
        let started = Instant::now();
        for visited in 0..max_players {
            if visited > 0 && budget.is_some_and(|b| started.elapsed() >= b) {
                total.out_of_time = true;
                break;
            }
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
                    total.events_read += r.events_read;
                    total.oldest_receipt_age_ms = total.oldest_receipt_age_ms.max(r.oldest_receipt_age_ms);
                }
                None => total.skipped_fenced += 1,
            }
            *cursor = Some(player);
        }
        Ok(total)
    }
}

async fn fenced<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
) -> Result<bool, TxError<LedgerError>> {
    Ok(fence::read(tx, region, player, LedgerError::Corrupt)
        .await?
        .is_some())
}

/// One transaction of the receipt walk: up to `limit` events after the
/// cursor, the receipts of those at or before `cutoff_ms` deleted, the cursor
/// moved past them. `None` if a transfer fence is set.
async fn receipt_page<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
    cutoff_ms: u64,
    limit: usize,
) -> Result<Option<ReceiptPage>, TxError<LedgerError>> {
    if fenced(tx, region, player).await? {
        return Ok(None);
    }
    let cursor_key = keys::receipt_cursor(region, player);
    let cursor = match tx.get(&cursor_key).await? {
        Some(raw) => Some(decode_cursor(&raw).map_err(TxError::User)?),
        None => None,
    };
    let events = keys::events(region, player);
    let (mut begin, end) = events.range();
    if let Some(id) = &cursor {
        begin = keys::event(region, player, id);
        begin.push(0);
    }
    let kvs = tx.get_range_snapshot(&begin, &end, Some(limit), false).await?;
    let mut page = ReceiptPage {
        deleted: 0,
        events_read: kvs.len(),
        kept_at_ms: None,
        last_at_ms: None,
        more: kvs.len() == limit,
    };
    let mut last = None;
    for kv in &kvs {
        let event = decode_event(&events, &kv.key, &kv.value).map_err(TxError::User)?;
        if event.at_ms > cutoff_ms {
            page.kept_at_ms = Some(event.at_ms);
            page.more = false;
            break;
        }
        let receipt = keys::receipt(region, player, &event.idempotency_key, &event.id);
        if tx.get_snapshot(&receipt).await?.is_some() {
            tx.clear(&receipt)?;
            page.deleted += 1;
        }
        page.last_at_ms = Some(event.at_ms);
        last = Some(event.id);
    }
    if let Some(id) = last {
        tx.set(&cursor_key, &encode_cursor(&id))?;
    }
    Ok(Some(page))
}

/// `[1][gen u32 BE][stamp]` (schema version 1).
fn encode_cursor(id: &EventId) -> Vec<u8> {
    let mut v = Vec::with_capacity(15);
    v.push(1);
    v.extend_from_slice(&id.gen.to_be_bytes());
    v.extend_from_slice(&id.stamp);
    v
}

fn decode_cursor(raw: &[u8]) -> Result<EventId, LedgerError> {
    if let Some((1, rest)) = raw.split_first() {
        if let (Some((gen, stamp)), true) = (rest.split_first_chunk::<4>(), rest.len() == 14) {
            if let Ok(stamp) = <[u8; 10]>::try_from(stamp) {
                return Ok(EventId {
                    gen: u32::from_be_bytes(*gen),
                    stamp,
                });
            }
        }
    }
    Err(LedgerError::Corrupt(format!(
        "receipt retention cursor of {} bytes, version {:?}",
        raw.len(),
        raw.first()
    )))
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;

//! Tickets of dead gateway incarnations (the orphan sweep of
//! [`crate::liveness`]), and retention GC of finished tickets and matches.
//!
//! A waiting ticket whose holder incarnation died is *re-homed* if one of its
//! players came back (their presence claim is live and names another
//! incarnation that is alive in the pool region): the ticket keeps waiting
//! under that holder. Otherwise it is removed (state `removed`), in a
//! transaction that reads the ticket record, so it conflicts with any match
//! commit of the same ticket: a ticket is never matched after it was swept.

use foundationdb_tuple::Subspace;
use futures::StreamExt;

use crate::keyspace::RegionName;
use crate::presence::Presence;
use crate::rerun;
use crate::store::{Store, Transaction, TxError};

use super::backfill::BackfillId;
use super::errors::MatchmakerError;
use super::keys::{self, PlayerEntry, TicketState};
use super::store::{corrupt, leave_pool, read_record, Matchmaker};
use super::types::TicketId;

/// Tickets of one page swept at once (each its own transaction).
const SWEEP_CONCURRENCY: usize = 16;

/// What one page of an orphan sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrphanPage {
    /// Tickets removed (their players did not come back).
    pub removed: usize,
    /// Tickets handed to the incarnation of a player who came back.
    pub rehomed: usize,
    /// Whether the incarnation holds no more tickets.
    pub done: bool,
}

/// What one retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcPage {
    /// Ticket records deleted (with their match record and stale player entries).
    pub collected: usize,
    /// Age of the oldest finished ticket left, milliseconds (0: none).
    pub oldest_age_ms: u64,
    /// Whether nothing older than the cutoff is left.
    pub done: bool,
}

impl<S: Store> Matchmaker<S> {
    /// Sweeps up to `batch` tickets held by dead incarnation `inc` (one
    /// transaction each). `presence` (the global store) tells who came back.
    pub async fn sweep_holder<P: Store>(
        &self,
        inc: u64,
        batch: usize,
        presence: Option<&Presence<P>>,
    ) -> Result<OrphanPage, MatchmakerError> {
        let sub = keys::holders(self.pool_name(), inc);
        let (b, e) = sub.range();
        let page = self.snapshot_page(&b, &e, batch).await?;
        let mut out = OrphanPage {
            done: page.len() < batch,
            ..OrphanPage::default()
        };
        let results: Vec<Result<Option<bool>, MatchmakerError>> = futures::stream::iter(page)
            .map(|kv| self.sweep_one(inc, kv.key, presence))
            .buffer_unordered(SWEEP_CONCURRENCY)
            .collect()
            .await;
        for r in results {
            match r? {
                Some(true) => out.removed += 1,
                Some(false) => out.rehomed += 1,
                None => {}
            }
        }
        Ok(out)
    }

    /// Sweeps one ticket of the holder index of `inc`: `Some(true)` removed,
    /// `Some(false)` re-homed, `None` nothing to do (already finished or moved).
    async fn sweep_one<P: Store>(
        &self,
        inc: u64,
        index_key: Vec<u8>,
        presence: Option<&Presence<P>>,
    ) -> Result<Option<bool>, MatchmakerError> {
        let sub = keys::holders(self.pool_name(), inc);
        let (id,): (u64,) = sub
            .unpack(&index_key)
            .map_err(|e| MatchmakerError::Corrupt(e.to_string()))?;
        let id = TicketId(id);
        let Some((ticket, _)) = self.ticket(id).await? else {
            return Ok(None);
        };
        // Who came back: a live claim naming another incarnation.
        let mut back = None;
        if let Some(p) = presence {
            for player in &ticket.players {
                let current = p.current(player).await.map_err(|e| match e {
                    crate::presence::PresenceError::Store(s) => MatchmakerError::Store(s),
                    other => MatchmakerError::Corrupt(other.to_string()),
                })?;
                if let Some(c) = current {
                    if c.ended.is_none() && c.incarnation != 0 && c.incarnation != inc {
                        back = Some(c.incarnation);
                        break;
                    }
                }
            }
        }
        let pool = self.pool_name().clone();
        let op: u64 = rand::random();
        let did = self
            .store()
            .run(|tx| {
                let (pool, index_key) = (pool.clone(), index_key.clone());
                async move {
                    tx.clear(&index_key)?;
                    let Some(mut rec) = read_record(&tx, &pool, id).await? else {
                        return Ok(None);
                    };
                    if rec.op == Some(op) {
                        // This call's earlier attempt committed (its result was
                        // unknown): answer as it did.
                        return Ok(Some(rec.state == TicketState::Removed));
                    }
                    if rec.state != TicketState::Waiting || rec.holder != Some(inc) {
                        return Ok(None);
                    }
                    rec.op = Some(op);
                    if let Some(to) = back {
                        let alive = match crate::liveness::read_incarnation(&tx, &pool, to).await {
                            Ok(r) => r.is_some_and(|r| !r.swept),
                            Err(TxError::Store(e)) => return Err(TxError::Store(e)),
                            Err(TxError::User(e)) => return Err(corrupt(e.to_string())),
                        };
                        if alive {
                            rec.holder = Some(to);
                            tx.set(&keys::holder(&pool, to, id), &[crate::codec::SCHEMA_V1])?;
                            tx.set(&keys::ticket(&pool, id), &keys::encode(&rec))?;
                            return Ok(Some(false));
                        }
                    }
                    let state = TicketState::Removed;
                    leave_pool(&tx, &pool, &mut rec, state, super::store::now_ms())?;
                    for player in &rec.ticket.players {
                        let key = keys::player(&pool, player);
                        if let Some(raw) = tx.get(&key).await? {
                            let e: PlayerEntry = keys::decode(&raw).map_err(corrupt)?;
                            if e.ticket == id {
                                tx.set(&key, &keys::encode(&PlayerEntry { ticket: id, state }))?;
                            }
                        }
                    }
                    Ok(Some(true))
                }
            })
            .await?;
        Ok(did)
    }

    /// Deletes up to `batch` tickets that finished at or before `cutoff_ms`,
    /// oldest first, in one transaction: the ticket record, the finished index
    /// entry, the match record (a match is finished when its tickets are; every
    /// ticket of a match finishes in the same commit, so its first ticket's GC
    /// deletes it), and each player entry still pointing at the ticket.
    pub async fn collect_finished(&self, cutoff_ms: u64, batch: usize) -> Result<GcPage, MatchmakerError> {
        self.collect_gc(Finished::Tickets, cutoff_ms, batch).await
    }

    /// One retention-GC transaction, the same for finished tickets and
    /// finished backfill requests: deletes one page of `kind` finished at or
    /// before `cutoff_ms` (at most `batch`), unless this call's earlier
    /// attempt already committed (its commit result was unknown): then the
    /// answer it remembered is returned instead ([`rerun`]). Either way the
    /// age of the oldest entry left in the kind's finished index (keys
    /// `(finished_ms, id)`) is measured.
    pub(super) async fn collect_gc(
        &self,
        kind: Finished,
        cutoff_ms: u64,
        batch: usize,
    ) -> Result<GcPage, MatchmakerError> {
        let pool = self.pool_name().clone();
        let now = super::store::now_ms();
        let op = rerun::new_op();
        let res = self
            .store()
            .run(|tx| {
                let pool = pool.clone();
                async move {
                    let (index, marker) = match kind {
                        Finished::Tickets => (keys::finished_all(&pool), keys::gc_marker(&pool)),
                        Finished::Backfills => (
                            keys::backfill_finished_all(&pool),
                            keys::backfill_gc_marker(&pool),
                        ),
                    };
                    let done: Option<(usize, bool)> = rerun::recall(&tx, &marker, &op, corrupt_of).await?;
                    let mut out = match done {
                        Some((collected, done)) => GcPage {
                            collected,
                            done,
                            ..GcPage::default()
                        },
                        None => {
                            let page = collect_page(&tx, &pool, kind, &index, cutoff_ms, batch).await?;
                            if page.collected > 0 {
                                rerun::remember(&tx, &marker, &op, &(page.collected, page.done))?;
                            }
                            page
                        }
                    };
                    let (b, e) = index.range();
                    if let Some(first) = tx.get_range_snapshot(&b, &e, Some(1), false).await?.first() {
                        let (t, _): (u64, u64) =
                            index.unpack(&first.key).map_err(|e| corrupt(e.to_string()))?;
                        out.oldest_age_ms = now.saturating_sub(t);
                    }
                    Ok::<_, TxError<MatchmakerError>>(out)
                }
            })
            .await?;
        Ok(res)
    }
}

/// The finished records a retention-GC pass collects.
#[derive(Debug, Clone, Copy)]
pub(super) enum Finished {
    /// Tickets (with their match records and player entries).
    Tickets,
    /// Backfill requests ([`super::backfill_gc`]).
    Backfills,
}

fn corrupt_of(detail: String) -> MatchmakerError {
    MatchmakerError::Corrupt(detail)
}

/// Deletes one page (at most `batch`) of the finished records of `kind` that
/// finished at or before `cutoff_ms`, oldest first: each entry of the kind's
/// finished index `index` goes, and with it the record it names, if that is
/// still there and finished.
async fn collect_page<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    kind: Finished,
    index: &Subspace,
    cutoff_ms: u64,
    batch: usize,
) -> Result<GcPage, TxError<MatchmakerError>> {
    let (b, _) = index.range();
    let end = index.pack(&(cutoff_ms.saturating_add(1),));
    let page = tx.get_range(&b, &end, Some(batch), false).await?;
    let mut out = GcPage {
        done: page.len() < batch,
        ..GcPage::default()
    };
    for kv in &page {
        let (_, id): (u64, u64) = index.unpack(&kv.key).map_err(|e| corrupt(e.to_string()))?;
        tx.clear(&kv.key)?;
        let deleted = match kind {
            Finished::Tickets => delete_ticket(tx, pool, TicketId(id)).await?,
            Finished::Backfills => super::backfill_gc::delete_backfill(tx, pool, BackfillId(id)).await?,
        };
        out.collected += usize::from(deleted);
    }
    Ok(out)
}

/// Deletes finished ticket `id` (see [`Matchmaker::collect_finished`]): its
/// record, its match record, and each player entry still pointing at it.
/// `false`: there was no record.
async fn delete_ticket<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    id: TicketId,
) -> Result<bool, TxError<MatchmakerError>> {
    let Some(rec) = read_record(tx, pool, id).await? else {
        return Ok(false);
    };
    if let TicketState::Matched { match_id } = rec.state {
        tx.clear(&keys::match_record(pool, match_id))?;
    }
    for player in &rec.ticket.players {
        let key = keys::player(pool, player);
        if let Some(raw) = tx.get(&key).await? {
            let e: PlayerEntry = keys::decode(&raw).map_err(corrupt)?;
            if e.ticket == id {
                tx.clear(&key)?;
            }
        }
    }
    tx.clear(&keys::ticket(pool, id))?;
    Ok(true)
}

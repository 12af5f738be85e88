//! Reads of the store-backed pool: ticket records, a player's latest ticket
//! (with a watch for the gateway's push), matches, pool depth and partition
//! loads for workers. Writes are in [`super::store`].

use std::sync::Arc;

use crate::store::{KeyValue, Store, Transaction, TxError};

use super::errors::MatchmakerError;
use super::keys::{self, Partition, PlayerEntry, TicketState};
use super::store::{check_player, corrupt, read_record, Matchmaker, PlayerTicket, PlayerWatch};
use super::types::{Match, MatchId, Ticket, TicketId};

/// Tickets read per transaction when loading a partition.
const LOAD_PAGE: usize = 5_000;

impl<S: Store> Matchmaker<S> {
    /// A ticket and its state.
    pub async fn ticket(&self, id: TicketId) -> Result<Option<(Ticket, TicketState)>, MatchmakerError> {
        let pool = Arc::new(self.pool_name().clone());
        let res = self
            .store()
            .run(|tx| {
                let pool = pool.clone();
                async move { Ok(read_record(&tx, &pool, id).await?.map(|r| (r.ticket, r.state))) }
            })
            .await?;
        Ok(res)
    }

    /// The player's latest ticket, its state and (if matched) the match.
    pub async fn ticket_status(&self, player: &str) -> Result<Option<PlayerTicket>, MatchmakerError> {
        Ok(self.status_and_maybe_watch(player, false).await?.0)
    }

    /// [`ticket_status`](Self::ticket_status) plus a [`PlayerWatch`] registered
    /// in the same transaction: it resolves on the next change of the player's
    /// entry by any process sharing the store. The gateway's push loop:
    ///
    /// ```ignore
    /// loop {
    ///     let (status, watch) = mm.watch_player(&player).await?;
    ///     if let Some(PlayerTicket { assigned: Some(m), .. }) = status { push_match(m); }
    ///     watch.await?;
    /// }
    /// ```
    pub async fn watch_player(
        &self,
        player: &str,
    ) -> Result<(Option<PlayerTicket>, PlayerWatch), MatchmakerError> {
        let (s, w) = self.status_and_maybe_watch(player, true).await?;
        Ok((s, w.expect("watch requested")))
    }

    async fn status_and_maybe_watch(
        &self,
        player: &str,
        watch: bool,
    ) -> Result<(Option<PlayerTicket>, Option<PlayerWatch>), MatchmakerError> {
        check_player(player)?;
        let (pool, player) = (Arc::new(self.pool_name().clone()), player.to_owned());
        let res = self
            .store()
            .run(|tx| {
                let (pool, player) = (pool.clone(), player.clone());
                async move {
                    let key = keys::player(&pool, &player);
                    let entry = match tx.get(&key).await? {
                        Some(raw) => Some(keys::decode::<PlayerEntry>(&raw).map_err(corrupt)?),
                        None => None,
                    };
                    let status = match entry {
                        None => None,
                        Some(e) => {
                            let assigned = match e.state {
                                TicketState::Matched { match_id } => {
                                    // `None` once retention GC collected the match
                                    // (the entry goes in the same or a later pass).
                                    match tx.get(&keys::match_record(&pool, match_id)).await? {
                                        Some(raw) => Some(keys::decode::<Match>(&raw).map_err(corrupt)?),
                                        None => None,
                                    }
                                }
                                _ => None,
                            };
                            Some(PlayerTicket {
                                ticket: e.ticket,
                                state: e.state,
                                assigned,
                            })
                        }
                    };
                    let w = if watch {
                        Some(PlayerWatch(tx.watch(&key)?))
                    } else {
                        None
                    };
                    Ok((status, w))
                }
            })
            .await?;
        Ok(res)
    }

    /// A committed match.
    pub async fn get_match(&self, id: MatchId) -> Result<Option<Match>, MatchmakerError> {
        let pool = Arc::new(self.pool_name().clone());
        let res = self
            .store()
            .run(|tx| {
                let pool = pool.clone();
                async move {
                    match tx.get_snapshot(&keys::match_record(&pool, id)).await? {
                        Some(raw) => keys::decode(&raw).map(Some).map_err(corrupt),
                        None => Ok(None),
                    }
                }
            })
            .await?;
        Ok(res)
    }

    /// Open backfill requests in the pool (the pool's counter: requests past
    /// their lifetime count until a worker or a cancel closes them).
    pub async fn open_backfills(&self) -> Result<u64, MatchmakerError> {
        let key = keys::backfill_count(self.pool_name());
        let n = self
            .store()
            .run(|tx| {
                let key = key.clone();
                async move {
                    Ok::<_, TxError<MatchmakerError>>(crate::codec::decode_counter(
                        tx.get_snapshot(&key).await?.as_deref(),
                    ))
                }
            })
            .await?;
        Ok(n.max(0) as u64)
    }

    /// Waiting tickets in `queue` with home `region` (pool depth, all bands).
    pub async fn depth(&self, queue: &str, region: &str) -> Result<u64, MatchmakerError> {
        let key = keys::depth(self.pool_name(), queue, region);
        let res = self
            .store()
            .run(|tx| {
                let key = key.clone();
                async move {
                    let v = crate::codec::decode_counter(tx.get_snapshot(&key).await?.as_deref());
                    Ok::<_, TxError<MatchmakerError>>(v.max(0) as u64)
                }
            })
            .await?;
        Ok(res)
    }

    /// Up to `limit` pairs of `[begin, end)` in key order, read as a snapshot
    /// in a transaction of their own (no read conflict: what the caller then
    /// does with them is checked by its own transactions).
    pub(crate) async fn snapshot_page(
        &self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, MatchmakerError> {
        let page = self
            .store()
            .run(|tx| {
                // Owned copies: an attempt's future that borrowed the caller's
                // slices would not be `Send` for every lifetime, which the
                // worker tasks spawned on this need.
                let (begin, end) = (begin.to_vec(), end.to_vec());
                async move {
                    Ok::<_, TxError<MatchmakerError>>(
                        tx.get_range_snapshot(&begin, &end, Some(limit), false).await?,
                    )
                }
            })
            .await?;
        Ok(page)
    }

    /// The waiting tickets of a partition, oldest first; with `created_before`,
    /// only those created before that time. Snapshot reads in pages of
    /// `LOAD_PAGE` tickets (5,000; one transaction each), the first with the
    /// partition's [floor](super::floor) and the tickets it lists, the rest
    /// of the index from the floor on: the result may be slightly stale,
    /// which the match commit checks make harmless.
    pub async fn load_partition(
        &self,
        p: &Partition,
        created_before: Option<u64>,
    ) -> Result<Vec<Ticket>, MatchmakerError> {
        let sub = keys::partition(self.pool_name(), p);
        let end = match created_before {
            Some(t) => sub.pack(&(t,)),
            None => sub.range().1,
        };
        let (listed, mut page) = self.first_page(p, created_before, &end).await?;
        let mut out = decode_tickets(&listed)?;
        loop {
            let full = page.len() == LOAD_PAGE;
            out.extend(decode_tickets(&page)?);
            let begin = match page.last() {
                Some(last) if full => {
                    let mut next = last.key.clone();
                    next.push(0);
                    next
                }
                _ => break,
            };
            if begin >= end {
                break;
            }
            page = self.snapshot_page(&begin, &end, LOAD_PAGE).await?;
        }
        Ok(out)
    }

    /// The first page of [`load_partition`](Self::load_partition): the
    /// tickets listed under the floor, and the index from the floor on, in
    /// one snapshot.
    async fn first_page(
        &self,
        p: &Partition,
        created_before: Option<u64>,
        end: &[u8],
    ) -> Result<(Vec<KeyValue>, Vec<KeyValue>), MatchmakerError> {
        let pool = Arc::new(self.pool_name().clone());
        let pages = self
            .store()
            .run(|tx| {
                let (pool, p, end) = (pool.clone(), p.clone(), end.to_vec());
                async move {
                    let floor = super::floor::read(&tx, &pool, &p, true).await?;
                    let listed = super::floor::read_listed(&tx, &pool, &p, &floor, created_before)
                        .await?
                        .into_iter()
                        .map(|(_, kv)| kv)
                        .collect();
                    let begin = keys::partition(&pool, &p).pack(&(floor.created_ms,));
                    if begin >= end {
                        // FoundationDB rejects an inverted range.
                        return Ok((listed, Vec::new()));
                    }
                    let page = tx
                        .get_range_snapshot(&begin, &end, Some(LOAD_PAGE), false)
                        .await?;
                    Ok((listed, page))
                }
            })
            .await?;
        Ok(pages)
    }
}

/// The tickets of waiting-index pairs, in order.
fn decode_tickets(kvs: &[KeyValue]) -> Result<Vec<Ticket>, MatchmakerError> {
    kvs.iter()
        .map(|kv| keys::decode::<Ticket>(&kv.value).map_err(MatchmakerError::Corrupt))
        .collect()
}

//! The queue's region-wide work: admission ticks, the expiry sweep, the FIFO
//! view gateways compute positions from, and the fleet-liveness hook.

use crate::codec::{decode_counter, decode_v1, encode_v1};
use crate::rerun;
use crate::store::{Store, Transaction, TxError};

use super::types::{AccountEntry, EntryState, WaitingPlace};
use super::{
    admission_room, clear_entry, find_stamp_tx, keys, read_budget, read_entry, stamp_of, write_entry, Queue,
    QueueError, QueueView, Stamp, TxResult,
};

/// A stored op marker that does not decode.
fn corrupt_marker(detail: String) -> QueueError {
    QueueError::Corrupt {
        family: "op marker",
        detail,
    }
}

/// Most expiry-index or holder-index entries one sweep transaction handles.
const SWEEP_BATCH: usize = 100;

impl<S: Store> Queue<S> {
    /// One admission tick: admits as many places from the head of the FIFO as
    /// the budget allows right now (at most `max_batch`), in one transaction.
    /// Returns the players admitted (also when the store's retry loop ran the
    /// tick again after an unknown commit result that did commit: an op
    /// marker, see [`crate::rerun`]). Any gateway may run it at any time; see
    /// the module docs for why concurrent ticks never overshoot the budget.
    pub async fn admit_tick(&self, now_ms: u64) -> Result<Vec<String>, QueueError> {
        let (region, settings) = (self.region.clone(), self.settings);
        let deadline = now_ms.saturating_add(settings.place_grace.as_millis() as u64);
        let op = rerun::new_op();
        Ok(self
            .store
            .run(|tx| {
                let region = region.clone();
                async move {
                    let marker = keys::op_marker(&region, "tick");
                    if let Some(done) = rerun::recall(&tx, &marker, &op, corrupt_marker).await? {
                        return Ok(done); // an earlier attempt committed
                    }
                    let (_, mut rate, room) = admission_room(&tx, &region, &settings, now_ms).await?;
                    if room == 0 {
                        return Ok(Vec::new());
                    }
                    let (b, e) = keys::waiting(&region).range();
                    let head = tx.get_range(&b, &e, Some(room as usize), false).await?;
                    let mut admitted = Vec::with_capacity(head.len());
                    for kv in head {
                        tx.clear(&kv.key)?;
                        let w: WaitingPlace = decode_v1(&kv.value)
                            .map_err(|e| TxError::User(QueueError::corrupt("waiting", e)))?;
                        let Some(old) = read_entry(&tx, &region, &w.player).await? else {
                            continue; // stale FIFO key: the entry is gone, no slot
                        };
                        if old.place != w.place || !matches!(old.state, EntryState::Waiting { .. }) {
                            continue;
                        }
                        let new = AccountEntry {
                            state: EntryState::Reserved { since_ms: now_ms },
                            expires_ms: Some(deadline),
                            ..old.clone()
                        };
                        write_entry(&tx, &region, &w.player, Some(&old), &new)?;
                        admitted.push(w.player);
                    }
                    let n = admitted.len() as u32;
                    rate.admitted += n;
                    tx.set(&keys::rate(&region), &encode_v1(&rate))?;
                    tx.atomic_add(&keys::used(&region), i64::from(n))?;
                    tx.atomic_add(&keys::admissions(&region), i64::from(n))?;
                    rerun::remember(&tx, &marker, &op, &admitted)?;
                    Ok::<_, TxError<QueueError>>(admitted)
                }
            })
            .await?)
    }

    /// Removes what expired by `now_ms`: detached places (counted as
    /// abandoned), untaken admissions and re-entry reservations (their slots
    /// are freed). Returns how many entries expired. Idempotent; any gateway
    /// may run it.
    pub async fn sweep(&self, now_ms: u64) -> Result<usize, QueueError> {
        let mut total = 0;
        loop {
            let region = self.region.clone();
            let op = rerun::new_op();
            let (done, n) = self
                .store
                .run(|tx| {
                    let region = region.clone();
                    async move {
                        let marker = keys::op_marker(&region, "sweep");
                        if let Some(done) = rerun::recall(&tx, &marker, &op, corrupt_marker).await? {
                            return Ok(done); // an earlier attempt committed
                        }
                        let done = sweep_batch(&tx, &region, now_ms).await?;
                        if done.1 > 0 {
                            rerun::remember(&tx, &marker, &op, &done)?;
                        }
                        Ok(done)
                    }
                })
                .await?;
            total += n;
            if done {
                return Ok(total);
            }
        }
    }

    /// The whole FIFO at one read version, with the counters (snapshot reads:
    /// conflicts with nobody). Positions computed from a later view are never
    /// higher than from an earlier one.
    pub async fn view(&self) -> Result<QueueView, QueueError> {
        let region = self.region.clone();
        Ok(self
            .store
            .run(|tx| {
                let region = region.clone();
                async move {
                    let sub = keys::waiting(&region);
                    let (b, e) = sub.range();
                    let stamps = tx
                        .get_range_snapshot(&b, &e, None, false)
                        .await?
                        .iter()
                        .map(|kv| stamp_of(&sub, &kv.key))
                        .collect::<TxResult<Vec<Stamp>>>()?;
                    let counter = |raw: Option<Vec<u8>>| decode_counter(raw.as_deref()).max(0) as u64;
                    Ok::<_, TxError<QueueError>>(QueueView {
                        stamps,
                        admissions_total: counter(tx.get_snapshot(&keys::admissions(&region)).await?),
                        abandoned_total: counter(tx.get_snapshot(&keys::abandoned(&region)).await?),
                        used: counter(tx.get_snapshot(&keys::used(&region)).await?),
                        budget: read_budget(&tx, &region).await?,
                    })
                }
            })
            .await?)
    }

    /// The fleet-liveness hook: gateway `gateway` is gone (declared dead by
    /// the liveness module's orphan sweep, or drained). Its waiting places
    /// become detached (they survive `place_grace`), its sessions become
    /// re-entry reservations. Returns how many entries changed. Idempotent.
    pub async fn release_holder(&self, gateway: &str, now_ms: u64) -> Result<usize, QueueError> {
        let place_deadline = now_ms.saturating_add(self.settings.place_grace.as_millis() as u64);
        let reentry_deadline = now_ms.saturating_add(self.settings.reentry_grace.as_millis() as u64);
        let region = self.region.clone();
        let sub = keys::holder(&region, gateway);
        let (mut begin, end) = sub.range();
        let mut total = 0;
        loop {
            let (region, sub, from) = (region.clone(), sub.clone(), begin.clone());
            let op = rerun::new_op();
            let (next, n) = self
                .store
                .run(|tx| {
                    let (region, sub, from, end) = (region.clone(), sub.clone(), from.clone(), end.clone());
                    let gateway = gateway.to_owned();
                    async move {
                        let marker = keys::release_marker(&region, &gateway);
                        if let Some(done) = rerun::recall(&tx, &marker, &op, corrupt_marker).await? {
                            return Ok(done); // an earlier attempt committed
                        }
                        let batch = tx.get_range(&from, &end, Some(SWEEP_BATCH), false).await?;
                        let mut n = 0;
                        for kv in &batch {
                            let Ok((player,)) = sub.unpack::<(String,)>(&kv.key) else {
                                continue;
                            };
                            let Some(e) = read_entry(&tx, &region, &player).await? else {
                                continue;
                            };
                            let deadline = match e.state {
                                EntryState::Waiting { .. } => place_deadline,
                                EntryState::Session { .. } => reentry_deadline,
                                EntryState::Reserved { .. } => continue,
                            };
                            if e.holder != gateway || e.expires_ms.is_some() {
                                continue;
                            }
                            let state = match e.state {
                                EntryState::Session { .. } => EntryState::Reserved { since_ms: now_ms },
                                ref s => s.clone(),
                            };
                            let new = AccountEntry {
                                state,
                                expires_ms: Some(deadline),
                                ..e.clone()
                            };
                            write_entry(&tx, &region, &player, Some(&e), &new)?;
                            n += 1;
                        }
                        let next = (batch.len() == SWEEP_BATCH).then(|| {
                            let mut k = batch[batch.len() - 1].key.clone();
                            k.push(0);
                            k
                        });
                        if n > 0 {
                            rerun::remember(&tx, &marker, &op, &(&next, n))?;
                        }
                        Ok::<_, TxError<QueueError>>((next, n))
                    }
                })
                .await?;
            total += n;
            match next {
                Some(k) => begin = k,
                None => return Ok(total),
            }
        }
    }
}

/// One batch of the expiry sweep: `(done, expired)`.
async fn sweep_batch<T: Transaction>(
    tx: &T,
    region: &crate::keyspace::RegionName,
    now_ms: u64,
) -> TxResult<(bool, usize)> {
    let sub = keys::expiry(region);
    let (b, _) = sub.range();
    let end = sub.pack(&(now_ms.saturating_add(1),));
    let batch = tx.get_range(&b, &end, Some(SWEEP_BATCH), false).await?;
    let mut expired = 0;
    for kv in &batch {
        tx.clear(&kv.key)?;
        let Ok((deadline, player)) = sub.unpack::<(u64, String)>(&kv.key) else {
            continue;
        };
        let Some(e) = read_entry(tx, region, &player).await? else {
            continue;
        };
        if e.expires_ms != Some(deadline) {
            continue; // stale index key
        }
        match &e.state {
            EntryState::Waiting { stamp, .. } => {
                let stamp = match stamp.as_deref().and_then(Stamp::from_hex) {
                    Some(s) => Some(s),
                    None => find_stamp_tx(tx, region, e.place).await?,
                };
                if let Some(s) = stamp {
                    tx.clear(&keys::waiting_at(region, &s.to_versionstamp()))?;
                }
                tx.atomic_add(&keys::abandoned(region), 1)?;
            }
            EntryState::Reserved { .. } | EntryState::Session { .. } => {
                tx.atomic_add(&keys::used(region), -1)?;
            }
        }
        clear_entry(tx, region, &player, &e)?;
        expired += 1;
    }
    Ok((batch.len() < SWEEP_BATCH, expired))
}

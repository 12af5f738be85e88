//! Backfill requests in the store: create, read, cancel, expire, load per
//! partition, and the fill commit (see [`super::backfill`] for the design and
//! [`super::keys`] for the keys).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error_class::{Classify, ErrorClass};
use crate::keyspace::RegionName;
use crate::store::{Store, StoreError, Transaction, TxError};

use super::backfill::{
    apply_fill, apply_leaving, check_leaving, fill_tickets, Backfill, BackfillFill, BackfillId,
    MAX_OPEN_PER_MATCH, MAX_OPEN_PER_POOL, MAX_TTL_MS, MIN_TTL_MS,
};
use super::errors::{CommitError, MatchmakerError};
use super::keys::{self, Partition, TicketRecord, TicketState};
use super::lease::{check_lease, Lease};
use super::store::{mark_matched, now_ms, Matchmaker};
use super::types::{Match, MatchId, TicketId};

/// What a game server asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillRequest {
    /// The match in progress (committed by this pool).
    pub match_id: MatchId,
    /// Open seats per team, in the match's team order: one entry per team,
    /// each at most the team size, at least one seat in total.
    pub slots: Vec<u32>,
    /// Lifetime, milliseconds ([`MIN_TTL_MS`]..=[`MAX_TTL_MS`]); once it has
    /// passed the request is never filled.
    pub ttl_ms: u64,
    /// Players who left the match and are replaced (at most
    /// [`MAX_LEAVING`](super::backfill::MAX_LEAVING), distinct, each a player
    /// of the match): the fill takes them off the match record's teams in
    /// the same transaction that adds the new players. May be empty.
    pub leaving: Vec<String>,
}

/// Where a backfill request is in its life; all but `Open` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillState {
    /// Waiting for tickets.
    Open,
    /// Every seat got a ticket (`tickets`).
    Filled,
    /// Cancelled by the caller.
    Cancelled,
    /// Its lifetime passed first.
    Expired,
}

/// A stored backfill request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackfillRecord {
    /// The request.
    pub request: Backfill,
    /// The skill band of its partition.
    pub band: u32,
    /// When it expires, milliseconds.
    pub expires_ms: u64,
    /// Its state (an `open` record past `expires_ms` is reported `expired`).
    pub state: BackfillState,
    /// Last state change, milliseconds.
    pub updated_ms: u64,
    /// The tickets placed, once filled.
    #[serde(default)]
    pub tickets: Vec<TicketId>,
    /// The players the request names as leaving the match (taken off its
    /// teams by the fill).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leaving: Vec<String>,
    /// The random op id of the fill commit (recognises its own retried commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<u64>,
}

impl BackfillRecord {
    fn partition(&self) -> Partition {
        Partition {
            queue: self.request.queue.clone(),
            region: self.request.region.clone(),
            band: self.band,
        }
    }

    /// The state at `now` (open past its expiry is expired).
    pub fn state_at(&self, now: u64) -> BackfillState {
        match self.state {
            BackfillState::Open if now >= self.expires_ms => BackfillState::Expired,
            s => s,
        }
    }
}

/// The open-index entry: the request and its expiry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OpenEntry {
    request: Backfill,
    expires_ms: u64,
}

/// An error of a backfill operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackfillError {
    /// The request breaks a rule (slots per team, team size, lifetime).
    #[error("invalid backfill request: {0}")]
    Invalid(String),
    /// The `leaving` list breaks a rule (too long, a player twice, a player
    /// not in the match).
    #[error("invalid leaving list: {0}")]
    InvalidLeaving(String),
    /// No such match in this pool.
    #[error("match {0} not found")]
    MatchNotFound(MatchId),
    /// No such backfill request.
    #[error("backfill {0} not found")]
    NotFound(BackfillId),
    /// Too many open requests for the match or the pool.
    #[error("too many open backfill requests for the {scope} (limit {limit})")]
    TooMany {
        /// `match` or `pool`.
        scope: &'static str,
        /// The limit.
        limit: i64,
    },
    /// The request was already filled; it can no longer be cancelled.
    #[error("backfill {0} is already filled")]
    AlreadyFilled(BackfillId),
    /// A stored record does not decode.
    #[error("corrupt backfill record: {0}")]
    Corrupt(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TxError<BackfillError>> for BackfillError {
    fn from(e: TxError<BackfillError>) -> Self {
        match e {
            TxError::Store(s) => BackfillError::Store(s),
            TxError::User(u) => u,
        }
    }
}

impl Classify for BackfillError {
    fn class(&self) -> ErrorClass {
        match self {
            BackfillError::Invalid(_) | BackfillError::InvalidLeaving(_) => ErrorClass::Invalid,
            BackfillError::MatchNotFound(_) | BackfillError::NotFound(_) => ErrorClass::NotFound,
            BackfillError::TooMany { .. } | BackfillError::AlreadyFilled(_) => ErrorClass::Conflict,
            BackfillError::Corrupt(_) => ErrorClass::Internal,
            BackfillError::Store(e) => e.class(),
        }
    }
}

/// How a fill commit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackfillOutcome {
    /// The tickets joined the match; the request is filled.
    Committed,
    /// This very fill was already committed (a retried "commit result unknown").
    AlreadyCommitted,
    /// The request is no longer open (filled by another worker, cancelled,
    /// expired) or its match is gone; nothing was written.
    Gone,
}

/// What committing one round's fills did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FillReport {
    /// Fills committed.
    pub committed: usize,
    /// Fills refused (a ticket or the request no longer available).
    pub refused: usize,
    /// The lease was lost (the remaining fills were not tried).
    pub lease_lost: bool,
}

fn bcorrupt<E: From<String>>(e: String) -> TxError<E> {
    TxError::User(E::from(e))
}

impl From<String> for BackfillError {
    fn from(e: String) -> Self {
        BackfillError::Corrupt(e)
    }
}

async fn read_backfill<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    id: BackfillId,
) -> Result<Option<BackfillRecord>, TxError<BackfillError>> {
    match tx.get(&keys::backfill(pool, id)).await? {
        Some(raw) => keys::decode(&raw).map(Some).map_err(bcorrupt),
        None => Ok(None),
    }
}

/// Moves an open request to a final state: out of the open index, the match's
/// list and the pool counter, into the finished index (retention); the record
/// rewritten.
fn close<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    rec: &mut BackfillRecord,
    state: BackfillState,
    now: u64,
) -> Result<(), StoreError> {
    let p = rec.partition();
    tx.clear(&keys::backfill_open(
        pool,
        &p,
        rec.request.created_ms,
        rec.request.id,
    ))?;
    tx.clear(&keys::backfill_match(pool, rec.request.match_id).pack(&(rec.request.id.0,)))?;
    tx.atomic_add(&keys::backfill_count(pool), -1)?;
    rec.state = state;
    rec.updated_ms = now;
    tx.set(&keys::backfill_finished(pool, now, rec.request.id), &[1])?;
    tx.set(&keys::backfill(pool, rec.request.id), &keys::encode(rec))
}

/// The bounds of a request checked before any store read (a hostile
/// `leaving` list costs nothing): the lifetime and the number of leaving
/// players.
fn check_request_bounds(req: &BackfillRequest) -> Result<(), BackfillError> {
    if !(MIN_TTL_MS..=MAX_TTL_MS).contains(&req.ttl_ms) {
        return Err(BackfillError::Invalid(format!(
            "ttl_ms must be {MIN_TTL_MS}..={MAX_TTL_MS}, got {}",
            req.ttl_ms
        )));
    }
    if req.leaving.len() > super::backfill::MAX_LEAVING {
        return Err(BackfillError::InvalidLeaving(format!(
            "leaving names {} players; at most {}",
            req.leaving.len(),
            super::backfill::MAX_LEAVING
        )));
    }
    Ok(())
}

/// Checks the open seats against the match: one entry per team (`teams`),
/// none over `team_size`, at least one seat in total.
fn check_slots(slots: &[u32], teams: usize, team_size: u32) -> Result<(), BackfillError> {
    if slots.len() != teams {
        return Err(BackfillError::Invalid(format!(
            "slots needs one entry per team ({teams}), got {}",
            slots.len()
        )));
    }
    if let Some(t) = slots.iter().position(|&s| s > team_size) {
        return Err(BackfillError::Invalid(format!(
            "slots[{t}] is {} but the team size is {team_size}",
            slots[t]
        )));
    }
    if slots.iter().all(|&s| s == 0) {
        return Err(BackfillError::Invalid("slots asks for no player".into()));
    }
    Ok(())
}

/// The transaction that stores a new open request `rec`: within the limits
/// of open requests per match and per pool (counted at `now`), it enters the
/// open index, the match's list and the pool counter. A record already under
/// its id is this call's earlier attempt (commit result unknown), answered
/// as it was, or a collision.
async fn insert_open<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    rec: &BackfillRecord,
    now: u64,
) -> Result<BackfillRecord, TxError<BackfillError>> {
    let id = rec.request.id;
    if let Some(existing) = read_backfill(tx, pool, id).await? {
        // Our own earlier attempt (commit result unknown) or a collision.
        if existing.request.match_id == rec.request.match_id
            && existing.request.created_ms == rec.request.created_ms
        {
            return Ok(existing);
        }
        return Err(TxError::User(BackfillError::Invalid(
            "backfill id collision; retry".into(),
        )));
    }
    let (b, e) = keys::backfill_match(pool, rec.request.match_id).range();
    let mut open = 0;
    for kv in tx.get_range(&b, &e, None, false).await? {
        let exp: u64 = keys::decode(&kv.value).map_err(bcorrupt)?;
        open += usize::from(exp > now);
    }
    if open >= MAX_OPEN_PER_MATCH {
        return Err(TxError::User(BackfillError::TooMany {
            scope: "match",
            limit: MAX_OPEN_PER_MATCH as i64,
        }));
    }
    let count = crate::codec::decode_counter(tx.get(&keys::backfill_count(pool)).await?.as_deref());
    if count >= MAX_OPEN_PER_POOL {
        return Err(TxError::User(BackfillError::TooMany {
            scope: "pool",
            limit: MAX_OPEN_PER_POOL,
        }));
    }
    let entry = OpenEntry {
        request: rec.request.clone(),
        expires_ms: rec.expires_ms,
    };
    tx.set(
        &keys::backfill_open(pool, &rec.partition(), rec.request.created_ms, id),
        &keys::encode(&entry),
    )?;
    tx.set(
        &keys::backfill_match(pool, rec.request.match_id).pack(&(id.0,)),
        &keys::encode(&rec.expires_ms),
    )?;
    tx.atomic_add(&keys::backfill_count(pool), 1)?;
    tx.set(&keys::backfill(pool, id), &keys::encode(rec))?;
    Ok(rec.clone())
}

impl<S: Store> Matchmaker<S> {
    /// Stores a backfill request for a committed match of this pool (see
    /// [`super::backfill`]). Errors: [`BackfillError::Invalid`],
    /// [`BackfillError::MatchNotFound`], [`BackfillError::TooMany`].
    pub async fn create_backfill(&self, req: BackfillRequest) -> Result<BackfillRecord, BackfillError> {
        check_request_bounds(&req)?;
        let m = self
            .get_match(req.match_id)
            .await
            .map_err(|e| match e {
                MatchmakerError::Store(s) => BackfillError::Store(s),
                e => BackfillError::Corrupt(e.to_string()),
            })?
            .ok_or(BackfillError::MatchNotFound(req.match_id))?;
        let q = self.config().queue(&m.queue).ok_or_else(|| {
            BackfillError::Invalid(format!("the match's queue {:?} is no longer configured", m.queue))
        })?;
        check_slots(&req.slots, m.teams.len(), q.team_size)?;
        check_leaving(&m, &req.leaving).map_err(BackfillError::InvalidLeaving)?;
        let now = now_ms();
        let request = Backfill::for_match(BackfillId(rand::random()), &m, req.slots, now);
        let rec = BackfillRecord {
            band: q.band_of(request.rating) as u32,
            request,
            expires_ms: now + req.ttl_ms,
            state: BackfillState::Open,
            updated_ms: now,
            tickets: Vec::new(),
            leaving: req.leaving,
            op: None,
        };
        let pool = Arc::new(self.pool_name().clone());
        let rec = Arc::new(rec);
        let res = self
            .store()
            .run(|tx| {
                let (pool, rec) = (pool.clone(), rec.clone());
                async move { insert_open(&tx, &pool, &rec, now).await }
            })
            .await?;
        super::metrics::backfill_requested(&res.request.queue, &res.request.region);
        Ok(res)
    }

    /// A backfill request (an open one past its expiry is reported `expired`).
    pub async fn backfill(&self, id: BackfillId) -> Result<Option<BackfillRecord>, BackfillError> {
        let pool = Arc::new(self.pool_name().clone());
        let rec = self
            .store()
            .run(|tx| {
                let pool = pool.clone();
                async move { read_backfill(&tx, &pool, id).await }
            })
            .await?;
        let now = now_ms();
        Ok(rec.map(|mut r| {
            r.state = r.state_at(now);
            r
        }))
    }

    /// Cancels an open request (idempotent: a cancelled or expired one is
    /// returned as it is). Errors: [`BackfillError::NotFound`],
    /// [`BackfillError::AlreadyFilled`].
    pub async fn cancel_backfill(&self, id: BackfillId) -> Result<BackfillRecord, BackfillError> {
        self.close_backfill(id, BackfillState::Cancelled).await
    }

    async fn close_backfill(
        &self,
        id: BackfillId,
        want: BackfillState,
    ) -> Result<BackfillRecord, BackfillError> {
        let pool = Arc::new(self.pool_name().clone());
        // The record, and whether this call closed it (for the metrics).
        let (rec, closed) = self
            .store()
            .run(|tx| {
                let pool = pool.clone();
                async move {
                    let now = now_ms();
                    let Some(mut rec) = read_backfill(&tx, &pool, id).await? else {
                        return Err(TxError::User(BackfillError::NotFound(id)));
                    };
                    match rec.state {
                        BackfillState::Filled => Err(TxError::User(BackfillError::AlreadyFilled(id))),
                        BackfillState::Cancelled | BackfillState::Expired => Ok((rec, false)),
                        BackfillState::Open => {
                            let state = match rec.state_at(now) {
                                BackfillState::Expired => BackfillState::Expired,
                                _ => want,
                            };
                            close(&tx, &pool, &mut rec, state, now)?;
                            Ok((rec, true))
                        }
                    }
                }
            })
            .await?;
        if closed {
            let outcome = match rec.state {
                BackfillState::Cancelled => "cancelled",
                _ => "expired",
            };
            super::metrics::backfill_closed(&rec.request.queue, &rec.request.region, outcome);
        }
        Ok(rec)
    }

    /// The open, unexpired requests of partition `p`, oldest first (snapshot
    /// read). Requests found expired are closed as `expired` on the way.
    pub async fn load_backfills(&self, p: &Partition, now: u64) -> Result<Vec<Backfill>, MatchmakerError> {
        let (b, e) = keys::backfill_partition(self.pool_name(), p).range();
        let page = self.snapshot_page(&b, &e, MAX_OPEN_PER_POOL as usize).await?;
        let mut out = Vec::with_capacity(page.len());
        for kv in page {
            let entry: OpenEntry = keys::decode(&kv.value).map_err(MatchmakerError::Corrupt)?;
            if now >= entry.expires_ms {
                match self
                    .close_backfill(entry.request.id, BackfillState::Expired)
                    .await
                {
                    Ok(_) | Err(BackfillError::AlreadyFilled(_)) | Err(BackfillError::NotFound(_)) => {}
                    Err(BackfillError::Store(s)) => return Err(MatchmakerError::Store(s)),
                    Err(e) => return Err(MatchmakerError::Corrupt(e.to_string())),
                }
            } else {
                out.push(entry.request);
            }
        }
        Ok(out)
    }

    /// Commits `fill` under `lease` in one transaction (see
    /// [`super::backfill`]): lease current, request open and unexpired, every
    /// ticket waiting; then the tickets join the match and the request is
    /// filled. `op` (random, the same across retries of one fill) makes a
    /// retried commit report [`BackfillOutcome::AlreadyCommitted`].
    pub async fn commit_backfill(
        &self,
        lease: &Lease,
        fill: &BackfillFill,
        op: u64,
    ) -> Result<BackfillOutcome, CommitError> {
        let pool = Arc::new(self.pool_name().clone());
        let (lease, fill) = (Arc::new(lease.clone()), Arc::new(fill.clone()));
        let res = self
            .store()
            .run(|tx| {
                let (pool, lease, fill) = (pool.clone(), lease.clone(), fill.clone());
                async move {
                    let ccorrupt = |e: String| TxError::User(CommitError::Corrupt(e));
                    check_lease(&tx, &pool, &lease).await?;
                    let now = now_ms();
                    let mut rec: BackfillRecord = match tx.get(&keys::backfill(&pool, fill.backfill)).await? {
                        Some(raw) => keys::decode(&raw).map_err(ccorrupt)?,
                        None => return Ok(BackfillOutcome::Gone),
                    };
                    if rec.state == BackfillState::Filled && rec.op == Some(op) {
                        return Ok(BackfillOutcome::AlreadyCommitted);
                    }
                    if rec.state_at(now) != BackfillState::Open {
                        return Ok(BackfillOutcome::Gone);
                    }
                    let mut m: Match = match tx.get(&keys::match_record(&pool, fill.match_id)).await? {
                        Some(raw) => keys::decode(&raw).map_err(ccorrupt)?,
                        None => return Ok(BackfillOutcome::Gone),
                    };
                    let mut recs = Vec::with_capacity(fill.placed.len());
                    for p in &fill.placed {
                        let id = p.ticket.id;
                        let rec: TicketRecord = match tx.get(&keys::ticket(&pool, id)).await? {
                            Some(raw) => keys::decode(&raw).map_err(ccorrupt)?,
                            None => return Err(TxError::User(CommitError::TicketUnavailable(id))),
                        };
                        if rec.state != TicketState::Waiting {
                            return Err(TxError::User(CommitError::TicketUnavailable(id)));
                        }
                        recs.push(rec);
                    }
                    for mut t in recs {
                        mark_matched(&tx, &pool, &mut t, m.id, now)?;
                    }
                    apply_leaving(&mut m, &rec.leaving);
                    apply_fill(&mut m, &fill);
                    tx.set(&keys::match_record(&pool, m.id), &keys::encode(&m))?;
                    rec.tickets = fill_tickets(&fill);
                    rec.op = Some(op);
                    close(&tx, &pool, &mut rec, BackfillState::Filled, now)?;
                    Ok(BackfillOutcome::Committed)
                }
            })
            .await?;
        Ok(res)
    }
}

/// Commits one round's fills of `requests` under `lease`, in order (the
/// worker calls it before committing the round's new matches).
pub(crate) async fn commit_fills<S: Store>(
    mm: &Matchmaker<S>,
    lease: &Lease,
    fills: Vec<BackfillFill>,
    requests: &[Backfill],
) -> Result<FillReport, MatchmakerError> {
    let mut report = FillReport::default();
    for fill in fills {
        match mm.commit_backfill(lease, &fill, rand::random()).await {
            Ok(BackfillOutcome::Committed | BackfillOutcome::AlreadyCommitted) => {
                report.committed += 1;
                if let Some(b) = requests.iter().find(|b| b.id == fill.backfill) {
                    let latency = now_ms().saturating_sub(b.created_ms);
                    super::metrics::backfill_filled(&b.queue, &b.region, latency);
                }
                tracing::debug!(backfill = %fill.backfill, r#match = %fill.match_id, "backfill filled");
            }
            Ok(BackfillOutcome::Gone) | Err(CommitError::TicketUnavailable(_)) => report.refused += 1,
            Err(CommitError::LeaseLost(_)) => {
                report.lease_lost = true;
                break;
            }
            Err(CommitError::Corrupt(e)) => return Err(MatchmakerError::Corrupt(e)),
            Err(CommitError::Store(e)) => return Err(MatchmakerError::Store(e)),
        }
    }
    Ok(report)
}

//! The store-backed pool: [`Matchmaker`] writes tickets to the Store in
//! partitions and commits matches with the checks that make "never matched
//! twice, never lost" hold (see the [module docs](super)).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::identity::check_player_id;
use crate::keyspace::RegionName;
use crate::store::{Store, Transaction, TxError, Watch};

use super::config::MatchmakerConfig;
use super::core::check_ticket;
use super::errors::{CommitError, MatchmakerError};
use super::keys::{self, Partition, PlayerEntry, TicketRecord, TicketState};
use super::lease::{check_lease, Lease};
use super::types::{Match, MatchId, RegionLatency, Skill, Ticket, TicketId};
pub(crate) use crate::time::now_ms;

/// What a client asks for (through the gateway's matchmaking channel).
#[derive(Debug, Clone, PartialEq)]
pub struct TicketRequest {
    /// The players (identity player ids); a party is 2..=team size players who
    /// always play on one team.
    pub players: Vec<String>,
    /// The queue.
    pub queue: String,
    /// Skill; for a party, [`Skill::party`] of its members.
    pub skill: Skill,
    /// The home region (where the players' sessions are).
    pub home_region: String,
    /// Latencies measured by the client (for a party: per region, the worst
    /// member's).
    pub latencies: Vec<RegionLatency>,
    /// The players' own bound for fallback regions, milliseconds.
    pub max_latency_ms: Option<u32>,
}

/// A player's latest ticket and, once matched, the match.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayerTicket {
    /// The ticket.
    pub ticket: TicketId,
    /// Its state.
    pub state: TicketState,
    /// The match, when `state` is `Matched`.
    pub assigned: Option<Match>,
}

/// Resolves once the player's ticket entry changes (created, matched,
/// cancelled, removed), written by any process sharing the store. Dropping it
/// cancels the watch.
#[derive(Debug)]
pub struct PlayerWatch(pub(crate) Watch);

impl Future for PlayerWatch {
    type Output = Result<(), MatchmakerError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map_err(MatchmakerError::Store)
    }
}

/// How a match commit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The match was written and its tickets left the pool.
    Committed,
    /// This very match was already committed (a retried "commit result unknown").
    AlreadyCommitted,
}

/// The store-backed matchmaker of one pool (see the [module docs](super)).
/// Cheap to clone.
#[derive(Clone)]
pub struct Matchmaker<S: Store> {
    store: S,
    pool: Arc<RegionName>,
    config: Arc<MatchmakerConfig>,
    /// The gateway incarnation whose sessions this matchmaker queues (the
    /// holder recorded on new and re-attached tickets).
    incarnation: Option<u64>,
}

impl<S: Store> std::fmt::Debug for Matchmaker<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matchmaker").field("pool", &self.pool).finish()
    }
}

pub(crate) fn corrupt(e: String) -> TxError<MatchmakerError> {
    TxError::User(MatchmakerError::Corrupt(e))
}

pub(crate) fn check_player(p: &str) -> Result<(), MatchmakerError> {
    check_player_id(p).map_err(|_| MatchmakerError::InvalidPlayerId(p.chars().take(64).collect()))
}

pub(crate) async fn read_record<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    id: TicketId,
) -> Result<Option<TicketRecord>, TxError<MatchmakerError>> {
    match tx.get(&keys::ticket(pool, id)).await? {
        Some(raw) => keys::decode(&raw).map(Some).map_err(corrupt),
        None => Ok(None),
    }
}

/// Moves a waiting ticket to a final state (cancelled or removed) in `tx`.
fn finish_ticket<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    rec: &mut TicketRecord,
    state: TicketState,
    player_entries: &[(String, Option<PlayerEntry>)],
) -> Result<(), TxError<MatchmakerError>> {
    leave_pool(tx, pool, rec, state, now_ms())?;
    for (player, entry) in player_entries {
        if entry.as_ref().is_some_and(|e| e.ticket == rec.ticket.id) {
            let e = PlayerEntry {
                ticket: rec.ticket.id,
                state,
            };
            tx.set(&keys::player(pool, player), &keys::encode(&e))?;
        }
    }
    Ok(())
}

/// The part of every final state change that concerns the ticket itself: out
/// of the waiting index, the depth counter and the holder index; into the
/// finished index (for retention GC); the record rewritten.
pub(crate) fn leave_pool<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    rec: &mut TicketRecord,
    state: TicketState,
    now: u64,
) -> Result<(), TxError<MatchmakerError>> {
    let p = rec.partition();
    tx.clear(&keys::waiting(pool, &p, rec.ticket.created_ms, rec.ticket.id))?;
    tx.atomic_add(&keys::depth(pool, &p.queue, &p.region), -1)?;
    if let Some(inc) = rec.holder {
        tx.clear(&keys::holder(pool, inc, rec.ticket.id))?;
    }
    rec.state = state;
    rec.updated_ms = now;
    tx.set(
        &keys::finished(pool, now, rec.ticket.id),
        &[crate::codec::SCHEMA_V1],
    )?;
    tx.set(&keys::ticket(pool, rec.ticket.id), &keys::encode(rec))?;
    Ok(())
}

/// [`leave_pool`] in a commit under a lease, whose errors are
/// [`CommitError`]s: a record found corrupt on the way is `Corrupt`.
pub(crate) fn leave_pool_in_commit<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    rec: &mut TicketRecord,
    state: TicketState,
    now: u64,
) -> Result<(), TxError<CommitError>> {
    leave_pool(tx, pool, rec, state, now).map_err(|e| match e {
        TxError::Store(s) => TxError::Store(s),
        TxError::User(u) => TxError::User(CommitError::Corrupt(u.to_string())),
    })
}

/// Puts waiting ticket `rec` into match `match_id` in a commit under a lease
/// (a new match or a backfill): it leaves the pool as `Matched`, and every one
/// of its players' entries points at it with that state.
pub(crate) fn mark_matched<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    rec: &mut TicketRecord,
    match_id: MatchId,
    now: u64,
) -> Result<(), TxError<CommitError>> {
    let state = TicketState::Matched { match_id };
    leave_pool_in_commit(tx, pool, rec, state, now)?;
    let entry = keys::encode(&PlayerEntry {
        ticket: rec.ticket.id,
        state,
    });
    for player in &rec.ticket.players {
        tx.set(&keys::player(pool, player), &entry)?;
    }
    Ok(())
}

/// Fails unless gateway incarnation `inc` is registered in the pool region and
/// not swept: a ticket is never handed to an incarnation whose state the
/// orphan sweep has already released (it would never be swept again).
async fn check_holder<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    inc: u64,
) -> Result<(), TxError<MatchmakerError>> {
    match crate::liveness::read_incarnation(tx, pool, inc).await {
        Ok(Some(r)) if !r.swept => Ok(()),
        Ok(_) => Err(TxError::User(MatchmakerError::HolderGone(inc))),
        Err(TxError::Store(e)) => Err(TxError::Store(e)),
        Err(TxError::User(e)) => Err(corrupt(e.to_string())),
    }
}

async fn read_entries<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    players: &[String],
) -> Result<Vec<(String, Option<PlayerEntry>)>, TxError<MatchmakerError>> {
    let mut out = Vec::with_capacity(players.len());
    for p in players {
        let e = match tx.get(&keys::player(pool, p)).await? {
            Some(raw) => Some(keys::decode::<PlayerEntry>(&raw).map_err(corrupt)?),
            None => None,
        };
        out.push((p.clone(), e));
    }
    Ok(out)
}

/// The re-attach rule of [`Matchmaker::create_ticket`]: `Some(id)` if every
/// player of `rec` waits on ticket `id` in the same queue with exactly the same
/// players (its holder moved to `rec.holder`); an error if any player waits on
/// another ticket; `None` if nobody waits.
async fn reattach<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    rec: &TicketRecord,
) -> Result<Option<TicketId>, TxError<MatchmakerError>> {
    let mut waiting_on: Option<TicketId> = None;
    let mut all = true;
    for (_, entry) in read_entries(tx, pool, &rec.ticket.players).await? {
        match entry.filter(|e| e.state == TicketState::Waiting) {
            Some(e) if waiting_on.is_none_or(|t| t == e.ticket) => waiting_on = Some(e.ticket),
            Some(_) => all = false,
            None => all = false,
        }
    }
    let Some(tid) = waiting_on else { return Ok(None) };
    let Some(mut existing) = read_record(tx, pool, tid).await? else {
        return Err(corrupt(format!("player entry points to missing ticket {tid}")));
    };
    let mut same = existing.ticket.players.clone();
    let mut want = rec.ticket.players.clone();
    same.sort();
    want.sort();
    if !all
        || same != want
        || existing.ticket.queue != rec.ticket.queue
        || existing.state != TicketState::Waiting
    {
        let player = rec
            .ticket
            .players
            .iter()
            .find(|p| existing.ticket.players.contains(p))
            .cloned()
            .unwrap_or_default();
        return Err(TxError::User(MatchmakerError::AlreadyQueued {
            player,
            ticket: tid,
            queue: existing.ticket.queue,
        }));
    }
    if let Some(inc) = rec.holder.filter(|_| existing.holder != rec.holder) {
        if let Some(old) = existing.holder {
            tx.clear(&keys::holder(pool, old, tid))?;
        }
        tx.set(&keys::holder(pool, inc, tid), &[crate::codec::SCHEMA_V1])?;
        existing.holder = Some(inc);
        existing.updated_ms = now_ms();
        tx.set(&keys::ticket(pool, tid), &keys::encode(&existing))?;
    }
    Ok(Some(tid))
}

impl<S: Store> Matchmaker<S> {
    /// The matchmaker whose pool lives in `pool_region`'s keyspace of `store`,
    /// for `config` (validated here).
    pub fn new(store: S, pool_region: &str, config: MatchmakerConfig) -> Result<Self, MatchmakerError> {
        let pool = RegionName::new(pool_region).map_err(|e| MatchmakerError::InvalidPoolRegion(e.0))?;
        config.validate()?;
        Ok(Matchmaker {
            store,
            pool: Arc::new(pool),
            config: Arc::new(config),
            incarnation: None,
        })
    }

    /// This matchmaker, recording gateway incarnation `incarnation`
    /// ([`crate::liveness`]) as the holder of the tickets it creates or
    /// re-attaches, so the orphan sweep can release them if that incarnation
    /// dies. The incarnation must be registered in the pool region.
    pub fn with_incarnation(mut self, incarnation: u64) -> Self {
        self.incarnation = Some(incarnation);
        self
    }

    /// The holder recorded on tickets this matchmaker creates, if any.
    pub fn incarnation(&self) -> Option<u64> {
        self.incarnation
    }

    /// The configuration.
    pub fn config(&self) -> &MatchmakerConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The region whose keyspace holds the pool.
    pub fn pool_region(&self) -> &str {
        self.pool.as_str()
    }

    /// The region whose keyspace holds the pool, as the validated name the
    /// pool's keys are built from.
    pub(crate) fn pool_name(&self) -> &RegionName {
        &self.pool
    }

    /// Every partition of the pool: queue × region × skill band.
    pub fn partitions(&self) -> Vec<Partition> {
        let mut out = Vec::new();
        for q in &self.config.queues {
            for r in &self.config.regions {
                for band in 0..q.band_count() as u32 {
                    out.push(Partition {
                        queue: q.name.clone(),
                        region: r.name.clone(),
                        band,
                    });
                }
            }
        }
        out
    }

    /// Puts a ticket in the pool and returns its id. Every player gets a player
    /// entry (state `waiting`) that [`watch_player`](Self::watch_player) follows.
    ///
    /// **Idempotent per queue:** if exactly these players already wait together
    /// on one ticket in the same queue, that ticket's id is returned and nothing
    /// else changes (its place in the pool, its skill and latencies stay) except
    /// its holder, which becomes this matchmaker's gateway incarnation (see
    /// [`with_incarnation`](Self::with_incarnation)): a player who reconnected
    /// through another gateway re-attaches to the ticket it had.
    ///
    /// Errors: [`MatchmakerError::AlreadyQueued`] if a player waits on another
    /// ticket (another queue, or another party), [`MatchmakerError::HolderGone`]
    /// if this matchmaker's incarnation was already swept as dead, input errors ([`MatchmakerError::InvalidTicket`],
    /// [`MatchmakerError::InvalidPlayerId`], [`MatchmakerError::DuplicatePlayer`]).
    pub async fn create_ticket(&self, req: TicketRequest) -> Result<TicketId, MatchmakerError> {
        self.create_ticket_at(req, now_ms()).await
    }

    /// [`create_ticket`](Self::create_ticket) with the ticket's creation time
    /// given (ms, the clock workers pass to their rounds): the simulator's
    /// model mode runs the store-backed pool on virtual time this way. Servers
    /// use `create_ticket`.
    pub async fn create_ticket_at(
        &self,
        req: TicketRequest,
        created_ms: u64,
    ) -> Result<TicketId, MatchmakerError> {
        for (i, p) in req.players.iter().enumerate() {
            check_player(p)?;
            if req.players[..i].contains(p) {
                return Err(MatchmakerError::DuplicatePlayer(p.clone()));
            }
        }
        let ticket = Ticket {
            id: TicketId(rand::random()),
            players: req.players,
            queue: req.queue,
            skill: req.skill,
            home_region: req.home_region,
            latencies: req.latencies,
            max_latency_ms: req.max_latency_ms,
            created_ms,
        };
        check_ticket(&self.config, &ticket)?;
        let band = self
            .config
            .queue(&ticket.queue)
            .expect("checked")
            .band_of(ticket.skill.rating) as u32;
        let rec = TicketRecord {
            ticket,
            band,
            state: TicketState::Waiting,
            updated_ms: now_ms(),
            holder: self.incarnation,
            op: None,
        };
        let pool = self.pool.clone();
        let id = rec.ticket.id;
        let id = self
            .store
            .run(|tx| {
                let (pool, rec) = (pool.clone(), rec.clone());
                async move {
                    if let Some(existing) = read_record(&tx, &pool, id).await? {
                        // Our own earlier attempt (commit result unknown), or a
                        // random collision. Compared on exact fields: the skill's
                        // floats need not survive the JSON round trip bit for bit.
                        let t = &existing.ticket;
                        if (&t.players, &t.queue, t.created_ms)
                            == (&rec.ticket.players, &rec.ticket.queue, rec.ticket.created_ms)
                        {
                            return Ok(id);
                        }
                        return Err(TxError::User(MatchmakerError::TicketIdCollision));
                    }
                    if let Some(inc) = rec.holder {
                        check_holder(&tx, &pool, inc).await?;
                    }
                    if let Some(existing) = reattach(&tx, &pool, &rec).await? {
                        return Ok(existing);
                    }
                    let p = rec.partition();
                    super::floor::lower(&tx, &pool, &p, rec.ticket.created_ms, id).await?;
                    tx.set(&keys::ticket(&pool, id), &keys::encode(&rec))?;
                    tx.set(
                        &keys::waiting(&pool, &p, rec.ticket.created_ms, id),
                        &keys::encode(&rec.ticket),
                    )?;
                    let entry = keys::encode(&PlayerEntry {
                        ticket: id,
                        state: TicketState::Waiting,
                    });
                    for player in &rec.ticket.players {
                        tx.set(&keys::player(&pool, player), &entry)?;
                    }
                    tx.atomic_add(&keys::depth(&pool, &p.queue, &p.region), 1)?;
                    if let Some(inc) = rec.holder {
                        tx.set(&keys::holder(&pool, inc, id), &[crate::codec::SCHEMA_V1])?;
                    }
                    Ok(id)
                }
            })
            .await?;
        Ok(id)
    }

    /// Cancels a waiting ticket and returns its final state: `Cancelled` (also
    /// if it already was), or the final state it already had (removed, timed
    /// out). Fails with
    /// [`MatchmakerError::AlreadyMatched`] if a match got there first.
    pub async fn cancel_ticket(&self, id: TicketId) -> Result<TicketState, MatchmakerError> {
        let pool = self.pool.clone();
        let res =
            self.store
                .run(|tx| {
                    let pool = pool.clone();
                    async move {
                        let mut rec = read_record(&tx, &pool, id)
                            .await?
                            .ok_or(TxError::User(MatchmakerError::TicketNotFound(id)))?;
                        match rec.state {
                            TicketState::Waiting => {
                                let entries = read_entries(&tx, &pool, &rec.ticket.players).await?;
                                finish_ticket(&tx, &pool, &mut rec, TicketState::Cancelled, &entries)?;
                                Ok(TicketState::Cancelled)
                            }
                            TicketState::Matched { match_id } => {
                                Err(TxError::User(MatchmakerError::AlreadyMatched {
                                    ticket: id,
                                    match_id,
                                }))
                            }
                            s @ (TicketState::Cancelled
                            | TicketState::Removed
                            | TicketState::TimedOut { .. }) => Ok(s),
                        }
                    }
                })
                .await?;
        Ok(res)
    }

    /// Removes the player's waiting ticket (the whole party's) because the
    /// player disconnected and did not resume, and returns its id; `None` if
    /// the player has no waiting ticket. A rerun after an unknown commit result
    /// that did commit returns the id too (the ticket record names the call
    /// that removed it).
    ///
    /// **Contract with the gateway:** call this when a session's resume window
    /// expires, not when the connection drops. A session that resumes within
    /// the window keeps its ticket and simply re-reads
    /// [`ticket_status`](Self::ticket_status) / re-arms
    /// [`watch_player`](Self::watch_player) (a match made meanwhile is in the
    /// player entry). The other members of a removed party ticket see state
    /// `removed` through their watch and may queue again.
    pub async fn remove_player_tickets(&self, player: &str) -> Result<Option<TicketId>, MatchmakerError> {
        check_player(player)?;
        let (pool, player) = (self.pool.clone(), player.to_owned());
        // The same in every attempt, recorded in the removed ticket.
        let op: u64 = rand::random();
        let res = self
            .store
            .run(|tx| {
                let (pool, player) = (pool.clone(), player.clone());
                async move {
                    let Some(raw) = tx.get(&keys::player(&pool, &player)).await? else {
                        return Ok(None);
                    };
                    let entry: PlayerEntry = keys::decode(&raw).map_err(corrupt)?;
                    let own_removal = entry.state == TicketState::Removed;
                    if entry.state != TicketState::Waiting && !own_removal {
                        return Ok(None);
                    }
                    let Some(mut rec) = read_record(&tx, &pool, entry.ticket).await? else {
                        return Err(corrupt(format!(
                            "player entry points to missing ticket {}",
                            entry.ticket
                        )));
                    };
                    if own_removal {
                        // Removed by an earlier attempt of this very call (its
                        // commit result was unknown)? Then answer as it did.
                        let ours = rec.state == TicketState::Removed && rec.op == Some(op);
                        return Ok(ours.then_some(entry.ticket));
                    }
                    if rec.state != TicketState::Waiting {
                        return Ok(None);
                    }
                    rec.op = Some(op);
                    let entries = read_entries(&tx, &pool, &rec.ticket.players).await?;
                    finish_ticket(&tx, &pool, &mut rec, TicketState::Removed, &entries)?;
                    Ok(Some(entry.ticket))
                }
            })
            .await?;
        Ok(res)
    }

    /// Commits `m` under `lease` in one transaction: the lease must still carry
    /// its fencing token, and every ticket must still be waiting; then every
    /// ticket is marked matched and leaves the pool, the match record and every
    /// player's entry are written. Safe to retry: a commit that already
    /// happened reports [`CommitOutcome::AlreadyCommitted`].
    pub async fn commit_match(&self, lease: &Lease, m: &Match) -> Result<CommitOutcome, CommitError> {
        let pool = self.pool.clone();
        let (lease, m) = (Arc::new(lease.clone()), Arc::new(m.clone()));
        let res = self
            .store
            .run(|tx| {
                let (pool, lease, m) = (pool.clone(), lease.clone(), m.clone());
                async move {
                    let ccorrupt = |e: String| TxError::User(CommitError::Corrupt(e));
                    check_lease(&tx, &pool, &lease).await?;
                    let mut recs = Vec::with_capacity(m.tickets.len());
                    for t in &m.tickets {
                        let raw = tx.get(&keys::ticket(&pool, t.id)).await?;
                        let rec: TicketRecord = match raw {
                            Some(raw) => keys::decode(&raw).map_err(ccorrupt)?,
                            None => return Err(TxError::User(CommitError::TicketUnavailable(t.id))),
                        };
                        match rec.state {
                            TicketState::Waiting => recs.push(rec),
                            TicketState::Matched { match_id } if match_id == m.id => {
                                return Ok(CommitOutcome::AlreadyCommitted)
                            }
                            _ => return Err(TxError::User(CommitError::TicketUnavailable(t.id))),
                        }
                    }
                    let now = now_ms();
                    for mut rec in recs {
                        mark_matched(&tx, &pool, &mut rec, m.id, now)?;
                    }
                    tx.set(&keys::match_record(&pool, m.id), &keys::encode(&*m))?;
                    Ok(CommitOutcome::Committed)
                }
            })
            .await?;
        Ok(res)
    }
}

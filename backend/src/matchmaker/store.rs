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
use super::lease::Lease;
use super::types::{Match, MatchId, RegionLatency, Skill, Ticket, TicketId};
pub(crate) use crate::time::now_ms;

/// Tickets read per transaction when loading a partition.
const LOAD_PAGE: usize = 5_000;

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
pub struct PlayerWatch(Watch);

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
}

impl<S: Store> std::fmt::Debug for Matchmaker<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matchmaker").field("pool", &self.pool).finish()
    }
}

fn corrupt(e: String) -> TxError<MatchmakerError> {
    TxError::User(MatchmakerError::Corrupt(e))
}

fn check_player(p: &str) -> Result<(), MatchmakerError> {
    check_player_id(p).map_err(|_| MatchmakerError::InvalidPlayerId(p.chars().take(64).collect()))
}

async fn read_record<T: Transaction>(
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
    let p = rec.partition();
    tx.clear(&keys::waiting(pool, &p, rec.ticket.created_ms, rec.ticket.id))?;
    tx.atomic_add(&keys::depth(pool, &p.queue, &p.region), -1)?;
    rec.state = state;
    rec.updated_ms = now_ms();
    tx.set(&keys::ticket(pool, rec.ticket.id), &keys::encode(rec))?;
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
        })
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
    /// Errors: [`MatchmakerError::AlreadyQueued`] if a player already waits,
    /// input errors ([`MatchmakerError::InvalidTicket`],
    /// [`MatchmakerError::InvalidPlayerId`], [`MatchmakerError::DuplicatePlayer`]).
    pub async fn create_ticket(&self, req: TicketRequest) -> Result<TicketId, MatchmakerError> {
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
            created_ms: now_ms(),
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
        };
        let pool = self.pool.clone();
        let id = rec.ticket.id;
        self.store
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
                            return Ok(());
                        }
                        return Err(TxError::User(MatchmakerError::TicketIdCollision));
                    }
                    for (player, entry) in read_entries(&tx, &pool, &rec.ticket.players).await? {
                        if let Some(e) = entry.filter(|e| e.state == TicketState::Waiting) {
                            return Err(TxError::User(MatchmakerError::AlreadyQueued {
                                player,
                                ticket: e.ticket,
                            }));
                        }
                    }
                    let p = rec.partition();
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
                    Ok(())
                }
            })
            .await?;
        Ok(id)
    }

    /// Cancels a waiting ticket and returns its final state: `Cancelled` (also
    /// if it already was, or was removed). Fails with
    /// [`MatchmakerError::AlreadyMatched`] if a match got there first.
    pub async fn cancel_ticket(&self, id: TicketId) -> Result<TicketState, MatchmakerError> {
        let pool = self.pool.clone();
        let res = self
            .store
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
                        s @ (TicketState::Cancelled | TicketState::Removed) => Ok(s),
                    }
                }
            })
            .await?;
        Ok(res)
    }

    /// Removes the player's waiting ticket (the whole party's) because the
    /// player disconnected and did not resume, and returns its id; `None` if
    /// the player has no waiting ticket.
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
        let res = self
            .store
            .run(|tx| {
                let (pool, player) = (pool.clone(), player.clone());
                async move {
                    let Some(raw) = tx.get(&keys::player(&pool, &player)).await? else {
                        return Ok(None);
                    };
                    let entry: PlayerEntry = keys::decode(&raw).map_err(corrupt)?;
                    if entry.state != TicketState::Waiting {
                        return Ok(None);
                    }
                    let Some(mut rec) = read_record(&tx, &pool, entry.ticket).await? else {
                        return Err(corrupt(format!(
                            "player entry points to missing ticket {}",
                            entry.ticket
                        )));
                    };
                    if rec.state != TicketState::Waiting {
                        return Ok(None);
                    }
                    let entries = read_entries(&tx, &pool, &rec.ticket.players).await?;
                    finish_ticket(&tx, &pool, &mut rec, TicketState::Removed, &entries)?;
                    Ok(Some(entry.ticket))
                }
            })
            .await?;
        Ok(res)
    }

    /// A ticket and its state.
    pub async fn ticket(&self, id: TicketId) -> Result<Option<(Ticket, TicketState)>, MatchmakerError> {
        let pool = self.pool.clone();
        let res = self
            .store
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
        let (pool, player) = (self.pool.clone(), player.to_owned());
        let res = self
            .store
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
                                    match tx.get(&keys::match_record(&pool, match_id)).await? {
                                        Some(raw) => Some(keys::decode::<Match>(&raw).map_err(corrupt)?),
                                        None => return Err(corrupt(format!("missing match {match_id}"))),
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
        let pool = self.pool.clone();
        let res = self
            .store
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

    /// Waiting tickets in `queue` with home `region` (pool depth, all bands).
    pub async fn depth(&self, queue: &str, region: &str) -> Result<u64, MatchmakerError> {
        let key = keys::depth(&self.pool, queue, region);
        let res = self
            .store
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

    /// The waiting tickets of a partition, oldest first; with `created_before`,
    /// only those created before that time. Snapshot reads in pages of
    /// [`LOAD_PAGE`] (one transaction each): the result may be slightly stale,
    /// which the match commit checks make harmless.
    pub async fn load_partition(
        &self,
        p: &Partition,
        created_before: Option<u64>,
    ) -> Result<Vec<Ticket>, MatchmakerError> {
        let sub = keys::partition(&self.pool, p);
        let (mut begin, all_end) = sub.range();
        let end = match created_before {
            Some(t) => sub.pack(&(t,)),
            None => all_end,
        };
        let mut out = Vec::new();
        loop {
            let page = self
                .store
                .run(|tx| {
                    let (begin, end) = (begin.clone(), end.clone());
                    async move {
                        Ok::<_, TxError<MatchmakerError>>(
                            tx.get_range_snapshot(&begin, &end, Some(LOAD_PAGE), false)
                                .await?,
                        )
                    }
                })
                .await?;
            let full = page.len() == LOAD_PAGE;
            for kv in &page {
                out.push(keys::decode::<Ticket>(&kv.value).map_err(MatchmakerError::Corrupt)?);
            }
            match page.last() {
                Some(last) if full => {
                    begin = last.key.clone();
                    begin.push(0);
                }
                _ => break,
            }
            if begin >= end {
                break;
            }
        }
        Ok(out)
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
                    match tx.get(&keys::lease(&pool, &lease.partition)).await? {
                        Some(raw) => {
                            let l: keys::LeaseRecord = keys::decode(&raw).map_err(ccorrupt)?;
                            if l.owner != lease.owner || l.token != lease.token {
                                return Err(TxError::User(CommitError::LeaseLost(
                                    lease.partition.to_string(),
                                )));
                            }
                        }
                        None => {
                            return Err(TxError::User(CommitError::LeaseLost(lease.partition.to_string())))
                        }
                    }
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
                    let state = TicketState::Matched { match_id: m.id };
                    let now = now_ms();
                    for mut rec in recs {
                        let p = rec.partition();
                        tx.clear(&keys::waiting(&pool, &p, rec.ticket.created_ms, rec.ticket.id))?;
                        tx.atomic_add(&keys::depth(&pool, &p.queue, &p.region), -1)?;
                        rec.state = state;
                        rec.updated_ms = now;
                        tx.set(&keys::ticket(&pool, rec.ticket.id), &keys::encode(&rec))?;
                        let entry = keys::encode(&PlayerEntry {
                            ticket: rec.ticket.id,
                            state,
                        });
                        for player in &rec.ticket.players {
                            tx.set(&keys::player(&pool, player), &entry)?;
                        }
                    }
                    tx.set(&keys::match_record(&pool, m.id), &keys::encode(&*m))?;
                    Ok(CommitOutcome::Committed)
                }
            })
            .await?;
        Ok(res)
    }
}

//! The algorithm core: [`MatchCore`], a plain struct with no store, no network
//! and no clock of its own. Callers insert and remove tickets and call
//! [`MatchCore::run_round`] with the current time (wall clock in a worker,
//! virtual time in the simulator).
//!
//! # A round
//!
//! For each queue:
//!
//! 1. **Home pass.** For each region, walk its home tickets in rating order.
//!    Each ticket in turn anchors a group: the following tickets (by rating) join
//!    while the group's spread (highest minus lowest rating) stays within every
//!    member's current window, skipping tickets whose own window is too narrow
//!    or whose party does not fit the remaining seats, until the match is full
//!    (teams × team size players). The lookahead is bounded (2 × match size + 8
//!    tickets), so a round costs O(n × match size) after the O(n) walk of an
//!    ordered index; inserts and removals are O(log n).
//! 2. **Fallback pass** (queues with `cross_region`). For each region R, the
//!    remaining home tickets plus tickets of regions that list R as a neighbour,
//!    have waited at least `cross_region.after_ms` and measured at most the
//!    latency bound to R (the queue's or the ticket's own, whichever is lower),
//!    sorted by rating and grouped as above. Home matches are therefore always
//!    preferred: a ticket only reaches the fallback pass if its home pass found
//!    no match this round.
//!
//! A ticket's **window** is `max_skill_diff` of the expansion step in force for
//! its wait (`now - created_ms`; with a `target_wait`, the effective wait of
//! [`super::widening`]) plus `uncertainty_widening × uncertainty`; a
//! ticket is only ever placed in a match whose spread is within its own window.
//!
//! **Deadline.** After a round, [`MatchCore::expire_due`] takes out the
//! tickets whose queue deadline falls before the next round, each with a
//! [`NoMatch`] outcome (see [`super::deadline`]).
//!
//! Each full group is split into teams by `teams` (parties stay
//! whole; team skill totals balanced); a group whose parties cannot be packed
//! into equal teams is skipped.
//!
//! **Borrowed tickets.** A store worker also loads some tickets owned by other
//! partitions (adjacent skill bands, neighbour regions) as *borrowed*: they may
//! complete a match but a group made only of borrowed tickets is left to their
//! owner. (The store's commit decides races: see [`super::store`].)

use std::collections::HashMap;

use super::config::{ConfigError, MatchmakerConfig, QueueConfig};
use super::deadline::{NoMatch, NoMatchReason};
use super::pool::{Entry, Pool};
use super::stats::MatchStats;
use super::teams::{self, Item};
use super::types::{Match, MatchId, MatchedTicket, Team, Ticket, TicketId};
use super::widening::Widening;

/// The expansion step of ticket `e` of queue `qi` at `now_ms` (its effective
/// wait under target-seeking widening).
fn step_of(cfg: &QueueConfig, widening: &Widening, qi: usize, e: &Entry, now_ms: u64) -> usize {
    let waited = now_ms.saturating_sub(e.created_ms);
    match cfg.target_wait {
        Some(t) => {
            let speed = widening.speed(Widening::key(&t, qi, e.home, e.rating));
            cfg.step_at(Widening::effective_wait(cfg, speed, waited))
        }
        None => cfg.step_at(waited),
    }
}

/// Records a ticket leaving the pool with `waited_ms` as an observation of
/// its widening pool (queues with a `target_wait`).
fn observe(cfg: &QueueConfig, widening: &mut Widening, qi: usize, e: &Entry, waited_ms: u64) {
    if let Some(t) = cfg.target_wait {
        widening.observe(&t, Widening::key(&t, qi, e.home, e.rating), waited_ms);
    }
}

/// Fills a group anchored at `cands[i]` from its lookahead window, largest
/// parties first (ties: closest rating), keeping the group's spread within
/// every member's window. Returns the players placed; `group` holds the picks.
fn fill_largest_first(
    cands: &[Cand],
    used: &[bool],
    i: usize,
    lookahead: usize,
    need: u32,
    group: &mut Vec<usize>,
) -> u32 {
    let anchor = cands[i];
    let end = cands.len().min(i + lookahead + 1);
    let mut window: Vec<usize> = (i + 1..end)
        .take_while(|&j| cands[j].rating - anchor.rating <= anchor.window)
        .filter(|&j| !used[j] && cands[j].rating - anchor.rating <= cands[j].window)
        .collect();
    window.sort_by(|&a, &b| cands[b].size.cmp(&cands[a].size).then(a.cmp(&b)));
    group.clear();
    group.push(i);
    let (mut players, mut min_w, mut spread) = (anchor.size, anchor.window, 0.0f64);
    for j in window {
        let c = cands[j];
        let s = spread.max(c.rating - anchor.rating);
        if players + c.size <= need && s <= min_w.min(c.window) {
            group.push(j);
            players += c.size;
            min_w = min_w.min(c.window);
            spread = s;
            if players == need {
                break;
            }
        }
    }
    players
}

/// An error inserting a ticket into a [`MatchCore`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// The ticket's queue is not configured.
    #[error("unknown queue {0:?}")]
    UnknownQueue(String),
    /// The ticket's home region is not configured.
    #[error("unknown region {0:?}")]
    UnknownRegion(String),
    /// A ticket with this id is already in the pool.
    #[error("ticket {0} is already in the pool")]
    DuplicateTicket(TicketId),
    /// No players, or more than the queue's team size (a party plays on one team).
    #[error("a ticket needs 1..={max} players, got {got}")]
    PartySize {
        /// Players on the ticket.
        got: usize,
        /// The queue's team size.
        max: u32,
    },
    /// A rating or uncertainty that is not finite (or a negative uncertainty).
    #[error("skill must be finite with uncertainty >= 0")]
    InvalidSkill,
}

pub(super) struct QueueState {
    pub(super) cfg: QueueConfig,
    pub(super) pool: Pool,
}

/// A ticket candidate in one pass: its slot and its facts at `now`.
#[derive(Debug, Clone, Copy)]
struct Cand {
    slot: u32,
    rating: f64,
    window: f64,
    size: u32,
    borrowed: bool,
}

/// The matchmaking algorithm over an in-memory pool (see the [module docs](self)).
pub struct MatchCore {
    pub(super) regions: Vec<String>,
    pub(super) region_idx: HashMap<String, u16>,
    /// For each region R: the regions that list R as a neighbour.
    fallback_sources: Vec<Vec<u16>>,
    pub(super) queues: Vec<QueueState>,
    pub(super) queue_idx: HashMap<String, u16>,
    pub(super) by_id: HashMap<TicketId, (u16, u32)>,
    next_match: u128,
    stats: MatchStats,
    widening: Widening,
}

impl std::fmt::Debug for MatchCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatchCore")
            .field("regions", &self.regions)
            .field("tickets", &self.by_id.len())
            .finish()
    }
}

/// Checks a ticket against a validated `config` the way [`MatchCore::insert`]
/// does (queue, home region, party size, skill), without a pool.
pub fn check_ticket(config: &MatchmakerConfig, t: &Ticket) -> Result<(), CoreError> {
    let q = config
        .queue(&t.queue)
        .ok_or_else(|| CoreError::UnknownQueue(t.queue.clone()))?;
    if config.region(&t.home_region).is_none() {
        return Err(CoreError::UnknownRegion(t.home_region.clone()));
    }
    if t.players.is_empty() || t.players.len() > q.team_size as usize {
        return Err(CoreError::PartySize {
            got: t.players.len(),
            max: q.team_size,
        });
    }
    if !t.skill.rating.is_finite() || !t.skill.uncertainty.is_finite() || t.skill.uncertainty < 0.0 {
        return Err(CoreError::InvalidSkill);
    }
    Ok(())
}

impl MatchCore {
    /// A core for `config` (validated here).
    pub fn new(config: &MatchmakerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let regions: Vec<String> = config.regions.iter().map(|r| r.name.clone()).collect();
        let region_idx: HashMap<String, u16> = regions
            .iter()
            .enumerate()
            .map(|(i, r)| (r.clone(), i as u16))
            .collect();
        let mut fallback_sources = vec![Vec::new(); regions.len()];
        for (h, r) in config.regions.iter().enumerate() {
            for n in &r.neighbours {
                fallback_sources[region_idx[n] as usize].push(h as u16);
            }
        }
        let queues: Vec<QueueState> = config
            .queues
            .iter()
            .map(|q| QueueState {
                cfg: q.clone(),
                pool: Pool::new(regions.len()),
            })
            .collect();
        let queue_idx = config
            .queues
            .iter()
            .enumerate()
            .map(|(i, q)| (q.name.clone(), i as u16))
            .collect();
        Ok(MatchCore {
            regions,
            region_idx,
            fallback_sources,
            queues,
            queue_idx,
            by_id: HashMap::new(),
            next_match: 1,
            stats: MatchStats::default(),
            widening: Widening::default(),
        })
    }

    /// Sets the id the next match gets (ids then count up).
    pub fn set_next_match_id(&mut self, id: u128) {
        self.next_match = id;
    }

    /// Adds a ticket owned by this pool.
    pub fn insert(&mut self, ticket: Ticket) -> Result<(), CoreError> {
        self.insert_inner(ticket, false)
    }

    /// Adds a ticket owned elsewhere: it may complete a match, but a match of
    /// only borrowed tickets is not formed.
    pub fn insert_borrowed(&mut self, ticket: Ticket) -> Result<(), CoreError> {
        self.insert_inner(ticket, true)
    }

    fn insert_inner(&mut self, t: Ticket, borrowed: bool) -> Result<(), CoreError> {
        let qi = *self
            .queue_idx
            .get(&t.queue)
            .ok_or_else(|| CoreError::UnknownQueue(t.queue.clone()))?;
        let home = *self
            .region_idx
            .get(&t.home_region)
            .ok_or_else(|| CoreError::UnknownRegion(t.home_region.clone()))?;
        let q = &mut self.queues[qi as usize];
        if t.players.is_empty() || t.players.len() > q.cfg.team_size as usize {
            return Err(CoreError::PartySize {
                got: t.players.len(),
                max: q.cfg.team_size,
            });
        }
        if !t.skill.rating.is_finite() || !t.skill.uncertainty.is_finite() || t.skill.uncertainty < 0.0 {
            return Err(CoreError::InvalidSkill);
        }
        if self.by_id.contains_key(&t.id) {
            return Err(CoreError::DuplicateTicket(t.id));
        }
        let latencies = t
            .latencies
            .iter()
            .filter_map(|l| self.region_idx.get(&l.region).map(|&r| (r, l.rtt_ms)))
            .collect();
        let slot = q.pool.insert(Entry {
            id: t.id,
            players: t.players,
            rating: t.skill.rating,
            uncertainty: t.skill.uncertainty,
            home,
            latencies,
            max_latency_ms: t.max_latency_ms.unwrap_or(u32::MAX),
            created_ms: t.created_ms,
            borrowed,
        });
        self.by_id.insert(t.id, (qi, slot));
        Ok(())
    }

    /// Removes a ticket (cancelled, or matched elsewhere); `false` if absent.
    pub fn remove(&mut self, id: TicketId) -> bool {
        match self.by_id.remove(&id) {
            Some((q, slot)) => self.queues[q as usize].pool.remove(slot).is_some(),
            None => false,
        }
    }

    /// Whether the ticket is in the pool.
    pub fn contains(&self, id: TicketId) -> bool {
        self.by_id.contains_key(&id)
    }

    /// Tickets in the pool.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Tickets waiting in `queue` with home `region` (pool depth).
    pub fn depth(&self, queue: &str, region: &str) -> usize {
        match (self.queue_idx.get(queue), self.region_idx.get(region)) {
            (Some(&q), Some(&r)) => self.queues[q as usize].pool.region_len(r),
            _ => 0,
        }
    }

    /// Statistics of the matches formed so far.
    pub fn stats(&self) -> &MatchStats {
        &self.stats
    }

    /// The target-seeking widening state (per-pool speeds).
    pub fn widening(&self) -> &Widening {
        &self.widening
    }

    /// Takes the widening state out (leaving a fresh one), to carry it into
    /// the next round's core ([`set_widening`](Self::set_widening)).
    pub fn take_widening(&mut self) -> Widening {
        std::mem::take(&mut self.widening)
    }

    /// Continues with widening state `w` (from an earlier core of the same
    /// config).
    pub fn set_widening(&mut self, w: Widening) {
        self.widening = w;
    }

    /// Takes out every owned ticket whose queue deadline falls before
    /// `next_round_ms` (at the latest: at `now_ms`) and returns their
    /// outcomes, so no ticket waits past its deadline. Call it after
    /// [`run_round`](Self::run_round) at the same `now_ms`: the widest window
    /// gets its last chance first. Borrowed tickets are left to their owner.
    pub fn expire_due(&mut self, now_ms: u64, next_round_ms: u64) -> Vec<NoMatch> {
        let horizon = next_round_ms.max(now_ms.saturating_add(1));
        let mut out = Vec::new();
        for qi in 0..self.queues.len() {
            let q = &mut self.queues[qi];
            let Some(deadline) = q.cfg.deadline_ms else {
                continue;
            };
            let due: Vec<u32> = (0..self.regions.len() as u16)
                .flat_map(|r| q.pool.region_slots(r))
                .filter(|&s| {
                    let e = q.pool.get(s);
                    !e.borrowed && e.created_ms.saturating_add(deadline) < horizon
                })
                .collect();
            for slot in due {
                let e = q.pool.remove(slot).expect("due ticket is in the pool");
                self.by_id.remove(&e.id);
                let wait = now_ms.saturating_sub(e.created_ms);
                observe(&q.cfg, &mut self.widening, qi, &e, wait);
                out.push(NoMatch {
                    ticket: e.id,
                    queue: q.cfg.name.clone(),
                    home_region: self.regions[e.home as usize].clone(),
                    players: e.players,
                    wait_ms: wait,
                    reason: NoMatchReason::Deadline,
                });
            }
        }
        out
    }

    /// Runs one round at time `now_ms` and returns the matches formed; their
    /// tickets have left the pool. `server` is `None` (see
    /// [`ServerAllocator`](super::alloc::ServerAllocator)).
    pub fn run_round(&mut self, now_ms: u64) -> Vec<Match> {
        let queues = &self.queues;
        self.widening.adapt(|qi| queues[qi as usize].cfg.target_wait);
        let mut out = Vec::new();
        for qi in 0..self.queues.len() {
            for r in 0..self.regions.len() as u16 {
                let cands = self.home_cands(qi, r, now_ms);
                self.match_cands(qi, r, cands, now_ms, &mut out);
            }
            let Some(cr) = self.queues[qi].cfg.cross_region else {
                continue;
            };
            for r in 0..self.regions.len() as u16 {
                let sources = &self.fallback_sources[r as usize];
                if sources.is_empty() {
                    continue;
                }
                let mut cands = self.home_cands(qi, r, now_ms);
                let home_count = cands.len();
                let q = &self.queues[qi];
                for &h in sources {
                    for slot in q.pool.region_slots(h) {
                        let e = q.pool.get(slot);
                        let bound = cr.max_latency_ms.min(e.max_latency_ms);
                        if now_ms.saturating_sub(e.created_ms) >= cr.after_ms
                            && e.latency_to(r).is_some_and(|l| l <= bound)
                        {
                            cands.push(self.cand(qi, slot, now_ms));
                        }
                    }
                }
                if cands.len() == home_count {
                    continue;
                }
                cands.sort_unstable_by(|a, b| a.rating.total_cmp(&b.rating));
                self.match_cands(qi, r, cands, now_ms, &mut out);
            }
        }
        for m in &out {
            self.stats.record(m);
        }
        out
    }

    fn cand(&self, qi: usize, slot: u32, now_ms: u64) -> Cand {
        let q = &self.queues[qi];
        let e = q.pool.get(slot);
        let step = step_of(&q.cfg, &self.widening, qi, e, now_ms);
        Cand {
            slot,
            rating: e.rating,
            window: q.cfg.expansions[step].max_skill_diff + q.cfg.uncertainty_widening * e.uncertainty,
            size: e.size(),
            borrowed: e.borrowed,
        }
    }

    fn home_cands(&self, qi: usize, region: u16, now_ms: u64) -> Vec<Cand> {
        self.queues[qi]
            .pool
            .region_slots(region)
            .map(|s| self.cand(qi, s, now_ms))
            .collect()
    }

    /// Groups `cands` (sorted by rating) into matches in `region`.
    fn match_cands(&mut self, qi: usize, region: u16, cands: Vec<Cand>, now_ms: u64, out: &mut Vec<Match>) {
        let cfg = &self.queues[qi].cfg;
        let (need, nteams, team_size) = (cfg.match_players(), cfg.teams as usize, cfg.team_size);
        let lookahead = 2 * need as usize + 8;
        let mut used = vec![false; cands.len()];
        let mut groups: Vec<Vec<Vec<u32>>> = Vec::new();
        let mut group: Vec<usize> = Vec::with_capacity(need as usize);
        let has_parties = cands.iter().any(|c| c.size > 1);
        for i in 0..cands.len() {
            if used[i] {
                continue;
            }
            let anchor = cands[i];
            group.clear();
            group.push(i);
            let (mut players, mut min_w) = (anchor.size, anchor.window);
            let mut j = i + 1;
            while players < need && j < cands.len() && j - i <= lookahead {
                let c = cands[j];
                let spread = c.rating - anchor.rating;
                if spread > min_w {
                    break;
                }
                if !used[j] && spread <= c.window && players + c.size <= need {
                    group.push(j);
                    players += c.size;
                    min_w = min_w.min(c.window);
                }
                j += 1;
            }
            if players != need && has_parties {
                // Rating order left seats that the remaining parties cannot fill
                // (say a solo took the seat a duo needed): refill the same
                // window largest parties first.
                players = fill_largest_first(&cands, &used, i, lookahead, need, &mut group);
            }
            if players != need || group.iter().all(|&g| cands[g].borrowed) {
                continue;
            }
            let items: Vec<Item> = group
                .iter()
                .map(|&g| Item {
                    size: cands[g].size,
                    rating: cands[g].rating,
                })
                .collect();
            let Some(split) = teams::balance(&items, nteams, team_size) else {
                continue;
            };
            for &g in &group {
                used[g] = true;
            }
            groups.push(
                split
                    .into_iter()
                    .map(|t| t.into_iter().map(|k| cands[group[k]].slot).collect())
                    .collect(),
            );
        }
        for g in groups {
            let m = self.emit(qi, region, g, now_ms);
            out.push(m);
        }
    }

    /// Removes a group's tickets from the pool and builds its [`Match`].
    fn emit(&mut self, qi: usize, region: u16, slots: Vec<Vec<u32>>, now_ms: u64) -> Match {
        let q = &mut self.queues[qi];
        let mut teams = Vec::with_capacity(slots.len());
        let mut tickets = Vec::new();
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        let mut cross = false;
        for team in slots {
            let mut t = Team {
                tickets: Vec::with_capacity(team.len()),
                players: Vec::with_capacity(q.cfg.team_size as usize),
                mean_rating: 0.0,
            };
            let mut total = 0.0;
            for slot in team {
                let e = q.pool.remove(slot).expect("grouped ticket is in the pool");
                self.by_id.remove(&e.id);
                lo = lo.min(e.rating);
                hi = hi.max(e.rating);
                cross |= e.home != region;
                total += e.rating * f64::from(e.size());
                let wait = now_ms.saturating_sub(e.created_ms);
                tickets.push(MatchedTicket {
                    id: e.id,
                    home_region: self.regions[e.home as usize].clone(),
                    wait_ms: wait,
                    expansion: step_of(&q.cfg, &self.widening, qi, &e, now_ms) as u32,
                });
                observe(&q.cfg, &mut self.widening, qi, &e, wait);
                t.tickets.push(e.id);
                t.players.extend(e.players);
            }
            t.mean_rating = total / f64::from(q.cfg.team_size);
            teams.push(t);
        }
        let means = teams.iter().map(|t| t.mean_rating);
        let imbalance = means.clone().fold(f64::NEG_INFINITY, f64::max) - means.fold(f64::INFINITY, f64::min);
        let id = MatchId(self.next_match);
        self.next_match = self.next_match.wrapping_add(1);
        Match {
            id,
            queue: q.cfg.name.clone(),
            region: self.regions[region as usize].clone(),
            teams,
            tickets,
            skill_spread: hi - lo,
            team_imbalance: imbalance,
            cross_region: cross,
            created_ms: now_ms,
            server: None,
            left: Vec::new(),
        }
    }
}

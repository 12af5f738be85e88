//! Backfill: a match in progress asks for replacement players (a player left,
//! a server has open seats), and waiting tickets are placed into the existing
//! match instead of a new one.
//!
//! # Life of a request
//!
//! A game server (through the gateway's admin API, `POST
//! /matches/{match}/backfill`) or a backend service
//! ([`Matchmaker::create_backfill`](super::Matchmaker::create_backfill)) asks
//! for `slots[t]` players on team `t` of a committed match, for at most
//! `ttl_ms`. The request is stored (versioned record, see
//! [`keys`](super::keys)) in the partition of the match's queue, region and
//! skill band (the band of the match's mean rating), and is `open` until it is
//! `filled`, `cancelled` ([`Matchmaker::cancel_backfill`](super::Matchmaker::cancel_backfill))
//! or `expired` (its lifetime passed; it is then never filled). All four
//! states but `open` are final.
//!
//! # Served before new matches
//!
//! The worker holding the partition loads its open requests with the
//! partition's tickets each round and runs
//! [`MatchCore::run_round_with_backfills`]: requests are filled (oldest first)
//! before any new match of the round is formed, so a waiting ticket that fits
//! an open seat goes to the match in progress. A request is filled whole or
//! not at all in a round: its open seats are taken closest rating first (to the
//! match's mean rating), each ticket only if the distance is within the
//! ticket's own current window (the same widening as for new matches) and its
//! whole party fits the team with the most open seats.
//!
//! # Exactly once
//!
//! The fill commit ([`Matchmaker::commit_backfill`](super::Matchmaker::commit_backfill))
//! is one transaction that reads the worker's lease (fencing), the request
//! record (must be `open` and unexpired), every ticket record (must be
//! `waiting`) and the match record; it then marks the tickets matched into the
//! existing match, removes the players the request named as `leaving` from the
//! match record's teams (recording them in `Match::left`), adds the new
//! players to the teams, and marks the request `filled`: the match record's
//! roster is the match as it is after the fill. Two workers racing for one request, a fill racing a
//! cancel, or two requests of one match filled at once therefore conflict and
//! exactly one wins. The player entries turn `matched` naming the existing
//! match, so the gateway pushes `MatchFound` for that match to the backfilled
//! players (the wire is unchanged: `MatchFound.match` carries the match's id
//! and teams as they are now).
//!
//! # Bounds
//!
//! Hostile or buggy callers are bounded: at most
//! [`MAX_OPEN_PER_MATCH`] open requests per match and [`MAX_OPEN_PER_POOL`]
//! per pool, a lifetime of [`MIN_TTL_MS`]..=[`MAX_TTL_MS`], one entry of
//! `slots` per team, each at most the team size, at least one seat in total;
//! `leaving` names at most [`MAX_LEAVING`] distinct players, each a player of
//! the match when the request is made ([`check_leaving`]).
//!
//! Team mean ratings are not lowered when a player leaves (the match record
//! keeps ticket ratings, not per-player ones); they move only with the
//! ratings of the tickets that join.

use std::cmp::Reverse;

use serde::{Deserialize, Serialize};

use super::core::MatchCore;
use super::types::{Match, MatchId, MatchedTicket, TicketId};

/// Open backfill requests one match may have at once.
pub const MAX_OPEN_PER_MATCH: usize = 4;
/// Open backfill requests one pool may have at once.
pub const MAX_OPEN_PER_POOL: i64 = 10_000;
/// Shortest lifetime of a request, milliseconds.
pub const MIN_TTL_MS: u64 = 1_000;
/// Longest lifetime of a request, milliseconds (10 minutes).
pub const MAX_TTL_MS: u64 = 600_000;
/// Lifetime when the caller gives none, milliseconds.
pub const DEFAULT_TTL_MS: u64 = 60_000;
/// Most players one request may name as leaving (the largest match).
pub const MAX_LEAVING: usize = super::config::MAX_MATCH_PLAYERS as usize;
/// Tickets looked at on each side of the target rating per request and round.
const NEAR: usize = 64;

/// A backfill request's id: 64 bits, shown as 16 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BackfillId(pub u64);

impl std::fmt::Display for BackfillId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for BackfillId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(BackfillId)
    }
}

/// An open backfill request as the core sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backfill {
    /// The request.
    pub id: BackfillId,
    /// The match in progress.
    pub match_id: MatchId,
    /// The match's queue.
    pub queue: String,
    /// The region the match is played in: replacements are tickets whose home
    /// is this region.
    pub region: String,
    /// The rating replacements are sought around (the match's mean ticket
    /// rating).
    pub rating: f64,
    /// Open seats per team, in the match's team order.
    pub slots: Vec<u32>,
    /// When the request was made, milliseconds.
    pub created_ms: u64,
}

impl Backfill {
    /// The request for `slots` in match `m` (its mean ticket rating is the target).
    pub fn for_match(id: BackfillId, m: &Match, slots: Vec<u32>, now_ms: u64) -> Self {
        let players: usize = m.teams.iter().map(|t| t.players.len()).sum();
        let total: f64 = m
            .teams
            .iter()
            .map(|t| t.mean_rating * t.players.len() as f64)
            .sum();
        Backfill {
            id,
            match_id: m.id,
            queue: m.queue.clone(),
            region: m.region.clone(),
            rating: if players == 0 { 0.0 } else { total / players as f64 },
            slots,
            created_ms: now_ms,
        }
    }
}

/// One ticket placed into a backfill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackfillPlacement {
    /// The team (index into the match's teams).
    pub team: u32,
    /// The ticket's players.
    pub players: Vec<String>,
    /// The ticket's rating.
    pub rating: f64,
    /// The ticket, with its wait and expansion step.
    pub ticket: MatchedTicket,
}

/// A request the core filled: every open seat has a ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct BackfillFill {
    /// The request.
    pub backfill: BackfillId,
    /// The match in progress.
    pub match_id: MatchId,
    /// The tickets placed.
    pub placed: Vec<BackfillPlacement>,
}

impl MatchCore {
    /// Fills `backfills` (oldest first) from the pool at `now_ms` (see the
    /// [module docs](super::backfill)); the tickets placed leave the pool.
    /// Requests of unknown queues or regions, or whose `slots` do not have one
    /// entry per team, are skipped.
    pub fn run_backfills(&mut self, now_ms: u64, backfills: &[Backfill]) -> Vec<BackfillFill> {
        let mut order: Vec<&Backfill> = backfills.iter().collect();
        order.sort_by_key(|b| (b.created_ms, b.id));
        order
            .into_iter()
            .filter_map(|b| self.fill_one(now_ms, b))
            .collect()
    }

    /// A round that serves backfill requests before new matches:
    /// [`run_backfills`](Self::run_backfills), then
    /// [`run_round`](Self::run_round) on the tickets left.
    pub fn run_round_with_backfills(
        &mut self,
        now_ms: u64,
        backfills: &[Backfill],
    ) -> (Vec<BackfillFill>, Vec<Match>) {
        let fills = self.run_backfills(now_ms, backfills);
        (fills, self.run_round(now_ms))
    }

    fn fill_one(&mut self, now_ms: u64, b: &Backfill) -> Option<BackfillFill> {
        let qi = *self.queue_idx.get(&b.queue)? as usize;
        let region = *self.region_idx.get(&b.region)?;
        let q = &self.queues[qi];
        if b.slots.len() != q.cfg.teams as usize || b.slots.iter().all(|&s| s == 0) || !b.rating.is_finite() {
            return None;
        }
        let (below, above) = q.pool.region_near(region, b.rating, NEAR);
        let mut cands: Vec<(f64, u32)> = below
            .into_iter()
            .chain(above)
            .filter_map(|slot| {
                let e = q.pool.get(slot);
                let step = q.cfg.step_at(now_ms.saturating_sub(e.created_ms));
                let window =
                    q.cfg.expansions[step].max_skill_diff + q.cfg.uncertainty_widening * e.uncertainty;
                let d = (e.rating - b.rating).abs();
                (d <= window).then_some((d, slot))
            })
            .collect();
        cands.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut open = b.slots.clone();
        let mut picks: Vec<(u32, u32)> = Vec::new();
        for (_, slot) in cands {
            let size = q.pool.get(slot).size();
            let team = (0..open.len())
                .filter(|&t| open[t] >= size)
                .max_by_key(|&t| (open[t], Reverse(t)));
            if let Some(t) = team {
                open[t] -= size;
                picks.push((t as u32, slot));
                if open.iter().all(|&o| o == 0) {
                    break;
                }
            }
        }
        if open.iter().any(|&o| o > 0) {
            return None;
        }
        let q = &mut self.queues[qi];
        let mut placed = Vec::with_capacity(picks.len());
        for (team, slot) in picks {
            let e = q.pool.remove(slot).expect("picked ticket is in the pool");
            self.by_id.remove(&e.id);
            let wait = now_ms.saturating_sub(e.created_ms);
            placed.push(BackfillPlacement {
                team,
                rating: e.rating,
                ticket: MatchedTicket {
                    id: e.id,
                    home_region: self.regions[e.home as usize].clone(),
                    wait_ms: wait,
                    expansion: q.cfg.step_at(wait) as u32,
                },
                players: e.players,
            });
        }
        Some(BackfillFill {
            backfill: b.id,
            match_id: b.match_id,
            placed,
        })
    }
}

/// Adds `fill`'s tickets to match `m` (teams' players, tickets, mean ratings
/// and spread updated).
pub(crate) fn apply_fill(m: &mut Match, fill: &BackfillFill) {
    for p in &fill.placed {
        let Some(team) = m.teams.get_mut(p.team as usize) else {
            continue;
        };
        let before = team.players.len() as f64;
        let added = p.players.len() as f64;
        team.mean_rating = (team.mean_rating * before + p.rating * added) / (before + added);
        team.tickets.push(p.ticket.id);
        team.players.extend(p.players.iter().cloned());
        m.tickets.push(p.ticket.clone());
        m.cross_region |= p.ticket.home_region != m.region;
    }
}

/// Checks a request's `leaving` list against match `m`: at most
/// [`MAX_LEAVING`] entries, no player twice, each a player of `m`. The error
/// names the offending entry by index (never echoes the caller's text).
pub fn check_leaving(m: &Match, leaving: &[String]) -> Result<(), String> {
    if leaving.len() > MAX_LEAVING {
        return Err(format!(
            "leaving names {} players; at most {MAX_LEAVING}",
            leaving.len()
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(leaving.len());
    for (i, p) in leaving.iter().enumerate() {
        if !seen.insert(p.as_str()) {
            return Err(format!("leaving[{i}] repeats a player"));
        }
        if m.team_of(p).is_none() {
            return Err(format!("leaving[{i}] is not a player of the match"));
        }
    }
    Ok(())
}

/// Takes the `leaving` players still on a team off it and records them in
/// `m.left` (a player already gone, e.g. named by an earlier fill, is skipped).
pub(crate) fn apply_leaving(m: &mut Match, leaving: &[String]) {
    for p in leaving {
        let Some(t) = m.team_of(p) else {
            continue;
        };
        m.teams[t].players.retain(|x| x != p);
        if !m.left.contains(p) {
            m.left.push(p.clone());
        }
    }
}

/// The tickets of one fill (recorded in the filled request).
pub(crate) fn fill_tickets(fill: &BackfillFill) -> Vec<TicketId> {
    fill.placed.iter().map(|p| p.ticket.id).collect()
}

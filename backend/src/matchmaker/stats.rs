//! Matchmaker statistics as plain counters, for tests, the simulator and
//! operators' status: matches, tickets, players, cross-region matches and
//! expansion steps used, per queue and region. Distributions (waits, skill
//! spread) are recorded as metrics histograms instead ([`super::metrics`]).

use std::collections::BTreeMap;

use serde::Serialize;

use super::types::Match;

/// Statistics of one queue in one region (the region a match was played in).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueRegionStats {
    /// Matches formed.
    pub matches: u64,
    /// Tickets matched.
    pub tickets: u64,
    /// Players matched.
    pub players: u64,
    /// Matches with at least one ticket from another home region.
    pub cross_region_matches: u64,
    /// Matched tickets per expansion step in force when matched (index = step).
    pub expansions_used: Vec<u64>,
}

/// Statistics by `(queue, region)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MatchStats {
    /// Per queue and match region.
    pub by_queue_region: BTreeMap<(String, String), QueueRegionStats>,
}

impl MatchStats {
    /// Records a formed (committed) match.
    pub fn record(&mut self, m: &Match) {
        let s = self
            .by_queue_region
            .entry((m.queue.clone(), m.region.clone()))
            .or_default();
        s.matches += 1;
        s.tickets += m.tickets.len() as u64;
        s.players += m.teams.iter().map(|t| t.players.len() as u64).sum::<u64>();
        s.cross_region_matches += u64::from(m.cross_region);
        for t in &m.tickets {
            let e = t.expansion as usize;
            if s.expansions_used.len() <= e {
                s.expansions_used.resize(e + 1, 0);
            }
            s.expansions_used[e] += 1;
        }
    }

    /// Adds another set of statistics (e.g. from several workers).
    pub fn merge(&mut self, other: &MatchStats) {
        for (k, o) in &other.by_queue_region {
            let s = self.by_queue_region.entry(k.clone()).or_default();
            s.matches += o.matches;
            s.tickets += o.tickets;
            s.players += o.players;
            s.cross_region_matches += o.cross_region_matches;
            if s.expansions_used.len() < o.expansions_used.len() {
                s.expansions_used.resize(o.expansions_used.len(), 0);
            }
            for (a, b) in s.expansions_used.iter_mut().zip(&o.expansions_used) {
                *a += b;
            }
        }
    }
}

//! Matchmaker statistics as plain structs the gateway turns into metrics
//! (the backend does not depend on the `metrics` crate): pool depth, wait-time
//! histograms per queue and region, match quality (skill spread), expansion
//! steps used, and cross-region matches.

use std::collections::BTreeMap;

use serde::Serialize;

use super::types::Match;

/// Upper bounds (inclusive) of [`Histogram`] buckets for waits, milliseconds; a
/// last bucket counts everything above.
pub const WAIT_BUCKETS_MS: &[u64] = &[
    250, 500, 1_000, 2_000, 3_000, 5_000, 8_000, 12_000, 20_000, 30_000, 60_000, 120_000, 300_000,
];
/// Upper bounds (inclusive) of skill-spread buckets, rating points.
pub const SPREAD_BUCKETS: &[u64] = &[10, 25, 50, 100, 150, 200, 300, 400, 600, 1_000];

/// A fixed-bucket histogram (Prometheus-style cumulative export is up to the
/// caller).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    /// Bucket upper bounds (inclusive).
    pub bounds: &'static [u64],
    /// Counts per bucket; one more than `bounds` (the overflow bucket).
    pub counts: Vec<u64>,
    /// Number of samples.
    pub count: u64,
    /// Sum of samples.
    pub sum: u64,
    /// Largest sample.
    pub max: u64,
}

impl Histogram {
    /// An empty histogram with the given bucket bounds.
    pub fn new(bounds: &'static [u64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            count: 0,
            sum: 0,
            max: 0,
        }
    }

    /// Adds a sample.
    pub fn record(&mut self, v: u64) {
        let i = self.bounds.partition_point(|&b| b < v);
        self.counts[i] += 1;
        self.count += 1;
        self.sum = self.sum.saturating_add(v);
        self.max = self.max.max(v);
    }

    /// An upper bound of the `q` quantile (0..=1): the bound of the bucket it
    /// falls in (`max` for the overflow bucket); 0 when empty.
    pub fn quantile_upper_bound(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return self.bounds.get(i).copied().unwrap_or(self.max).min(self.max);
            }
        }
        self.max
    }

    /// Adds another histogram with the same bounds.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum = self.sum.saturating_add(other.sum);
        self.max = self.max.max(other.max);
    }
}

/// Statistics of one queue in one region (the region a match was played in;
/// waits are per ticket).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueRegionStats {
    /// Matches formed.
    pub matches: u64,
    /// Tickets matched.
    pub tickets: u64,
    /// Players matched.
    pub players: u64,
    /// Matches with at least one ticket from another home region.
    pub cross_region_matches: u64,
    /// Wait of each matched ticket, milliseconds.
    pub wait_ms: Histogram,
    /// Skill spread of each match, rating points.
    pub skill_spread: Histogram,
    /// Matched tickets per expansion step in force when matched (index = step).
    pub expansions_used: Vec<u64>,
}

impl Default for QueueRegionStats {
    fn default() -> Self {
        QueueRegionStats {
            matches: 0,
            tickets: 0,
            players: 0,
            cross_region_matches: 0,
            wait_ms: Histogram::new(WAIT_BUCKETS_MS),
            skill_spread: Histogram::new(SPREAD_BUCKETS),
            expansions_used: Vec::new(),
        }
    }
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
        s.skill_spread.record(m.skill_spread.max(0.0).round() as u64);
        for t in &m.tickets {
            s.wait_ms.record(t.wait_ms);
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
            s.wait_ms.merge(&o.wait_ms);
            s.skill_spread.merge(&o.skill_spread);
            if s.expansions_used.len() < o.expansions_used.len() {
                s.expansions_used.resize(o.expansions_used.len(), 0);
            }
            for (a, b) in s.expansions_used.iter_mut().zip(&o.expansions_used) {
                *a += b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles() {
        let mut h = Histogram::new(WAIT_BUCKETS_MS);
        assert_eq!(h.quantile_upper_bound(0.5), 0);
        for v in [100, 200, 900, 4_000, 400_000] {
            h.record(v);
        }
        assert_eq!(h.count, 5);
        assert_eq!(h.quantile_upper_bound(0.4), 250);
        assert_eq!(h.quantile_upper_bound(0.6), 1_000);
        assert_eq!(h.quantile_upper_bound(1.0), 400_000);
        let mut g = Histogram::new(WAIT_BUCKETS_MS);
        g.merge(&h);
        assert_eq!(g, h);
    }
}

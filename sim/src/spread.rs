//! Match quality by wait, for model mode: every matched ticket's skill spread
//! (the spread of its match) binned by its wait, so the report can say what
//! skill spread the players at each wait percentile got (the fast majority and
//! the long tail), plus the deadline outcomes.

/// Bin width, milliseconds of wait.
const BIN_MS: u64 = 100;

/// Spread statistics of one wait bin.
#[derive(Debug, Clone, Copy, Default)]
struct Bin {
    tickets: u64,
    spread_sum: f64,
    spread_max: f64,
}

/// Skill spread of matched tickets by wait, and tickets that ended without a
/// match.
#[derive(Debug, Default)]
pub struct SpreadByWait {
    bins: Vec<Bin>,
    no_match: u64,
    max_wait_ms: u64,
}

impl SpreadByWait {
    /// A ticket matched after `wait_ms` into a match of skill spread `spread`.
    pub fn matched(&mut self, wait_ms: u64, spread: f64) {
        let i = (wait_ms / BIN_MS) as usize;
        if self.bins.len() <= i {
            self.bins.resize(i + 1, Bin::default());
        }
        let b = &mut self.bins[i];
        b.tickets += 1;
        b.spread_sum += spread;
        b.spread_max = b.spread_max.max(spread);
        self.max_wait_ms = self.max_wait_ms.max(wait_ms);
    }

    /// A ticket that ended without a match after `wait_ms`.
    pub fn no_match(&mut self, wait_ms: u64) {
        self.no_match += 1;
        self.max_wait_ms = self.max_wait_ms.max(wait_ms);
    }

    /// Tickets that ended without a match.
    pub fn no_match_count(&self) -> u64 {
        self.no_match
    }

    /// Mean skill spread over every matched ticket (`None`: none matched).
    pub fn mean_spread(&self) -> Option<f64> {
        let (n, sum) = self
            .bins
            .iter()
            .fold((0u64, 0.0), |(n, s), b| (n + b.tickets, s + b.spread_sum));
        (n > 0).then(|| sum / n as f64)
    }

    /// Lines for the run's notes: for the matched tickets' wait bands
    /// (≤ p50, p50–p95, p95–p99, p99–p99.9, > p99.9 of the matched waits),
    /// each band's wait range and its tickets' mean and worst skill spread.
    pub fn report(&self) -> Vec<String> {
        let total: u64 = self.bins.iter().map(|b| b.tickets).sum();
        if total == 0 {
            return vec!["Skill spread by wait: no matches.".into()];
        }
        let mut out = vec![format!(
            "Skill spread by wait (matched tickets, {BIN_MS} ms bins; mean spread {:.1}; {} tickets ended without a match at the deadline; longest wait {:.1} s):",
            self.mean_spread().unwrap_or(0.0),
            self.no_match,
            self.max_wait_ms as f64 / 1000.0
        )];
        let bands = [
            (0.0, 0.5, "<= p50"),
            (0.5, 0.95, "p50-p95"),
            (0.95, 0.99, "p95-p99"),
            (0.99, 0.999, "p99-p99.9"),
            (0.999, 1.0, "> p99.9"),
        ];
        for (lo, hi, name) in bands {
            let (from, to) = (
                (lo * total as f64).ceil() as u64,
                (hi * total as f64).ceil() as u64,
            );
            let (mut seen, mut n, mut sum, mut max) = (0u64, 0u64, 0.0, 0.0f64);
            let (mut w_lo, mut w_hi) = (None, 0usize);
            for (i, b) in self.bins.iter().enumerate() {
                // Bins are attributed whole to the band their first ticket falls in.
                if b.tickets > 0 && seen >= from && seen < to.max(from + 1) {
                    n += b.tickets;
                    sum += b.spread_sum;
                    max = max.max(b.spread_max);
                    w_lo.get_or_insert(i);
                    w_hi = i;
                }
                seen += b.tickets;
            }
            if n > 0 {
                out.push(format!(
                    "  {name}: waits {:.1}-{:.1} s, {n} tickets, mean spread {:.1}, max spread {:.0}",
                    w_lo.unwrap_or(0) as f64 * BIN_MS as f64 / 1000.0,
                    (w_hi + 1) as f64 * BIN_MS as f64 / 1000.0,
                    sum / n as f64,
                    max
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_split_the_waits_and_average_the_spread() {
        let mut s = SpreadByWait::default();
        for i in 0..1000u64 {
            s.matched(i * 100, if i < 990 { 10.0 } else { 500.0 });
        }
        s.no_match(120_000);
        let r = s.report();
        assert!(r[0].contains("1 tickets ended without a match"), "{r:?}");
        assert!(r[0].contains("longest wait 120.0 s"), "{r:?}");
        assert!(
            r.iter()
                .any(|l| l.starts_with("  <= p50: waits 0.0-50.0 s, 500 tickets, mean spread 10.0")),
            "{r:?}"
        );
        assert!(
            r.iter()
                .any(|l| l.starts_with("  p99-p99.9:") && l.contains("max spread 500")),
            "{r:?}"
        );
        assert!((s.mean_spread().unwrap() - (990.0 * 10.0 + 10.0 * 500.0) / 1000.0).abs() < 1e-9);
    }
}

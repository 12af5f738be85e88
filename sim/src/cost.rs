//! What concurrent players cost the gateway in a live run: the cost-per-CCU
//! figure (issue 21) from the timeline's gateway samples.
//!
//! - **CPU-seconds per player-minute**: the gateway's CPU over the run (each
//!   sample's `cpu_cores` times the interval it covers) divided by the
//!   player-minutes served in the same intervals (players logged in, averaged
//!   over each interval's two ends). Over a whole launch curve this includes
//!   the login storm, the hold and the drain in the run's own proportions;
//!   [`GatewayCost::steady`] is the same over the samples where the population
//!   held within 1% of its peak, the figure to scale a fleet by.
//! - **RSS per player** at the sample with the most players (the gateway's
//!   whole RSS, store and matchmaker included, divided by the players).
//!
//! Runs whose gateway the sim cannot see (no `--local`, `--gateway-pid` or
//! `--gateway-metrics`) have no gateway samples and no cost.

use serde::{Deserialize, Serialize};

use crate::results::Sample;

/// The gateway's cost per concurrent player over a live run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GatewayCost {
    /// Over every interval with a CPU reading.
    pub run: CpuPerPlayer,
    /// Over the intervals whose both ends held at least 99% of the peak
    /// population (absent if there were none).
    pub steady: Option<CpuPerPlayer>,
    /// Most players at one sample, and the gateway's RSS then.
    pub peak_players: u64,
    pub rss_bytes_at_peak: Option<u64>,
}

/// CPU per player-minute over a set of intervals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuPerPlayer {
    /// The gateway's CPU-seconds in these intervals.
    pub cpu_s: f64,
    /// Player-minutes served in these intervals.
    pub player_minutes: f64,
    /// Seconds of wall time the intervals cover.
    pub span_s: f64,
}

impl CpuPerPlayer {
    /// Milliseconds of gateway CPU per player-minute.
    pub fn cpu_ms_per_player_minute(&self) -> f64 {
        1000.0 * self.cpu_s / self.player_minutes
    }
}

impl GatewayCost {
    /// KiB of gateway RSS per player at the peak.
    pub fn rss_kib_per_player(&self) -> Option<f64> {
        let rss = self.rss_bytes_at_peak? as f64;
        (self.peak_players > 0).then(|| rss / 1024.0 / self.peak_players as f64)
    }

    /// The cost of a run's timeline, if it has gateway CPU readings and served
    /// at least one player-minute.
    pub fn of(timeline: &[Sample]) -> Option<GatewayCost> {
        let players = |s: &Sample| s.regions.iter().map(|r| r.players).sum::<u64>();
        let (peak_at, peak_players) = timeline
            .iter()
            .enumerate()
            .map(|(i, s)| (i, players(s)))
            .max_by_key(|&(i, p)| (p, std::cmp::Reverse(i)))?;
        let floor = peak_players as f64 * 0.99;
        let mut run = CpuPerPlayer::default();
        let mut steady = CpuPerPlayer::default();
        for pair in timeline.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let Some(cores) = b.gateway.as_ref().and_then(|g| g.cpu_cores) else {
                continue;
            };
            let dt = b.t_s - a.t_s;
            if dt <= 0.0 {
                continue;
            }
            let (pa, pb) = (players(a) as f64, players(b) as f64);
            let interval = CpuPerPlayer {
                cpu_s: cores * dt,
                player_minutes: (pa + pb) / 2.0 * dt / 60.0,
                span_s: dt,
            };
            run.add(interval);
            if peak_players > 0 && pa >= floor && pb >= floor {
                steady.add(interval);
            }
        }
        (run.player_minutes > 0.0).then(|| GatewayCost {
            run,
            steady: (steady.player_minutes > 0.0).then_some(steady),
            peak_players,
            rss_bytes_at_peak: timeline[peak_at].gateway.as_ref().and_then(|g| g.rss_bytes),
        })
    }
}

impl CpuPerPlayer {
    fn add(&mut self, o: CpuPerPlayer) {
        self.cpu_s += o.cpu_s;
        self.player_minutes += o.player_minutes;
        self.span_s += o.span_s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::GatewaySample;
    use crate::results::RegionSample;

    fn sample(t_s: f64, players: u64, cores: Option<f64>, rss: u64) -> Sample {
        Sample {
            t_s,
            regions: vec![
                RegionSample {
                    players: players / 2,
                    ..Default::default()
                },
                RegionSample {
                    players: players - players / 2,
                    ..Default::default()
                },
            ],
            gateway: Some(GatewaySample {
                cpu_cores: cores,
                rss_bytes: Some(rss),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn cpu_per_player_minute_over_the_run_and_the_steady_part() {
        // A ramp 0 → 1,000 players over 60 s at 0.5 cores, then 120 s held at
        // 1,000 players at 0.25 cores, then 60 s down to 0 at 0.5 cores.
        let tl = vec![
            sample(0.0, 0, None, 100 << 20),
            sample(60.0, 1000, Some(0.5), 200 << 20),
            sample(120.0, 1000, Some(0.25), 210 << 20),
            sample(180.0, 1000, Some(0.25), 220 << 20),
            sample(240.0, 0, Some(0.5), 150 << 20),
        ];
        let c = GatewayCost::of(&tl).unwrap();
        // CPU: 30 + 15 + 15 + 30 = 90 s; player-minutes: 500 + 1000 + 1000 + 500.
        assert!((c.run.cpu_s - 90.0).abs() < 1e-9);
        assert!((c.run.player_minutes - 3000.0).abs() < 1e-9);
        assert!((c.run.cpu_ms_per_player_minute() - 30.0).abs() < 1e-9);
        let s = c.steady.unwrap();
        assert!((s.span_s - 120.0).abs() < 1e-9);
        assert!((s.cpu_ms_per_player_minute() - 15.0).abs() < 1e-9);
        // The first sample with the peak population is the one measured.
        assert_eq!(c.peak_players, 1000);
        assert_eq!(c.rss_bytes_at_peak, Some(200 << 20));
        assert!((c.rss_kib_per_player().unwrap() - 204.8).abs() < 1e-9);
    }

    #[test]
    fn no_gateway_readings_or_no_players_give_no_cost() {
        let blind: Vec<Sample> = (0..5)
            .map(|i| Sample {
                gateway: None,
                ..sample(i as f64 * 2.0, 100, None, 0)
            })
            .collect();
        assert_eq!(GatewayCost::of(&blind), None);
        let empty: Vec<Sample> = (0..5).map(|i| sample(i as f64 * 2.0, 0, Some(0.1), 1)).collect();
        assert_eq!(GatewayCost::of(&empty), None);
        assert_eq!(GatewayCost::of(&[]), None);
    }
}

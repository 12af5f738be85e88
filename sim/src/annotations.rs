//! What the report draws over and beside the timeline, stored in
//! `result.json` so that `outpost-sim render` needs nothing but the result:
//!
//! - [`Phase`]: the scenario's named phases (queue release, retry storm,
//!   spike, drain) per region, shaded and labelled on every chart over time;
//! - [`GatewaySample`]: the gateway's own CPU and resident memory at one
//!   sample time (live mode, when the sim can see the gateway: see
//!   [`crate::gateway_probe`]);
//! - [`ModelTail`]: model mode's peak concurrency and its worst tickets.

use serde::{Deserialize, Serialize};

use crate::curve::Segment;
use crate::scenario::Scenario;

/// One phase of a region's curve worth marking on a chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// The region (a name of `Results::regions`).
    pub region: String,
    /// The segment kind (`queue_release`, `retry_storm`, `spike`, `drain`).
    pub kind: String,
    /// Start and end, seconds from the start of the run.
    pub start_s: f64,
    pub end_s: f64,
    /// A short label, e.g. `retry storm 40% lockstep`.
    pub label: String,
}

/// The phases of every region's curve, in time order. Ramps and holds are the
/// background, not phases.
pub fn phases(scenario: &Scenario) -> Vec<Phase> {
    let mut out = Vec::new();
    for r in &scenario.regions {
        let mut t = 0.0;
        for seg in &r.curve {
            let d = seg.duration_s();
            let label = match seg {
                Segment::QueueRelease { .. } => Some("queue release".to_owned()),
                Segment::RetryStorm { share, mode, .. } => Some(format!(
                    "retry storm {:.0}% {}",
                    share * 100.0,
                    match mode {
                        crate::curve::StormMode::Lockstep => "lockstep",
                        crate::curve::StormMode::Jitter => "jitter",
                    }
                )),
                Segment::Spike { .. } => Some("spike".to_owned()),
                Segment::Drain { .. } => Some("drain".to_owned()),
                Segment::Ramp { .. } | Segment::Hold { .. } => None,
            };
            if let Some(label) = label.filter(|_| d > 0.0) {
                out.push(Phase {
                    region: r.name.clone(),
                    kind: seg.kind().to_owned(),
                    start_s: t,
                    end_s: t + d,
                    label,
                });
            }
            t += d;
        }
    }
    out.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    out
}

/// The gateway's own figures at one sample time (live mode).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewaySample {
    /// CPU used over the last interval, in cores (1.0 = one core busy).
    pub cpu_cores: Option<f64>,
    /// Resident memory, bytes.
    pub rss_bytes: Option<u64>,
}

/// Where the gateway figures of a run come from, and what they cover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewaySource {
    /// How they were read: `metrics http://…/metrics`, `/proc/PID`, or
    /// `in-process threads`.
    pub how: String,
    /// What the RSS covers, in words (an in-process gateway shares the sim's
    /// memory: its RSS is the whole process's).
    pub rss_scope: String,
}

/// One of the worst-waiting tickets of a model run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorstTicket {
    /// Seconds the ticket waited.
    pub wait_s: f64,
    /// Virtual time it was matched, seconds from the start.
    pub matched_at_s: f64,
    /// Its home region, and where the match was played.
    pub home_region: String,
    pub match_region: String,
    /// The player's rating.
    pub rating: f64,
    /// The expansion step in force when it was matched (0-based).
    pub expansion: u32,
    /// Highest minus lowest rating of the match it ended in.
    pub match_skill_spread: f64,
}

/// Model mode's tail: peak concurrency and the worst tickets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelTail {
    /// Most players online at once (all regions), over the sampled timeline.
    pub peak_players: u64,
    /// Virtual time of that peak, seconds.
    pub peak_at_s: f64,
    /// The longest waits, longest first (at most [`ModelTail::KEEP`]).
    pub worst_tickets: Vec<WorstTicket>,
}

impl ModelTail {
    /// How many worst tickets are kept.
    pub const KEEP: usize = 5;

    /// Whether a ticket that waited `wait_s` would be kept (cheap: check
    /// before building a [`WorstTicket`]).
    pub fn keeps(&self, wait_s: f64) -> bool {
        self.worst_tickets.len() < Self::KEEP || self.worst_tickets.last().is_some_and(|w| w.wait_s < wait_s)
    }

    /// Offers a matched ticket; keeps it if it is among the worst so far.
    pub fn offer(&mut self, t: WorstTicket) {
        if !self.keeps(t.wait_s) {
            return;
        }
        let at = self.worst_tickets.partition_point(|w| w.wait_s >= t.wait_s);
        self.worst_tickets.insert(at, t);
        self.worst_tickets.truncate(Self::KEEP);
    }
}

/// Most players online at once over the timeline (all regions), and when.
pub fn peak_players(timeline: &[crate::results::Sample]) -> (u64, f64) {
    timeline
        .iter()
        .map(|s| (s.regions.iter().map(|r| r.players).sum::<u64>(), s.t_s))
        .fold((0, 0.0), |best, x| if x.0 > best.0 { x } else { best })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(wait_s: f64) -> WorstTicket {
        WorstTicket {
            wait_s,
            matched_at_s: 0.0,
            home_region: "eu".into(),
            match_region: "eu".into(),
            rating: 1500.0,
            expansion: 0,
            match_skill_spread: 0.0,
        }
    }

    #[test]
    fn keeps_the_longest_waits_longest_first() {
        let mut tail = ModelTail::default();
        for w in [3.0, 9.0, 1.0, 7.0, 5.0, 8.0, 2.0, 10.0] {
            tail.offer(ticket(w));
        }
        let waits: Vec<f64> = tail.worst_tickets.iter().map(|t| t.wait_s).collect();
        assert_eq!(waits, [10.0, 9.0, 8.0, 7.0, 5.0]);
    }

    #[test]
    fn phases_come_from_the_curve_segments() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/mini-launch.toml");
        let s = Scenario::from_file(&path).unwrap();
        let p = phases(&s);
        let storm = p.iter().find(|p| p.kind == "retry_storm").unwrap();
        assert_eq!(
            (storm.region.as_str(), storm.start_s, storm.end_s),
            ("eu-west", 35.0, 50.0)
        );
        assert_eq!(storm.label, "retry storm 40% lockstep");
        assert_eq!(p.iter().filter(|p| p.kind == "spike").count(), 2);
        assert!(p.iter().all(|p| p.kind != "ramp" && p.kind != "hold"));
        assert!(p.windows(2).all(|w| w[0].start_s <= w[1].start_s));
    }
}

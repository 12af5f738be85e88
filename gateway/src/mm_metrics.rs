//! Matchmaking metrics in Prometheus text: pool depth per queue and region (read
//! from the store at scrape time, so it covers every gateway's tickets), and what
//! this gateway's workers matched: matches, players, cross-region matches, wait
//! and skill-spread histograms, expansion steps used, commit refusals.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use outpost_backend::matchmaker::{Histogram, Matchmaker, QueueRegionStats, WorkerStats};
use outpost_backend::store::AnyStore;

fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let mut cumulative = 0;
    for (bound, count) in h.bounds.iter().zip(&h.counts) {
        cumulative += count;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
}

fn merge(into: &mut QueueRegionStats, s: &QueueRegionStats) {
    into.matches += s.matches;
    into.tickets += s.tickets;
    into.players += s.players;
    into.cross_region_matches += s.cross_region_matches;
    for (a, b) in [
        (&mut into.wait_ms, &s.wait_ms),
        (&mut into.skill_spread, &s.skill_spread),
    ] {
        if a.counts.is_empty() {
            *a = b.clone();
            continue;
        }
        for (x, y) in a.counts.iter_mut().zip(&b.counts) {
            *x += y;
        }
        a.count += b.count;
        a.sum += b.sum;
        a.max = a.max.max(b.max);
    }
    if into.expansions_used.len() < s.expansions_used.len() {
        into.expansions_used.resize(s.expansions_used.len(), 0);
    }
    for (x, y) in into.expansions_used.iter_mut().zip(&s.expansions_used) {
        *x += y;
    }
}

/// Renders the matchmaking metrics.
pub async fn render(mm: &Matchmaker<AnyStore>, workers: &[Arc<Mutex<WorkerStats>>]) -> String {
    let mut out = String::new();
    out.push_str("# TYPE outpost_mm_pool_depth gauge\n");
    let cfg = mm.config();
    for q in &cfg.queues {
        for r in &cfg.regions {
            if let Ok(depth) = mm.depth(&q.name, &r.name).await {
                let _ = writeln!(
                    out,
                    "outpost_mm_pool_depth{{queue=\"{}\",region=\"{}\"}} {depth}",
                    q.name, r.name
                );
            }
        }
    }
    let mut merged: BTreeMap<(String, String), QueueRegionStats> = BTreeMap::new();
    let (mut rounds, mut unavailable, mut lease_lost, mut held) = (0, 0, 0, 0);
    for w in workers {
        let w = w.lock().expect("worker stats lock");
        rounds += w.rounds;
        unavailable += w.commit_ticket_unavailable;
        lease_lost += w.commit_lease_lost;
        held += w.partitions_held;
        for (k, s) in &w.matches.by_queue_region {
            merge(merged.entry(k.clone()).or_default(), s);
        }
    }
    let _ = writeln!(
        out,
        "# TYPE outpost_mm_rounds_total counter\noutpost_mm_rounds_total {rounds}"
    );
    let _ = writeln!(
        out,
        "# TYPE outpost_mm_commit_refused_total counter\n\
         outpost_mm_commit_refused_total{{reason=\"ticket_unavailable\"}} {unavailable}\n\
         outpost_mm_commit_refused_total{{reason=\"lease_lost\"}} {lease_lost}"
    );
    let _ = writeln!(
        out,
        "# TYPE outpost_mm_partitions_held gauge\noutpost_mm_partitions_held {held}"
    );
    out.push_str(
        "# TYPE outpost_mm_matches_total counter\n# TYPE outpost_mm_players_matched_total counter\n",
    );
    out.push_str("# TYPE outpost_mm_cross_region_matches_total counter\n# TYPE outpost_mm_expansion_used_total counter\n");
    out.push_str("# TYPE outpost_mm_wait_ms histogram\n# TYPE outpost_mm_skill_spread histogram\n");
    for ((queue, region), s) in &merged {
        let labels = format!("queue=\"{queue}\",region=\"{region}\"");
        let _ = writeln!(out, "outpost_mm_matches_total{{{labels}}} {}", s.matches);
        let _ = writeln!(out, "outpost_mm_players_matched_total{{{labels}}} {}", s.players);
        let _ = writeln!(
            out,
            "outpost_mm_cross_region_matches_total{{{labels}}} {}",
            s.cross_region_matches
        );
        for (step, n) in s.expansions_used.iter().enumerate() {
            let _ = writeln!(
                out,
                "outpost_mm_expansion_used_total{{{labels},step=\"{step}\"}} {n}"
            );
        }
        histogram(&mut out, "outpost_mm_wait_ms", &labels, &s.wait_ms);
        histogram(&mut out, "outpost_mm_skill_spread", &labels, &s.skill_spread);
    }
    out
}

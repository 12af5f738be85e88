//! Tests of the core's bounded wait and target-seeking widening on virtual
//! time: every ticket gets exactly one outcome by its deadline, and widening
//! converges on a wait target with less skill spread than the widest window.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::config::{ExpansionStep, MatchmakerConfig, QueueConfig, RegionConfig};
use super::core::MatchCore;
use super::deadline::NoMatchReason;
use super::types::{Skill, Ticket, TicketId};
use super::widening::TargetWait;

fn queue(team_size: u32, expansions: &[(u64, f64)]) -> QueueConfig {
    QueueConfig {
        name: "q".into(),
        teams: 2,
        team_size,
        expansions: expansions
            .iter()
            .map(|&(after_ms, max_skill_diff)| ExpansionStep {
                after_ms,
                max_skill_diff,
            })
            .collect(),
        uncertainty_widening: 0.0,
        cross_region: None,
        skill_bands: vec![],
        band_borrow_after_ms: None,
        deadline_ms: None,
        target_wait: None,
    }
}

fn config(q: QueueConfig) -> MatchmakerConfig {
    MatchmakerConfig {
        regions: vec![RegionConfig {
            name: "eu".into(),
            neighbours: vec![],
        }],
        queues: vec![q],
    }
}

fn ticket(id: u64, rating: f64, created_ms: u64) -> Ticket {
    Ticket {
        id: TicketId(id),
        players: vec![format!("p{id}")],
        queue: "q".into(),
        skill: Skill {
            rating,
            uncertainty: 0.0,
        },
        home_region: "eu".into(),
        latencies: vec![],
        max_latency_ms: None,
        created_ms,
    }
}

#[test]
fn every_ticket_gets_exactly_one_outcome_no_later_than_its_deadline() {
    const ROUND: u64 = 1_000;
    const DEADLINE: u64 = 20_500;
    let mut q = queue(2, &[(0, 30.0), (5_000, 120.0), (15_000, 400.0)]);
    q.deadline_ms = Some(DEADLINE);
    let mut core = MatchCore::new(&config(q)).unwrap();
    let mut rng = StdRng::seed_from_u64(19);
    // ticket -> (created, outcomes seen)
    let mut tickets: HashMap<TicketId, (u64, u32)> = HashMap::new();
    let (mut next, mut timed_out, mut matched) = (0u64, 0, 0);
    for round in 0..400u64 {
        let now = round * ROUND;
        if round < 300 {
            for _ in 0..rng.gen_range(0..4) {
                // A crowd near 1500 and a sparse fringe that rarely meets.
                let rating = if rng.gen_bool(0.8) {
                    rng.gen_range(1400.0..1600.0)
                } else {
                    rng.gen_range(0.0..5000.0)
                };
                let created = now.saturating_sub(rng.gen_range(0..ROUND));
                core.insert(ticket(next, rating, created)).unwrap();
                tickets.insert(TicketId(next), (created, 0));
                next += 1;
            }
        }
        for m in core.run_round(now) {
            for t in &m.tickets {
                let e = tickets.get_mut(&t.id).expect("known ticket");
                e.1 += 1;
                assert!(t.wait_ms <= DEADLINE, "matched after its deadline: {t:?}");
                matched += 1;
            }
        }
        for nm in core.expire_due(now, now + ROUND) {
            let e = tickets.get_mut(&nm.ticket).expect("known ticket");
            e.1 += 1;
            assert_eq!(nm.reason, NoMatchReason::Deadline);
            assert_eq!(nm.wait_ms, now - e.0);
            assert!(nm.wait_ms <= DEADLINE, "expired late: {nm:?}");
            assert!(nm.wait_ms + ROUND > DEADLINE, "expired early: {nm:?}");
            assert!(!core.contains(nm.ticket));
            timed_out += 1;
        }
        // Nobody still waiting reaches the next round past its deadline.
        for (id, (created, _)) in &tickets {
            if core.contains(*id) {
                assert!(now + ROUND - created <= DEADLINE, "{id} would wait too long");
            }
        }
    }
    assert!(core.is_empty(), "every ticket has an outcome");
    for (id, (_, outcomes)) in &tickets {
        assert_eq!(*outcomes, 1, "ticket {id}: {outcomes} outcomes");
    }
    assert!(
        timed_out > 0 && matched > timed_out,
        "{matched} matched, {timed_out} timed out"
    );
    // A second call has nothing left to expire.
    assert!(core.expire_due(400 * ROUND, 401 * ROUND).is_empty());
}

/// Runs a duel queue fed by a steady stream of uniform ratings and returns
/// (p95 of the waits of the second half, mean skill spread of its matches).
fn run_pool(q: QueueConfig, rounds: u64) -> (u64, f64) {
    const ROUND: u64 = 500;
    let mut core = MatchCore::new(&config(q)).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let (mut waits, mut spread, mut matches) = (Vec::new(), 0.0, 0u32);
    for round in 0..rounds {
        let now = round * ROUND;
        core.insert(ticket(round, rng.gen_range(1000.0..2000.0), now))
            .unwrap();
        for m in core.run_round(now) {
            if round >= rounds / 2 {
                waits.extend(m.tickets.iter().map(|t| t.wait_ms));
                spread += m.skill_spread;
                matches += 1;
            }
        }
    }
    waits.sort_unstable();
    (waits[waits.len() * 95 / 100], spread / f64::from(matches))
}

#[test]
fn target_seeking_widening_converges_on_a_synthetic_pool() {
    let steps = [
        (0, 4.0),
        (2_000, 8.0),
        (4_000, 16.0),
        (8_000, 32.0),
        (16_000, 64.0),
        (32_000, 128.0),
    ];
    let target = 12_000;
    let mut q = queue(1, &steps);
    q.target_wait = Some(TargetWait {
        rating_bucket: 250.0,
        ..TargetWait::new(0.95, target)
    });
    let (p95, spread) = run_pool(q, 40_000);
    let (fixed_p95, fixed_spread) = run_pool(queue(1, &steps), 40_000);
    let (_, widest_spread) = run_pool(queue(1, &[(0, 128.0)]), 40_000);
    eprintln!("target-seeking p95 {p95} ms spread {spread:.1}; fixed p95 {fixed_p95} ms spread {fixed_spread:.1}; widest spread {widest_spread:.1}");
    let tolerance = target / 4;
    assert!(
        p95.abs_diff(target) <= tolerance,
        "p95 {p95} ms, target {target} ms"
    );
    assert!(
        spread < widest_spread,
        "spread {spread} vs widest window {widest_spread}"
    );
}

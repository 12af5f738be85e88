//! Tests of the pure core on virtual time: party integrity, expansion order,
//! cross-region fallback, home preference, team balance, borrowed tickets.

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::config::{CrossRegionConfig, ExpansionStep, MatchmakerConfig, QueueConfig, RegionConfig};
use super::core::MatchCore;
use super::types::{Match, RegionLatency, Skill, Ticket, TicketId};

fn step(after_ms: u64, max_skill_diff: f64) -> ExpansionStep {
    ExpansionStep {
        after_ms,
        max_skill_diff,
    }
}

fn queue(name: &str, teams: u32, team_size: u32, expansions: Vec<ExpansionStep>) -> QueueConfig {
    QueueConfig {
        name: name.into(),
        teams,
        team_size,
        expansions,
        uncertainty_widening: 0.0,
        cross_region: None,
        skill_bands: vec![],
        band_borrow_after_ms: None,
        deadline_ms: None,
        target_wait: None,
    }
}

fn regions(names: &[(&str, &[&str])]) -> Vec<RegionConfig> {
    names
        .iter()
        .map(|(n, nb)| RegionConfig {
            name: n.to_string(),
            neighbours: nb.iter().map(|s| s.to_string()).collect(),
        })
        .collect()
}

fn ticket(id: u64, queue: &str, party: usize, rating: f64, home: &str, created_ms: u64) -> Ticket {
    Ticket {
        id: TicketId(id),
        players: (0..party).map(|i| format!("p{id}-{i}")).collect(),
        queue: queue.into(),
        skill: Skill {
            rating,
            uncertainty: 0.0,
        },
        home_region: home.into(),
        latencies: vec![],
        max_latency_ms: None,
        created_ms,
    }
}

/// Checks the invariants every match must hold.
fn check_match(m: &Match, cfg: &QueueConfig, seen: &mut HashSet<TicketId>) {
    assert_eq!(m.teams.len(), cfg.teams as usize);
    for t in &m.teams {
        assert_eq!(t.players.len(), cfg.team_size as usize, "{m:?}");
    }
    for t in &m.tickets {
        assert!(seen.insert(t.id), "ticket {} in two matches", t.id);
        // Expansion: the spread is within every ticket's window at match time.
        assert_eq!(t.expansion as usize, cfg.step_at(t.wait_ms));
        let w = cfg.expansions[t.expansion as usize].max_skill_diff;
        assert!(
            m.skill_spread <= w + 1e-9,
            "spread {} > window {w} of {}",
            m.skill_spread,
            t.id
        );
    }
}

#[test]
fn parties_stay_on_one_team_and_no_ticket_is_matched_twice() {
    let q = queue(
        "q5",
        2,
        5,
        vec![step(0, 30.0), step(3_000, 100.0), step(10_000, 400.0)],
    );
    let cfg = MatchmakerConfig {
        regions: regions(&[("eu", &[])]),
        queues: vec![q.clone()],
    };
    let mut core = MatchCore::new(&cfg).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut parties = std::collections::HashMap::new();
    let mut id = 0;
    let mut seen = HashSet::new();
    for round in 0..60u64 {
        let now = round * 500;
        for _ in 0..40 {
            id += 1;
            let size = *[1, 1, 1, 2, 3, 5].get(rng.gen_range(0..6)).unwrap();
            let t = ticket(id, "q5", size, rng.gen_range(1000.0..1400.0), "eu", now);
            parties.insert(TicketId(id), t.players.clone());
            core.insert(t).unwrap();
        }
        for m in core.run_round(now) {
            check_match(&m, &q, &mut seen);
            for (ti, team) in m.teams.iter().enumerate() {
                for tid in &team.tickets {
                    for p in &parties[tid] {
                        assert_eq!(m.team_of(p), Some(ti), "party split in {m:?}");
                    }
                }
            }
        }
    }
    assert!(seen.len() > 1000, "only {} tickets matched", seen.len());
    assert_eq!(core.len() + seen.len(), id as usize, "tickets lost");
    for t in &seen {
        assert!(!core.contains(*t));
    }
}

#[test]
fn expansion_steps_gate_matches_in_config_order() {
    let q = queue(
        "duel",
        2,
        1,
        vec![step(0, 50.0), step(5_000, 150.0), step(10_000, 300.0)],
    );
    let cfg = MatchmakerConfig {
        regions: regions(&[("eu", &[])]),
        queues: vec![q.clone()],
    };
    // Spread 100: needs step 1, so not before 5 s.
    let mut core = MatchCore::new(&cfg).unwrap();
    core.insert(ticket(1, "duel", 1, 1000.0, "eu", 0)).unwrap();
    core.insert(ticket(2, "duel", 1, 1100.0, "eu", 0)).unwrap();
    for now in [0, 1_000, 4_999] {
        assert!(
            core.run_round(now).is_empty(),
            "matched at {now} outside the window"
        );
    }
    let m = core.run_round(5_000);
    assert_eq!(m.len(), 1);
    assert!(m[0]
        .tickets
        .iter()
        .all(|t| t.expansion == 1 && t.wait_ms == 5_000));

    // Spread 200: needs step 2.
    core.insert(ticket(3, "duel", 1, 1000.0, "eu", 0)).unwrap();
    core.insert(ticket(4, "duel", 1, 1200.0, "eu", 0)).unwrap();
    assert!(core.run_round(5_000).is_empty());
    assert!(core.run_round(9_999).is_empty());
    assert_eq!(core.run_round(10_000).len(), 1);

    // Every ticket's own step counts: 5 created at 0, 6 at 4 s; at 5 s ticket 5
    // accepts 100 but ticket 6 (waited 1 s) does not; at 9 s both do.
    core.insert(ticket(5, "duel", 1, 1000.0, "eu", 0)).unwrap();
    core.insert(ticket(6, "duel", 1, 1100.0, "eu", 4_000)).unwrap();
    assert!(core.run_round(5_000).is_empty());
    assert!(core.run_round(8_999).is_empty());
    let m = core.run_round(9_000);
    assert_eq!(m.len(), 1);
    let mut steps: Vec<_> = m[0].tickets.iter().map(|t| (t.id.0, t.expansion)).collect();
    steps.sort();
    assert_eq!(steps, vec![(5, 1), (6, 1)]);
    assert_eq!(
        core.stats().by_queue_region[&("duel".into(), "eu".into())].matches,
        3
    );
}

#[test]
fn expansion_invariant_holds_on_random_traffic() {
    let q = queue(
        "q5",
        2,
        5,
        vec![
            step(0, 20.0),
            step(2_000, 60.0),
            step(6_000, 200.0),
            step(15_000, 800.0),
        ],
    );
    let cfg = MatchmakerConfig {
        regions: regions(&[("eu", &[])]),
        queues: vec![q.clone()],
    };
    let mut core = MatchCore::new(&cfg).unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let mut seen = HashSet::new();
    let mut id = 0;
    let mut now = 0;
    for _ in 0..200 {
        now += rng.gen_range(100..900);
        for _ in 0..rng.gen_range(0..15) {
            id += 1;
            let size = if rng.gen_bool(0.2) { 2 } else { 1 };
            core.insert(ticket(id, "q5", size, rng.gen_range(0.0..3000.0), "eu", now))
                .unwrap();
        }
        for m in core.run_round(now) {
            check_match(&m, &q, &mut seen);
        }
    }
    assert!(!seen.is_empty());
}

fn cross_cfg(latency_bound: u32) -> (MatchmakerConfig, QueueConfig) {
    let mut q = queue("duel", 2, 1, vec![step(0, 50.0)]);
    q.cross_region = Some(CrossRegionConfig {
        after_ms: 10_000,
        max_latency_ms: latency_bound,
    });
    let cfg = MatchmakerConfig {
        regions: regions(&[("eu", &["us"]), ("us", &[]), ("asia", &[])]),
        queues: vec![q.clone()],
    };
    (cfg, q)
}

fn with_latency(mut t: Ticket, region: &str, rtt_ms: u32) -> Ticket {
    t.latencies.push(RegionLatency {
        region: region.into(),
        rtt_ms,
    });
    t
}

#[test]
fn cross_region_fallback_only_after_the_wait_and_within_the_bound() {
    let (cfg, _) = cross_cfg(80);
    let mut core = MatchCore::new(&cfg).unwrap();
    core.insert(with_latency(ticket(1, "duel", 1, 1000.0, "eu", 0), "us", 70))
        .unwrap();
    core.insert(ticket(2, "duel", 1, 1000.0, "us", 0)).unwrap();
    assert!(
        core.run_round(9_999).is_empty(),
        "fallback before the configured wait"
    );
    let m = core.run_round(10_000);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].region, "us");
    assert!(m[0].cross_region);
    let s = &core.stats().by_queue_region[&("duel".into(), "us".into())];
    assert_eq!(s.cross_region_matches, 1);

    // Each refused case against a fresh pool with one matching us ticket.
    let mut own = with_latency(ticket(5, "duel", 1, 1000.0, "eu", 0), "us", 70);
    own.max_latency_ms = Some(60);
    let refused = [
        // Over the queue's bound.
        with_latency(ticket(3, "duel", 1, 1000.0, "eu", 0), "us", 81),
        // Within the queue's bound but over the ticket's own.
        own,
        // No latency measured to the neighbour.
        ticket(6, "duel", 1, 1000.0, "eu", 0),
        // Not a neighbour (asia lists none), even with a low latency.
        with_latency(ticket(7, "duel", 1, 1000.0, "asia", 0), "us", 10),
    ];
    for t in refused {
        let mut core = MatchCore::new(&cfg).unwrap();
        let id = t.id;
        core.insert(t).unwrap();
        core.insert(ticket(4, "duel", 1, 1000.0, "us", 0)).unwrap();
        for now in [10_000, 60_000, 600_000] {
            assert!(core.run_round(now).is_empty(), "ticket {id} fell back at {now}");
        }
        assert!(core.contains(id) && core.contains(TicketId(4)));
    }
}

#[test]
fn home_region_is_preferred() {
    let (cfg, _) = cross_cfg(80);
    let mut core = MatchCore::new(&cfg).unwrap();
    // Two eu tickets and one us ticket, all eligible for fallback.
    core.insert(with_latency(ticket(1, "duel", 1, 1000.0, "eu", 0), "us", 20))
        .unwrap();
    core.insert(with_latency(ticket(2, "duel", 1, 1001.0, "eu", 0), "us", 20))
        .unwrap();
    core.insert(ticket(3, "duel", 1, 1000.5, "us", 0)).unwrap();
    let m = core.run_round(60_000);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].region, "eu");
    assert!(!m[0].cross_region);
    assert!(core.contains(TicketId(3)));
}

#[test]
fn teams_are_balanced_and_battle_royale_fills() {
    let q = queue("q5", 2, 5, vec![step(0, 1000.0)]);
    let br = queue("squads", 25, 4, vec![step(0, 1000.0)]);
    let cfg = MatchmakerConfig {
        regions: regions(&[("eu", &[])]),
        queues: vec![q, br],
    };
    let mut core = MatchCore::new(&cfg).unwrap();
    for (i, r) in [
        1000., 1100., 1200., 1300., 1400., 1500., 1600., 1700., 1800., 1900.,
    ]
    .iter()
    .enumerate()
    {
        core.insert(ticket(i as u64 + 1, "q5", 1, *r, "eu", 0)).unwrap();
    }
    let mut rng = StdRng::seed_from_u64(3);
    let mut players = 0;
    let mut id = 100;
    while players < 100 {
        id += 1;
        let size = [1, 2, 4][rng.gen_range(0..3)].min(100 - players);
        players += size;
        core.insert(ticket(id, "squads", size, rng.gen_range(900.0..1100.0), "eu", 0))
            .unwrap();
    }
    let ms = core.run_round(0);
    assert_eq!(ms.len(), 2, "{ms:?}");
    let five = ms.iter().find(|m| m.queue == "q5").unwrap();
    assert!(five.team_imbalance <= 20.0, "imbalance {}", five.team_imbalance);
    let royale = ms.iter().find(|m| m.queue == "squads").unwrap();
    assert_eq!(royale.players().count(), 100);
    assert_eq!(royale.teams.len(), 25);
}

#[test]
fn borrowed_tickets_alone_do_not_form_a_match() {
    let q = queue("duel", 2, 1, vec![step(0, 50.0)]);
    let cfg = MatchmakerConfig {
        regions: regions(&[("eu", &[])]),
        queues: vec![q],
    };
    let mut core = MatchCore::new(&cfg).unwrap();
    core.insert_borrowed(ticket(1, "duel", 1, 1000.0, "eu", 0))
        .unwrap();
    core.insert_borrowed(ticket(2, "duel", 1, 1000.0, "eu", 0))
        .unwrap();
    assert!(core.run_round(0).is_empty());
    core.insert(ticket(3, "duel", 1, 1000.0, "eu", 0)).unwrap();
    assert_eq!(core.run_round(0).len(), 1);
    assert_eq!(core.len(), 1);
}

#[test]
fn bad_tickets_are_refused() {
    let q = queue("duel", 2, 1, vec![step(0, 50.0)]);
    let cfg = MatchmakerConfig {
        regions: regions(&[("eu", &[])]),
        queues: vec![q],
    };
    let mut core = MatchCore::new(&cfg).unwrap();
    assert!(core.insert(ticket(1, "nope", 1, 1.0, "eu", 0)).is_err());
    assert!(core.insert(ticket(1, "duel", 1, 1.0, "mars", 0)).is_err());
    assert!(core.insert(ticket(1, "duel", 2, 1.0, "eu", 0)).is_err());
    assert!(core.insert(ticket(1, "duel", 1, f64::NAN, "eu", 0)).is_err());
    core.insert(ticket(1, "duel", 1, 1.0, "eu", 0)).unwrap();
    assert!(core.insert(ticket(1, "duel", 1, 1.0, "eu", 0)).is_err());
    assert!(core.remove(TicketId(1)));
    assert!(!core.remove(TicketId(1)));
    assert!(core.is_empty());
}

#[test]
fn a_solo_does_not_block_two_duos() {
    let q = queue("duo", 2, 2, vec![step(0, 500.0)]);
    let cfg = MatchmakerConfig {
        regions: regions(&[("eu", &[])]),
        queues: vec![q],
    };
    let mut core = MatchCore::new(&cfg).unwrap();
    // In rating order: duo, solo, duo. Rating-order filling takes the solo and
    // then cannot seat the second duo.
    core.insert(ticket(1, "duo", 2, 1000.0, "eu", 0)).unwrap();
    core.insert(ticket(2, "duo", 1, 1010.0, "eu", 0)).unwrap();
    core.insert(ticket(3, "duo", 2, 1020.0, "eu", 0)).unwrap();
    let m = core.run_round(0);
    assert_eq!(m.len(), 1);
    assert!(core.contains(TicketId(2)));
}

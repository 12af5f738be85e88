//! Rollout tests of the pure state machine on a fake clock (the store-backed
//! driver's are in `rollout_tests.rs`), and the plans and gates both use.

use super::*;

pub(super) const T0: u64 = 1_700_000_000_000;
pub(super) const MIN: u64 = 60_000;

pub(super) fn gate(max_pp: f64, min_samples: u64) -> Option<HealthGate> {
    Some(HealthGate {
        max_excess_error_pp: max_pp,
        min_samples,
        lookback_ms: 5 * MIN,
    })
}

pub(super) fn plan(gated: bool) -> RolloutPlan {
    let g = if gated { gate(2.0, 100) } else { None };
    RolloutPlan {
        stages: vec![
            Stage {
                percentage_bp: 100,
                min_dwell_ms: 10 * MIN,
                gate: g,
            },
            Stage {
                percentage_bp: 1000,
                min_dwell_ms: 10 * MIN,
                gate: g,
            },
            Stage {
                percentage_bp: 5000,
                min_dwell_ms: 10 * MIN,
                gate: g,
            },
            Stage {
                percentage_bp: FULL_BP,
                min_dwell_ms: 10 * MIN,
                gate: None,
            },
        ],
    }
}

fn stats(cohort: (u64, u64), control: (u64, u64)) -> CohortStats {
    CohortStats {
        cohort: GroupStats {
            requests: cohort.0,
            errors: cohort.1,
        },
        control: GroupStats {
            requests: control.0,
            errors: control.1,
        },
    }
}

fn machine(gated: bool) -> Rollout {
    Rollout::new(
        "ro-1".into(),
        "f".into(),
        "r".into(),
        plan(gated),
        "alice".into(),
        T0,
    )
}

#[test]
fn plan_validation() {
    plan(true).validate().expect("valid");
    type Mutation = Box<dyn Fn(&mut RolloutPlan)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("empty", Box::new(|p| p.stages.clear())),
        ("zero pct", Box::new(|p| p.stages[0].percentage_bp = 0)),
        ("over 100%", Box::new(|p| p.stages[3].percentage_bp = FULL_BP + 1)),
        ("decreasing", Box::new(|p| p.stages[1].percentage_bp = 50)),
        ("gate at 100%", Box::new(|p| p.stages[3].gate = gate(1.0, 10))),
        (
            "nan threshold",
            Box::new(|p| p.stages[0].gate = gate(f64::NAN, 10)),
        ),
        ("zero samples", Box::new(|p| p.stages[0].gate = gate(1.0, 0))),
        (
            "lookback",
            Box::new(|p| p.stages[0].gate.as_mut().unwrap().lookback_ms = 1000),
        ),
        (
            "dwell",
            Box::new(|p| p.stages[0].min_dwell_ms = rollout::MAX_DWELL_MS + 1),
        ),
    ];
    for (name, mutate) in cases {
        let mut p = plan(true);
        mutate(&mut p);
        assert!(
            matches!(p.validate(), Err(RolloutError::InvalidPlan(_))),
            "{name}"
        );
    }
}

#[test]
fn stages_advance_only_after_their_dwell_time() {
    let mut r = machine(false);
    let none = CohortStats::default();
    assert_eq!(r.percentage_bp(), 100);
    assert!(r.advance(T0 + 10 * MIN - 1, &none).is_empty(), "one ms early");
    assert_eq!(
        r.advance(T0 + 10 * MIN, &none),
        vec![
            RolloutAction::EnterStage { from: 0, to: 1 },
            RolloutAction::SetPercentage {
                from_bp: 100,
                to_bp: 1000
            }
        ]
    );
    // The dwell restarts at the stage change, not at the rollout's start.
    assert!(r.advance(T0 + 19 * MIN, &none).is_empty());
    assert_eq!(r.advance(T0 + 20 * MIN, &none).len(), 2);
    assert_eq!(r.percentage_bp(), 5000);
    assert_eq!(r.advance(T0 + 30 * MIN, &none).len(), 2);
    assert_eq!(r.percentage_bp(), FULL_BP);
    assert_eq!(r.advance(T0 + 40 * MIN, &none), vec![RolloutAction::Complete]);
    assert_eq!(r.state, RolloutState::Completed { at_ms: T0 + 40 * MIN });
    assert_eq!(r.percentage_bp(), FULL_BP, "completed keeps the last percentage");
    assert!(
        r.advance(T0 + 100 * MIN, &none).is_empty(),
        "finished rollouts do nothing"
    );
}

#[test]
fn gate_rolls_back_above_the_threshold_with_enough_samples() {
    // Threshold 2 pp, 100 samples per group.
    let mut r = machine(true);
    // 5 % vs 1 %: 4 pp over, plenty of samples -> roll back at once (mid-dwell).
    let bad = stats((1000, 50), (10_000, 100));
    let actions = r.advance(T0 + MIN, &bad);
    match &actions[..] {
        [RolloutAction::RollBack {
            stage: 0, excess_pp, ..
        }, RolloutAction::SetPercentage {
            from_bp: 100,
            to_bp: 0,
        }] => {
            assert!((excess_pp - 4.0).abs() < 1e-9, "{excess_pp}");
        }
        other => panic!("expected a rollback, got {other:?}"),
    }
    assert_eq!(r.percentage_bp(), 0);
    assert!(matches!(r.state, RolloutState::RolledBack { stage: 0, .. }));
    assert!(
        r.advance(T0 + 60 * MIN, &CohortStats::default()).is_empty(),
        "stays rolled back"
    );
}

#[test]
fn gate_holds_below_the_threshold_or_without_enough_samples() {
    // 2.9 % vs 1 %: 1.9 pp, under 2 pp: healthy, advances after the dwell.
    let mut r = machine(true);
    let fine = stats((1000, 29), (10_000, 100));
    assert!(r.advance(T0 + MIN, &fine).is_empty());
    assert_eq!(r.advance(T0 + 10 * MIN, &fine).len(), 2);
    assert_eq!(r.percentage_bp(), 1000);

    // Terrible rates but too few samples in either group: no rollback, and no
    // advance either (the gate has not seen enough to approve the stage).
    for few in [stats((99, 99), (10_000, 0)), stats((10_000, 5000), (99, 0))] {
        let mut r = machine(true);
        assert!(r.advance(T0 + MIN, &few).is_empty());
        assert!(r.advance(T0 + 11 * MIN, &few).is_empty(), "holds without samples");
        assert_eq!(r.percentage_bp(), 100);
        assert!(r.is_running());
        // An operator may promote it anyway.
        assert_eq!(r.promote(T0 + 12 * MIN).expect("promote").len(), 2);
        assert_eq!(r.percentage_bp(), 1000);
    }
}

#[test]
fn kill_switch_and_finished_rollouts() {
    let mut r = machine(true);
    let actions = r.kill(T0 + MIN, "oncall").expect("kill");
    assert_eq!(
        actions,
        vec![
            RolloutAction::Kill { by: "oncall".into() },
            RolloutAction::SetPercentage {
                from_bp: 100,
                to_bp: 0
            }
        ]
    );
    assert_eq!(r.percentage_bp(), 0);
    assert!(matches!(
        r.kill(T0 + 2 * MIN, "again"),
        Err(RolloutError::Finished(_))
    ));
    assert!(matches!(r.promote(T0 + 2 * MIN), Err(RolloutError::Finished(_))));
    let mut last = machine(false);
    for i in 1..=3 {
        last.promote(T0 + i).expect("promote");
    }
    assert!(matches!(last.promote(T0 + 10), Err(RolloutError::AtLastStage(_))));
}

#[test]
fn stats_window_covers_the_lookback_but_not_before_the_stage() {
    let r = machine(true);
    assert_eq!(r.stats_window(T0 + MIN), Some((T0, T0 + MIN)));
    assert_eq!(
        r.stats_window(T0 + 20 * MIN),
        Some((T0 + 15 * MIN, T0 + 20 * MIN))
    );
    assert_eq!(machine(false).stats_window(T0 + MIN), None);
}

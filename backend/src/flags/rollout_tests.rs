//! Rollout tests: the pure state machine on a fake clock, and the store-backed
//! driver against the real embedded store with telemetry counters.

use std::time::Duration;

use super::tests::{bool_flag, open, player};
use super::*;
use crate::audit::{AuditAction, AuditQuery};
use crate::telemetry::{flush_cohort_deltas, CohortDeltas, COHORT_WINDOW_MS};

const T0: u64 = 1_700_000_000_000;
const MIN: u64 = 60_000;

fn gate(max_pp: f64, min_samples: u64) -> Option<HealthGate> {
    Some(HealthGate {
        max_excess_error_pp: max_pp,
        min_samples,
        lookback_ms: 5 * MIN,
    })
}

fn plan(gated: bool) -> RolloutPlan {
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

// ---- store-backed driver ----

/// A store with flag `new_shop` and its rule `everyone` at 0%, ready for a
/// rollout (also used by the retention tests).
pub(super) async fn setup() -> anyhow::Result<(
    tempfile::TempDir,
    crate::store::embedded::EmbeddedStore,
    Flags<crate::store::embedded::EmbeddedStore>,
    Rollouts<crate::store::embedded::EmbeddedStore>,
)> {
    let (dir, store) = open().await?;
    let flags = Flags::new(store.clone());
    let mut f = bool_flag("new_shop", vec![]);
    f.rules.push(Rule {
        id: "everyone".into(),
        when: Conditions::default(),
        value: FlagValue::Bool(true),
        percentage_bp: 0,
    });
    flags.set_flag("alice", f, None).await?;
    Ok((dir, store.clone(), flags, Rollouts::new(store)))
}

fn rule_pct(snap: &FlagSnapshot) -> u32 {
    snap.flag("new_shop")
        .expect("flag")
        .rule("everyone")
        .expect("rule")
        .percentage_bp
}

#[tokio::test]
async fn driver_progresses_stages_on_a_fake_clock_and_audits_in_order() -> anyhow::Result<()> {
    let (_dir, _store, flags, rollouts) = setup().await?;
    let ro = rollouts
        .start("alice", "new_shop", "everyone", plan(false), T0)
        .await?;
    assert!(ro.id.starts_with("ro-") && ro.id.len() == 19);
    let (snap, watch) = flags.snapshot_and_watch().await?;
    assert_eq!(rule_pct(&snap), 100);
    assert_eq!(
        snap.rollouts,
        vec![ActiveRollout {
            id: ro.id.clone(),
            flag: "new_shop".into(),
            rule: "everyone".into()
        }]
    );

    assert!(rollouts.tick(T0 + 9 * MIN).await?.is_empty(), "dwell not over");
    let reports = rollouts.tick(T0 + 10 * MIN).await?;
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].rollout.percentage_bp(), 1000);
    // The percentage change reaches watchers and the flag.
    tokio::time::timeout(Duration::from_secs(5), watch).await??;
    assert_eq!(rule_pct(&flags.snapshot().await?), 1000);

    for t in [20, 30, 40] {
        rollouts.tick(T0 + t * MIN).await?;
    }
    let done = rollouts.get(&ro.id).await?.expect("exists");
    assert_eq!(done.state, RolloutState::Completed { at_ms: T0 + 40 * MIN });
    let snap = flags.snapshot().await?;
    assert_eq!(rule_pct(&snap), FULL_BP);
    assert!(snap.rollouts.is_empty(), "no longer running");
    assert!(rollouts.running().await?.is_empty());

    let log = flags
        .audit(&AuditQuery {
            target: Some(format!("rollout:{}", ro.id)),
            ..Default::default()
        })
        .await?;
    let actions: Vec<_> = log.iter().map(|e| e.record.action).collect();
    assert_eq!(
        actions,
        vec![
            AuditAction::RolloutStart,
            AuditAction::RolloutStage,
            AuditAction::RolloutStage,
            AuditAction::RolloutStage,
            AuditAction::RolloutComplete
        ]
    );
    let pcts: Vec<_> = log
        .iter()
        .map(|e| e.record.new.as_ref().unwrap()["percentage_bp"].as_u64().unwrap())
        .collect();
    assert_eq!(pcts, vec![100, 1000, 5000, 10_000, 10_000]);
    assert_eq!(log[0].record.old, Some(serde_json::json!({"percentage_bp": 0})));
    assert!(log.iter().skip(1).all(|e| e.record.actor == CONTROLLER_ACTOR));
    assert!(log.windows(2).all(|w| w[0].id < w[1].id));
    // The flag's own history shows the same changes.
    let flag_log = flags
        .audit(&AuditQuery {
            target: Some("flag:new_shop".into()),
            ..Default::default()
        })
        .await?;
    assert_eq!(flag_log.len(), 1 + log.len(), "creation + every rollout change");
    Ok(())
}

/// Reports `n` requests with `errors` errors for every player of `players` on its
/// side of the rollout, as gateways would, through the aggregator-shaped deltas.
fn deltas(
    snap: &FlagSnapshot,
    players: &[String],
    per_player: u64,
    treatment_err: u64,
    control_err: u64,
) -> CohortDeltas {
    let mut d = CohortDeltas::new();
    for p in players {
        let c = snap.context(p, "eu-west", "pc", "1.0.0".parse().unwrap());
        for (id, side) in snap.memberships(&c) {
            let g = d.entry((id, side)).or_default();
            g.requests += per_player;
            g.errors += if side == Cohort::Treatment {
                treatment_err
            } else {
                control_err
            };
        }
    }
    d
}

#[tokio::test]
async fn driver_rolls_back_when_the_cohort_errors_and_not_below_the_threshold() -> anyhow::Result<()> {
    let (_dir, store, flags, rollouts) = setup().await?;
    let gated = RolloutPlan {
        stages: vec![
            Stage {
                percentage_bp: 1000,
                min_dwell_ms: 10 * MIN,
                gate: gate(2.0, 200),
            },
            Stage {
                percentage_bp: 5000,
                min_dwell_ms: 10 * MIN,
                gate: gate(2.0, 200),
            },
        ],
    };
    let ro = rollouts.start("alice", "new_shop", "everyone", gated, T0).await?;
    let players: Vec<String> = (0..2000).map(player).collect();
    let snap = flags.snapshot().await?;
    let inside = players
        .iter()
        .filter(|p| {
            snap.memberships(&snap.context(p, "eu-west", "pc", "1.0.0".parse().unwrap()))
                == vec![(ro.id.clone(), Cohort::Treatment)]
        })
        .count();
    assert!(
        (120..=290).contains(&inside),
        "about 10% of 2000 in the cohort: {inside}"
    );

    // Healthy: 1 error per 100 requests on both sides (0 pp excess).
    flush_cohort_deltas(&store, T0 + MIN, &deltas(&snap, &players, 100, 1, 1)).await?;
    assert!(rollouts.tick(T0 + 2 * MIN).await?.is_empty());
    // Slightly worse, still under 2 pp: 2.5 % vs 1 % over this stage's window.
    flush_cohort_deltas(&store, T0 + 3 * MIN, &deltas(&snap, &players, 100, 4, 1)).await?;
    assert!(
        rollouts.tick(T0 + 4 * MIN).await?.is_empty(),
        "under the threshold"
    );
    assert_eq!(rule_pct(&flags.snapshot().await?), 1000);

    // The cohort starts failing: 30 errors per 100 requests, control unchanged.
    let (_, watch) = flags.snapshot_and_watch().await?;
    flush_cohort_deltas(&store, T0 + 5 * MIN, &deltas(&snap, &players, 100, 30, 1)).await?;
    let reports = rollouts.tick(T0 + 5 * MIN + COHORT_WINDOW_MS).await?;
    assert_eq!(reports.len(), 1);
    assert!(matches!(
        reports[0].actions[0],
        RolloutAction::RollBack { stage: 0, .. }
    ));
    tokio::time::timeout(Duration::from_secs(5), watch).await??;
    let snap = flags.snapshot().await?;
    assert_eq!(rule_pct(&snap), 0, "rolled back to 0%");
    assert!(snap.rollouts.is_empty());
    let c = snap.context(&players[0], "eu-west", "pc", "1.0.0".parse().unwrap());
    assert_eq!(
        snap.evaluate_all(&c)["new_shop"],
        FlagValue::Bool(false),
        "nobody gets the new value"
    );

    let log = flags
        .audit(&AuditQuery {
            target: Some(format!("rollout:{}", ro.id)),
            ..Default::default()
        })
        .await?;
    let last = log.last().expect("records");
    assert_eq!(last.record.action, AuditAction::RolloutRollback);
    assert_eq!(last.record.actor, CONTROLLER_ACTOR);
    assert!(
        last.record
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("exceeds control"),
        "{:?}",
        last.record.reason
    );
    // Its counters are gone.
    let (b, e) = crate::telemetry::keys::rollout(&ro.id).range();
    let left = rollouts_store_rows(&store, &b, &e).await?;
    assert_eq!(left, 0);
    Ok(())
}

async fn rollouts_store_rows(
    store: &crate::store::embedded::EmbeddedStore,
    b: &[u8],
    e: &[u8],
) -> anyhow::Result<usize> {
    use crate::store::{Store, Transaction, TxError};
    let (b, e) = (b.to_vec(), e.to_vec());
    Ok(store
        .run(|tx| {
            let (b, e) = (b.clone(), e.clone());
            async move { Ok::<_, TxError>(tx.get_range(&b, &e, None, false).await?.len()) }
        })
        .await?)
}

#[tokio::test]
async fn kill_switch_guards_and_concurrent_ticks() -> anyhow::Result<()> {
    let (_dir, _store, flags, rollouts) = setup().await?;
    let ro = rollouts
        .start("alice", "new_shop", "everyone", plan(false), T0)
        .await?;
    // A retried start by the same actor with the same plan returns the same rollout.
    assert_eq!(
        rollouts
            .start("alice", "new_shop", "everyone", plan(false), T0 + 1)
            .await?
            .id,
        ro.id
    );
    assert!(matches!(
        rollouts
            .start("bob", "new_shop", "everyone", plan(false), T0)
            .await,
        Err(RolloutError::AlreadyActive { .. })
    ));
    assert!(matches!(
        rollouts.start("bob", "nope", "everyone", plan(false), T0).await,
        Err(RolloutError::FlagNotFound(_))
    ));

    // While running, the rule's percentage belongs to the rollout.
    let mut f = flags.get_flag("new_shop").await?.expect("flag").flag;
    f.rules[0].percentage_bp = FULL_BP;
    assert!(matches!(
        flags.set_flag("bob", f.clone(), None).await,
        Err(FlagError::RolloutActive { .. })
    ));
    f.rules.clear();
    assert!(matches!(
        flags.set_flag("bob", f, None).await,
        Err(FlagError::RolloutActive { .. })
    ));
    assert!(matches!(
        flags.delete_flag("bob", "new_shop", None).await,
        Err(FlagError::RolloutActive { .. })
    ));

    // Many gateways tick at once: exactly one stage change happens.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let r = rollouts.clone();
        tasks.push(tokio::spawn(async move { r.tick(T0 + 10 * MIN).await }));
    }
    let mut changed = 0;
    for t in tasks {
        changed += t.await??.len();
    }
    assert_eq!(changed, 1);
    assert_eq!(rollouts.get(&ro.id).await?.expect("exists").percentage_bp(), 1000);

    let report = rollouts.kill("oncall", &ro.id, T0 + 11 * MIN).await?;
    assert!(matches!(report.rollout.state, RolloutState::Killed { .. }));
    assert_eq!(rule_pct(&flags.snapshot().await?), 0);
    assert!(matches!(
        rollouts.kill("oncall", &ro.id, T0 + 12 * MIN).await,
        Err(RolloutError::Finished(_))
    ));
    let log = flags
        .audit(&AuditQuery {
            target: Some(format!("rollout:{}", ro.id)),
            ..Default::default()
        })
        .await?;
    let last = log.last().expect("records");
    assert_eq!(
        (last.record.action, last.record.actor.as_str()),
        (AuditAction::RolloutKill, "oncall")
    );
    // Once finished, the flag is editable again.
    let mut f = flags.get_flag("new_shop").await?.expect("flag").flag;
    f.rules[0].percentage_bp = 42;
    flags.set_flag("bob", f, None).await?;
    Ok(())
}

/// The gateway spawns these calls on its runtime: their futures must be `Send`
/// and `'static`-friendly (this fails to compile otherwise).
#[tokio::test]
async fn service_futures_can_be_spawned() -> anyhow::Result<()> {
    let (_dir, store, flags, rollouts) = setup().await?;
    let content = crate::content::Content::new(store.clone());
    let f = flags.clone();
    tokio::spawn(async move { f.snapshot_and_watch().await.map(|_| ()) }).await??;
    let r = rollouts.clone();
    let id = tokio::spawn(async move { r.start("alice", "new_shop", "everyone", plan(false), T0).await })
        .await??
        .id;
    let r = rollouts.clone();
    let i = id.clone();
    tokio::spawn(async move { r.promote("alice", &i, T0 + 1).await }).await??;
    let r = rollouts.clone();
    let report = tokio::spawn(async move { r.kill("alice", &id, T0 + 2).await }).await??;
    assert!(matches!(report.rollout.state, RolloutState::Killed { .. }));
    tokio::spawn(async move { content.list_and_watch().await.map(|_| ()) }).await??;
    let s = store.clone();
    tokio::spawn(async move {
        crate::audit::read(&s, &AuditQuery::default())
            .await
            .map(|v| v.len())
    })
    .await??;
    Ok(())
}

/// Every driver call whose commit applied, then reported an unknown result
/// (forced): its rerun returns what the first attempt did (a start its
/// rollout, a tick its stage change, a promote one stage, a kill the killed
/// rollout), and each transition is made and audited once.
#[tokio::test]
async fn driver_reruns_after_applied_unknown_results_answer_as_the_first_attempt() -> anyhow::Result<()> {
    use crate::store::testing::{open_scripted_store, CommitFault};
    let dir = tempfile::tempdir()?;
    let store = open_scripted_store(dir.path()).await?;
    let (flags, rollouts) = (Flags::new(store.clone()), Rollouts::new(store.clone()));
    let mut f = bool_flag("new_shop", vec![]);
    f.rules.push(Rule {
        id: "everyone".into(),
        when: Conditions::default(),
        value: FlagValue::Bool(true),
        percentage_bp: 0,
    });
    flags.set_flag("alice", f, None).await?;
    let unknown = || assert!(store.script_commit_faults([CommitFault::UnknownApplied]));

    unknown();
    let ro = rollouts
        .start("alice", "new_shop", "everyone", plan(false), T0)
        .await?;
    assert_eq!((ro.version, ro.percentage_bp()), (1, 100));
    unknown();
    let ticked = rollouts.tick(T0 + 10 * MIN).await?;
    assert_eq!(ticked.len(), 1, "the tick's own stage change is reported");
    assert_eq!(ticked[0].rollout.percentage_bp(), 1000);
    unknown();
    let promoted = rollouts.promote("bob", &ro.id, T0 + 11 * MIN).await?;
    assert_eq!(promoted.rollout.percentage_bp(), 5000, "one stage, not two");
    unknown();
    let killed = rollouts.kill("oncall", &ro.id, T0 + 12 * MIN).await?;
    assert!(matches!(killed.rollout.state, RolloutState::Killed { .. }));
    assert_eq!(store.fault_counts().unwrap().unknown_applied, 4);
    // A new call is not a rerun.
    assert!(matches!(
        rollouts.kill("oncall", &ro.id, T0 + 13 * MIN).await,
        Err(RolloutError::Finished(_))
    ));
    assert_eq!(rule_pct(&flags.snapshot().await?), 0);
    let log = flags
        .audit(&AuditQuery {
            target: Some(format!("rollout:{}", ro.id)),
            ..Default::default()
        })
        .await?;
    let actions: Vec<_> = log.iter().map(|e| e.record.action).collect();
    assert_eq!(
        actions,
        vec![
            AuditAction::RolloutStart,
            AuditAction::RolloutStage,
            AuditAction::RolloutStage,
            AuditAction::RolloutKill
        ]
    );
    Ok(())
}

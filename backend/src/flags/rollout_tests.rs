//! Rollout tests of the store-backed driver against the real embedded store
//! with telemetry counters (the pure state machine's are in
//! `rollout_machine_tests.rs`).

use std::time::Duration;

use super::rollout_machine_tests::{gate, plan, MIN, T0};

use super::tests::{bool_flag, open, player};
use super::*;
use crate::audit::{AuditAction, AuditQuery};
use crate::telemetry::{flush_cohort_deltas, CohortDeltas, COHORT_WINDOW_MS};

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

//! Flag evaluation tests (pure) and flags service tests against the real embedded
//! store in a temporary directory.

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::store::embedded::EmbeddedStore;

pub(crate) fn player(i: u64) -> String {
    format!("{:032x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

pub(crate) fn ctx(
    player: &str,
    region: &str,
    platform: &str,
    version: &str,
    segments: &[&str],
) -> EvalContext {
    EvalContext {
        player: player.to_owned(),
        region: region.to_owned(),
        platform: platform.to_owned(),
        client_version: version.parse().expect("version"),
        segments: segments.iter().map(|s| s.to_string()).collect(),
    }
}

fn on() -> FlagValue {
    FlagValue::Bool(true)
}

fn rule(id: &str, when: Conditions, value: FlagValue) -> Rule {
    Rule {
        id: id.into(),
        when,
        value,
        percentage_bp: FULL_BP,
    }
}

pub(crate) fn bool_flag(key: &str, rules: Vec<Rule>) -> Flag {
    Flag {
        key: key.into(),
        description: String::new(),
        default: FlagValue::Bool(false),
        rules,
        enabled: true,
    }
}

pub(crate) async fn open() -> anyhow::Result<(tempfile::TempDir, EmbeddedStore)> {
    let dir = tempfile::tempdir()?;
    let store = crate::store::testing::open_store(dir.path()).await?;
    Ok((dir, store))
}

#[test]
fn each_targeting_rule_kind() {
    let p = player(1);
    let base = ctx(&p, "eu-west", "pc", "1.5.0", &[]);
    let cases: Vec<(&str, Conditions, EvalContext, EvalContext)> = vec![
        (
            "region",
            Conditions {
                regions: vec!["eu-west".into(), "eu-north".into()],
                ..Default::default()
            },
            base.clone(),
            ctx(&p, "us-east", "pc", "1.5.0", &[]),
        ),
        (
            "platform",
            Conditions {
                platforms: vec!["pc".into()],
                ..Default::default()
            },
            base.clone(),
            ctx(&p, "eu-west", "ps5", "1.5.0", &[]),
        ),
        (
            "version range",
            Conditions {
                client_version: Some(VersionRange {
                    min: Some("1.5.0".parse().unwrap()),
                    max: Some("2.0.0".parse().unwrap()),
                }),
                ..Default::default()
            },
            base.clone(),
            ctx(&p, "eu-west", "pc", "1.4.9", &[]),
        ),
        (
            "version range (upper bound exclusive)",
            Conditions {
                client_version: Some(VersionRange {
                    min: None,
                    max: Some("1.5.1".parse().unwrap()),
                }),
                ..Default::default()
            },
            base.clone(),
            ctx(&p, "eu-west", "pc", "1.5.1", &[]),
        ),
        (
            "segment",
            Conditions {
                segments: vec!["qa".into(), "staff".into()],
                ..Default::default()
            },
            ctx(&p, "eu-west", "pc", "1.5.0", &["staff"]),
            ctx(&p, "eu-west", "pc", "1.5.0", &["vip"]),
        ),
        (
            "all together (AND)",
            Conditions {
                regions: vec!["eu-west".into()],
                platforms: vec!["pc".into()],
                ..Default::default()
            },
            base.clone(),
            ctx(&p, "eu-west", "xbox", "1.5.0", &[]),
        ),
    ];
    for (name, when, hit, miss) in cases {
        let f = bool_flag("k", vec![rule("r", when, on())]);
        f.validate().expect(name);
        assert_eq!(evaluate(&f, &hit), on(), "{name}: should match");
        assert_eq!(evaluate_detailed(&f, &hit).1, Reason::Rule("r"), "{name}");
        assert_eq!(
            evaluate(&f, &miss),
            FlagValue::Bool(false),
            "{name}: should not match"
        );
        assert_eq!(evaluate_detailed(&f, &miss).1, Reason::Default, "{name}");
    }
}

#[test]
fn first_applicable_rule_wins_and_kill_switch_serves_default() {
    let mut f = Flag {
        key: "difficulty".into(),
        description: String::new(),
        default: FlagValue::Number(1.0),
        rules: vec![
            rule(
                "qa",
                Conditions {
                    segments: vec!["qa".into()],
                    ..Default::default()
                },
                FlagValue::Number(3.0),
            ),
            rule(
                "eu",
                Conditions {
                    regions: vec!["eu-west".into()],
                    ..Default::default()
                },
                FlagValue::Number(2.0),
            ),
        ],
        enabled: true,
    };
    let p = player(7);
    assert_eq!(
        evaluate(&f, &ctx(&p, "eu-west", "pc", "1.0.0", &["qa"])),
        FlagValue::Number(3.0)
    );
    assert_eq!(
        evaluate(&f, &ctx(&p, "eu-west", "pc", "1.0.0", &[])),
        FlagValue::Number(2.0)
    );
    assert_eq!(
        evaluate(&f, &ctx(&p, "us-east", "pc", "1.0.0", &[])),
        FlagValue::Number(1.0)
    );
    f.enabled = false;
    assert_eq!(
        evaluate_detailed(&f, &ctx(&p, "eu-west", "pc", "1.0.0", &["qa"])),
        (&FlagValue::Number(1.0), Reason::Disabled)
    );
    let all = evaluate_all(
        [&f, &bool_flag("other", vec![])],
        &ctx(&p, "eu-west", "pc", "1.0.0", &[]),
    );
    assert_eq!(all.len(), 2);
    assert_eq!(all["difficulty"], FlagValue::Number(1.0));
}

#[test]
fn percentage_splits_close_to_the_target_and_cohort_matches_evaluation() {
    let mut f = bool_flag("new_shop", vec![rule("all", Conditions::default(), on())]);
    f.rules[0].percentage_bp = 1000; // 10 %
    let n = 20_000u64;
    let mut inside = 0;
    for i in 0..n {
        let c = ctx(&player(i), "eu-west", "pc", "1.0.0", &[]);
        let got = evaluate(&f, &c) == on();
        inside += u64::from(got);
        let expected = if got { Cohort::Treatment } else { Cohort::Control };
        assert_eq!(cohort(&f, "all", &c), Some(expected));
    }
    // 10 % of 20,000 = 2,000; binomial sd ≈ 42. Allow ±5 sd.
    assert!((1790..=2210).contains(&inside), "{inside} players inside 10%");
}

#[test]
fn cohort_is_none_when_an_earlier_rule_decides_or_the_rule_does_not_match() {
    let f = bool_flag(
        "k",
        vec![
            rule(
                "qa",
                Conditions {
                    segments: vec!["qa".into()],
                    ..Default::default()
                },
                on(),
            ),
            Rule {
                percentage_bp: 5000,
                ..rule(
                    "eu",
                    Conditions {
                        regions: vec!["eu-west".into()],
                        ..Default::default()
                    },
                    on(),
                )
            },
        ],
    );
    let p = player(3);
    assert_eq!(
        cohort(&f, "eu", &ctx(&p, "eu-west", "pc", "1.0.0", &["qa"])),
        None
    );
    assert_eq!(cohort(&f, "eu", &ctx(&p, "us-east", "pc", "1.0.0", &[])), None);
    assert!(cohort(&f, "eu", &ctx(&p, "eu-west", "pc", "1.0.0", &[])).is_some());
    assert_eq!(
        cohort(&f, "missing", &ctx(&p, "eu-west", "pc", "1.0.0", &[])),
        None
    );
}

proptest! {
    #[test]
    fn buckets_are_deterministic_and_cohorts_monotonic(
        key in "[a-z0-9_.-]{1,64}",
        id in "[0-9a-f]{32}",
        low in 0u32..=FULL_BP,
        high in 0u32..=FULL_BP,
    ) {
        let (low, high) = (low.min(high), low.max(high));
        let b = bucket(&key, &id);
        prop_assert!(b < FULL_BP);
        prop_assert_eq!(b, bucket(&key, &id));
        if in_percentage(&key, &id, low) {
            prop_assert!(in_percentage(&key, &id, high), "in at {} but out at {}", low, high);
        }
        prop_assert!(in_percentage(&key, &id, FULL_BP));
        prop_assert!(!in_percentage(&key, &id, 0));
    }
}

#[test]
fn buckets_of_different_flags_are_independent() {
    let n = 10_000u64;
    let both = (0..n)
        .filter(|i| in_percentage("a", &player(*i), 5000) && in_percentage("b", &player(*i), 5000))
        .count();
    // Independent halves overlap on ~25 % (sd ≈ 43); identical ones on 50 %.
    assert!((2300..=2700).contains(&both), "{both}");
}

#[tokio::test]
async fn set_get_list_and_compare_and_set() -> anyhow::Result<()> {
    let (_dir, store) = open().await?;
    let flags = Flags::new(store);
    let f = bool_flag(
        "new_shop",
        vec![rule(
            "eu",
            Conditions {
                regions: vec!["eu-west".into()],
                ..Default::default()
            },
            on(),
        )],
    );
    let r1 = flags.set_flag("alice", f.clone(), Some(0)).await?;
    assert_eq!((r1.version, r1.updated_by.as_str()), (1, "alice"));
    assert!(matches!(
        flags.set_flag("bob", f.clone(), Some(0)).await,
        Err(FlagError::VersionConflict {
            expected: 0,
            actual: 1,
            ..
        })
    ));
    let mut f2 = f.clone();
    f2.enabled = false;
    assert_eq!(flags.set_flag("bob", f2.clone(), Some(1)).await?.version, 2);
    assert_eq!(flags.get_flag("new_shop").await?.expect("exists").flag, f2);
    flags.set_flag("bob", bool_flag("another", vec![]), None).await?;
    let keys: Vec<_> = flags.list().await?.into_iter().map(|r| r.flag.key).collect();
    assert_eq!(keys, vec!["another", "new_shop"]);
    assert!(flags.delete_flag("bob", "another", Some(1)).await?);
    assert!(!flags.delete_flag("bob", "another", None).await?);
    assert!(flags.get_flag("another").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn malformed_flag_is_refused_and_nothing_changes() -> anyhow::Result<()> {
    let (_dir, store) = open().await?;
    let flags = Flags::new(store);
    let good = bool_flag("k", vec![rule("r", Conditions::default(), on())]);
    flags.set_flag("alice", good.clone(), None).await?;
    let w = flags.watch_flags().await?;
    let mut bad = good.clone();
    bad.rules[0].value = FlagValue::String("yes".into());
    match flags.set_flag("alice", bad, None).await {
        Err(FlagError::InvalidFlag { key, field, reason }) => {
            assert_eq!((key.as_str(), field.as_str()), ("k", "rules[0].value"));
            assert!(reason.contains("String"), "{reason}");
        }
        other => panic!("expected InvalidFlag, got {other:?}"),
    }
    let stored = flags.get_flag("k").await?.expect("exists");
    assert_eq!((stored.version, stored.flag), (1, good));
    let mut w = Box::pin(w);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut w)
            .await
            .is_err(),
        "no change, no watch"
    );
    Ok(())
}

#[tokio::test]
async fn watch_fires_on_flag_and_segment_changes() -> anyhow::Result<()> {
    let (_dir, store) = open().await?;
    let flags = Flags::new(store.clone());
    let other_gateway = Flags::new(store);
    let (snap, watch) = flags.snapshot_and_watch().await?;
    assert!(snap.flags.is_empty());
    other_gateway
        .set_flag("alice", bool_flag("k", vec![]), None)
        .await?;
    tokio::time::timeout(Duration::from_secs(5), watch).await??;

    let (snap, watch) = flags.snapshot_and_watch().await?;
    assert_eq!(snap.flags.len(), 1);
    assert_eq!(watch.seq, snap.seq);
    other_gateway.add_to_segment("alice", "qa", &[&player(1)]).await?;
    tokio::time::timeout(Duration::from_secs(5), watch).await??;
    let (snap, _) = flags.snapshot_and_watch().await?;
    assert_eq!(snap.segments_of(&player(1)), BTreeSet::from(["qa".to_string()]));
    Ok(())
}

#[tokio::test]
async fn segments_feed_evaluation_and_are_bounded() -> anyhow::Result<()> {
    let (_dir, store) = open().await?;
    let flags = Flags::new(store);
    let f = bool_flag(
        "beta",
        vec![rule(
            "qa",
            Conditions {
                segments: vec!["qa".into()],
                ..Default::default()
            },
            on(),
        )],
    );
    flags.set_flag("alice", f, None).await?;
    let (p1, p2, p3) = (player(1), player(2), player(3));
    assert_eq!(flags.add_to_segment("alice", "qa", &[&p1, &p2]).await?, 2);
    assert_eq!(
        flags.add_to_segment("alice", "qa", &[&p2, &p3]).await?,
        1,
        "p2 was already in"
    );
    assert_eq!(flags.remove_from_segment("alice", "qa", &[&p2]).await?, 1);
    assert_eq!(flags.segment_members("qa").await?, {
        let mut v = vec![p1.clone(), p3.clone()];
        v.sort();
        v
    });
    let snap = flags.snapshot().await?;
    let values = |p: &str| snap.evaluate_all(&snap.context(p, "eu-west", "pc", "1.0.0".parse().unwrap()));
    assert_eq!(values(&p1)["beta"], on());
    assert_eq!(values(&p2)["beta"], FlagValue::Bool(false));

    assert!(matches!(
        flags.add_to_segment("alice", "qa", &["not-a-player"]).await,
        Err(FlagError::InvalidSegment(_))
    ));
    assert!(matches!(
        flags.add_to_segment("alice", "Bad Name", &[&p1]).await,
        Err(FlagError::InvalidSegment(_))
    ));
    let too_many: Vec<String> = (0..=MAX_SEGMENT_BATCH as u64).map(player).collect();
    let refs: Vec<&str> = too_many.iter().map(|s| s.as_str()).collect();
    assert!(matches!(
        flags.add_to_segment("alice", "big", &refs).await,
        Err(FlagError::InvalidSegment(_))
    ));
    Ok(())
}

#[tokio::test]
async fn segment_member_bound_is_enforced() -> anyhow::Result<()> {
    let (_dir, store) = open().await?;
    let flags = Flags::new(store);
    let ids: Vec<String> = (0..MAX_SEGMENT_MEMBERS as u64).map(player).collect();
    for chunk in ids.chunks(MAX_SEGMENT_BATCH) {
        let refs: Vec<&str> = chunk.iter().map(|s| s.as_str()).collect();
        flags.add_to_segment("alice", "big", &refs).await?;
    }
    let extra = player(MAX_SEGMENT_MEMBERS as u64 + 1);
    assert!(matches!(
        flags.add_to_segment("alice", "big", &[&extra]).await,
        Err(FlagError::SegmentLimit(_))
    ));
    // After a removal there is room again.
    flags.remove_from_segment("alice", "big", &[&ids[0]]).await?;
    assert_eq!(flags.add_to_segment("alice", "big", &[&extra]).await?, 1);
    assert_eq!(flags.segment_members("big").await?.len(), MAX_SEGMENT_MEMBERS);
    Ok(())
}

#[tokio::test]
async fn flag_changes_are_audited_with_old_and_new() -> anyhow::Result<()> {
    let (_dir, store) = open().await?;
    let flags = Flags::new(store);
    let f1 = bool_flag("k", vec![]);
    let mut f2 = f1.clone();
    f2.enabled = false;
    flags.set_flag("alice", f1.clone(), None).await?;
    flags.set_flag("bob", f2.clone(), None).await?;
    flags.delete_flag("carol", "k", None).await?;
    let log = flags
        .audit(&audit::AuditQuery {
            target: Some("flag:k".into()),
            ..Default::default()
        })
        .await?;
    let got: Vec<_> = log
        .iter()
        .map(|e| (e.record.actor.as_str(), e.record.action))
        .collect();
    assert_eq!(
        got,
        vec![
            ("alice", AuditAction::FlagSet),
            ("bob", AuditAction::FlagSet),
            ("carol", AuditAction::FlagDelete)
        ]
    );
    assert_eq!(log[1].record.old, Some(serde_json::to_value(&f1)?));
    assert_eq!(log[1].record.new, Some(serde_json::to_value(&f2)?));
    assert!(log.windows(2).all(|w| w[0].id < w[1].id));
    // Paging with the cursor continues after the given entry.
    let page = flags
        .audit(&audit::AuditQuery {
            target: Some("flag:k".into()),
            after: Some(log[0].id),
            limit: 1,
        })
        .await?;
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, log[1].id);
    Ok(())
}

/// Under "commit applied, then result unknown" (every other commit, on a store
/// opened with that fault on purpose), each set and delete still happens once:
/// versions step by one, no spurious version conflict, one audit record each.
#[tokio::test]
async fn set_and_delete_are_exactly_once_when_commits_report_unknown() -> anyhow::Result<()> {
    use crate::store::embedded::faults::FaultConfig;
    let dir = tempfile::tempdir()?;
    let config = crate::store::embedded::EmbeddedConfig {
        faults: Some("seed=11,unknown_applied=0.5".parse::<FaultConfig>()?),
        ..crate::store::embedded::EmbeddedConfig::new(dir.path())
    };
    let store = EmbeddedStore::open(config).await?;
    let flags = Flags::new(store.clone());
    let mut f = bool_flag("k", vec![]);
    for n in 1..=20u64 {
        f.enabled = n % 2 == 0;
        // With the expected version: a rerun that saw its own write must not
        // report a conflict.
        let rec = flags.set_flag("alice", f.clone(), Some(n - 1)).await?;
        assert_eq!(rec.version, n);
        assert_eq!(flags.get_flag("k").await?.map(|r| r.version), Some(n));
    }
    assert!(flags.delete_flag("bob", "k", Some(20)).await?);
    let log = flags
        .audit(&audit::AuditQuery {
            target: Some("flag:k".into()),
            ..Default::default()
        })
        .await?;
    assert_eq!(log.len(), 21, "one audit record per change");
    let injected = store.fault_counts().expect("fault mode on").unknown_applied;
    assert!(injected >= 5, "only {injected} unknown results injected");
    Ok(())
}

/// A segment change whose commit applied, then reported an unknown result
/// (forced): the rerun answers with the first attempt's count, and the change
/// is made and audited once.
#[tokio::test]
async fn a_segment_change_rerun_after_it_applied_returns_the_first_count() -> anyhow::Result<()> {
    use crate::store::testing::{open_scripted_store, CommitFault};
    let dir = tempfile::tempdir()?;
    let store = open_scripted_store(dir.path()).await?;
    let flags = Flags::new(store.clone());
    let (p1, p2, p3) = (player(1), player(2), player(3));
    assert!(store.script_commit_faults([CommitFault::UnknownApplied]));
    assert_eq!(flags.add_to_segment("alice", "qa", &[&p1, &p2]).await?, 2);
    assert!(store.script_commit_faults([CommitFault::UnknownApplied]));
    assert_eq!(flags.add_to_segment("alice", "qa", &[&p2, &p3]).await?, 1);
    assert!(store.script_commit_faults([CommitFault::UnknownApplied]));
    assert_eq!(flags.remove_from_segment("alice", "qa", &[&p1, &p3]).await?, 2);
    assert_eq!(store.fault_counts().unwrap().unknown_applied, 3);
    // A second call is a new call: nothing left to remove.
    assert_eq!(flags.remove_from_segment("alice", "qa", &[&p1]).await?, 0);
    assert_eq!(flags.segment_members("qa").await?, vec![p2.clone()]);
    let log = flags
        .audit(&audit::AuditQuery {
            target: Some("segment:qa".into()),
            ..Default::default()
        })
        .await?;
    assert_eq!(log.len(), 3, "one audit record per change");
    Ok(())
}

//! Player state tests against the real embedded store in a temporary directory.

use std::time::Duration;

use super::*;
use crate::store::embedded::EmbeddedStore;

const P1: &str = "0123456789abcdef0123456789abcdef";
const P2: &str = "fedcba9876543210fedcba9876543210";

async fn open(region: &str) -> anyhow::Result<(tempfile::TempDir, PlayerState<EmbeddedStore>)> {
    let dir = tempfile::tempdir()?;
    let store = crate::store::testing::open_store(dir.path()).await?;
    Ok((dir, PlayerState::new(store, region)?))
}

#[tokio::test]
async fn create_update_get_list() -> anyhow::Result<()> {
    let (_dir, st) = open("eu").await?;
    assert_eq!(st.get(P1, "profile").await?, None);
    assert_eq!(st.compare_and_set(P1, "profile", 0, b"v1").await?, 1);
    assert_eq!(st.compare_and_set(P1, "profile", 1, b"v2").await?, 2);
    assert_eq!(st.compare_and_set(P1, "loadout", 0, b"L").await?, 1);
    let doc = st.get(P1, "profile").await?.expect("exists");
    assert_eq!((doc.version, doc.value.as_slice()), (2, &b"v2"[..]));
    assert!(doc.updated_ms > 1_600_000_000_000);
    let names: Vec<_> = st
        .list(P1)
        .await?
        .into_iter()
        .map(|d| (d.name, d.version))
        .collect();
    assert_eq!(
        names,
        vec![("loadout".to_string(), 1), ("profile".to_string(), 2)]
    );
    assert!(st.list(P2).await?.is_empty(), "players are separate");
    Ok(())
}

#[tokio::test]
async fn stale_or_wrong_expected_version_is_a_conflict() -> anyhow::Result<()> {
    let (_dir, st) = open("eu").await?;
    st.compare_and_set(P1, "profile", 0, b"a").await?;
    st.compare_and_set(P1, "profile", 1, b"b").await?;
    for (expected, actual) in [(1, 2), (0, 2), (3, 2)] {
        match st.compare_and_set(P1, "profile", expected, b"x").await {
            Err(StateError::VersionConflict {
                expected: e,
                actual: a,
            }) => {
                assert_eq!((e, a), (expected, actual));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    match st.compare_and_set(P1, "other", 5, b"x").await {
        Err(StateError::VersionConflict {
            expected: 5,
            actual: 0,
        }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(st.get(P1, "profile").await?.unwrap().value, b"b");
    Ok(())
}

#[tokio::test]
async fn concurrent_cas_on_one_version_has_exactly_one_winner() -> anyhow::Result<()> {
    let (_dir, st) = open("eu").await?;
    st.compare_and_set(P1, "progression", 0, b"start").await?;
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let st = st.clone();
        tasks.push(tokio::spawn(async move {
            st.compare_and_set(P1, "progression", 1, &[i]).await
        }));
    }
    let (mut wins, mut conflicts) = (Vec::new(), 0);
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await? {
            Ok(v) => wins.push((i as u8, v)),
            Err(StateError::VersionConflict {
                expected: 1,
                actual: 2,
            }) => conflicts += 1,
            Err(e) => return Err(e.into()),
        }
    }
    assert_eq!(wins.len(), 1, "{wins:?}");
    assert_eq!(conflicts, 15);
    let doc = st.get(P1, "progression").await?.unwrap();
    assert_eq!(doc.version, 2);
    assert_eq!(doc.value, vec![wins[0].0]);
    Ok(())
}

#[tokio::test]
async fn input_bounds() -> anyhow::Result<()> {
    let (_dir, st) = open("eu").await?;
    let big = vec![0u8; MAX_DOC_BYTES + 1];
    assert!(matches!(
        st.compare_and_set(P1, "profile", 0, &big).await,
        Err(StateError::DocumentTooLarge { .. })
    ));
    assert_eq!(st.compare_and_set(P1, "profile", 0, &big[1..]).await?, 1);
    assert_eq!(st.get(P1, "profile").await?.unwrap().value.len(), MAX_DOC_BYTES);
    assert!(matches!(
        st.compare_and_set(P1, "Bad Name", 0, b"").await,
        Err(StateError::InvalidDocName(_))
    ));
    assert!(matches!(
        st.get("not-hex", "profile").await,
        Err(StateError::InvalidPlayerId(_))
    ));
    assert!(PlayerState::new(st.store.clone(), "bad region").is_err());
    Ok(())
}

#[tokio::test]
async fn document_count_is_bounded() -> anyhow::Result<()> {
    let (_dir, st) = open("eu").await?;
    for i in 0..MAX_DOCS_PER_PLAYER {
        st.compare_and_set(P1, &format!("d{i}"), 0, b"").await?;
    }
    assert!(matches!(
        st.compare_and_set(P1, "one-more", 0, b"").await,
        Err(StateError::TooManyDocuments { .. })
    ));
    // Updating an existing document still works at the limit.
    assert_eq!(st.compare_and_set(P1, "d0", 1, b"x").await?, 2);
    Ok(())
}

#[tokio::test]
async fn watch_fires_on_change_from_another_handle_and_not_otherwise() -> anyhow::Result<()> {
    let (_dir, st) = open("eu").await?;
    // A second service instance over the same store stands in for another gateway.
    let other = PlayerState::new(st.store.clone(), "eu")?;
    st.compare_and_set(P1, "profile", 0, b"a").await?;

    let (docs, mut watch) = st.list_and_watch(P1).await?;
    assert_eq!(docs.len(), 1);
    assert_eq!(watch.seq, 1);
    // Nothing changed yet: the watch stays pending; a write to another player
    // does not wake it.
    other.compare_and_set(P2, "profile", 0, b"z").await?;
    assert!(tokio::time::timeout(Duration::from_millis(200), &mut watch)
        .await
        .is_err());

    other.compare_and_set(P1, "profile", 1, b"b").await?;
    tokio::time::timeout(Duration::from_secs(5), watch).await??;

    let w2 = st.watch_changes(P1).await?;
    assert_eq!(w2.seq, 2);
    other.compare_and_set(P1, "loadout", 0, b"l").await?;
    tokio::time::timeout(Duration::from_secs(5), w2).await??;
    Ok(())
}

#[tokio::test]
async fn regions_are_separate_keyspaces() -> anyhow::Result<()> {
    let (_dir, eu) = open("eu").await?;
    let us = PlayerState::new(eu.store.clone(), "us")?;
    eu.compare_and_set(P1, "profile", 0, b"eu").await?;
    assert_eq!(us.get(P1, "profile").await?, None);
    assert_eq!(us.compare_and_set(P1, "profile", 0, b"us").await?, 1);
    assert_eq!(eu.get(P1, "profile").await?.unwrap().value, b"eu");
    Ok(())
}

#[tokio::test]
async fn fence_refuses_writes_and_reads_by_state() -> anyhow::Result<()> {
    let (_dir, st) = open("eu").await?;
    st.compare_and_set(P1, "profile", 0, b"a").await?;
    let set_fence = |f: Option<Fence>| {
        st.store.run(move |tx| {
            let f = f.clone();
            async move {
                match &f {
                    Some(f) => fence::set::<_, StateError>(
                        &tx,
                        &crate::keyspace::RegionName::new("eu").unwrap(),
                        P1,
                        f,
                    )?,
                    None => fence::clear::<_, StateError>(
                        &tx,
                        &crate::keyspace::RegionName::new("eu").unwrap(),
                        P1,
                    )?,
                }
                Ok::<_, TxError<StateError>>(())
            }
        })
    };
    set_fence(Some(Fence::Outgoing {
        transfer: "t1".into(),
        to: "us".into(),
    }))
    .await?;
    assert!(matches!(
        st.compare_and_set(P1, "profile", 1, b"b").await,
        Err(StateError::TransferInProgress { transfer }) if transfer == "t1"
    ));
    assert_eq!(
        st.get(P1, "profile").await?.unwrap().value,
        b"a",
        "outgoing allows reads"
    );

    set_fence(Some(Fence::Incoming {
        transfer: "t2".into(),
        from: "us".into(),
    }))
    .await?;
    assert!(matches!(
        st.list(P1).await,
        Err(StateError::TransferInProgress { .. })
    ));

    set_fence(Some(Fence::Moved {
        transfer: "t1".into(),
        to: "us".into(),
    }))
    .await?;
    assert!(matches!(
        st.compare_and_set(P1, "profile", 1, b"b").await,
        Err(StateError::PlayerMoved { to }) if to == "us"
    ));
    assert!(matches!(
        st.get(P1, "profile").await,
        Err(StateError::PlayerMoved { .. })
    ));
    // Other players are unaffected.
    assert_eq!(st.compare_and_set(P2, "profile", 0, b"ok").await?, 1);

    set_fence(None).await?;
    assert_eq!(st.compare_and_set(P1, "profile", 1, b"b").await?, 2);
    Ok(())
}

#[tokio::test]
async fn a_replayed_cas_gets_the_version_it_created_and_writes_nothing() -> anyhow::Result<()> {
    let (_dir, st) = open("eu").await?;
    assert_eq!(st.compare_and_set(P1, "profile", 0, b"first").await?, 1);
    assert_eq!(st.compare_and_set(P1, "profile", 1, b"second").await?, 2);
    let before = st.get(P1, "profile").await?.unwrap();

    // The answer to the second write was lost; the client sends it again.
    assert_eq!(st.compare_and_set(P1, "profile", 1, b"second").await?, 2);
    let after = st.get(P1, "profile").await?.unwrap();
    assert_eq!(
        (after.version, after.updated_ms),
        (before.version, before.updated_ms),
        "nothing written"
    );

    // Not a replay: other bytes, an older base, or a creation replayed after a
    // later write: each is still a conflict.
    for (expected, value) in [(1, &b"other"[..]), (0, &b"second"[..]), (0, &b"first"[..])] {
        match st.compare_and_set(P1, "profile", expected, value).await {
            Err(StateError::VersionConflict { actual: 2, .. }) => {}
            other => panic!("expected a conflict for ({expected}, {value:?}), got {other:?}"),
        }
    }
    // The largest expected version a client can send does not overflow.
    assert!(matches!(
        st.compare_and_set(P1, "profile", u64::MAX, b"second").await,
        Err(StateError::VersionConflict { .. })
    ));
    Ok(())
}

/// A write whose commit applied but reported an unknown result (forced), and a
/// replay of it after a transfer fenced the player: both answer with the
/// version the write created, as the first attempt would have; a new write is
/// still refused by the fence.
#[tokio::test]
async fn a_write_that_applied_is_answered_as_done_on_rerun_even_behind_a_fence() -> anyhow::Result<()> {
    use crate::store::testing::{open_scripted_store, CommitFault};
    let dir = tempfile::tempdir()?;
    let store = open_scripted_store(dir.path()).await?;
    let st = PlayerState::new(store.clone(), "eu")?;
    assert_eq!(st.compare_and_set(P1, "profile", 0, b"a").await?, 1);
    assert!(store.script_commit_faults([CommitFault::UnknownApplied]));
    assert_eq!(st.compare_and_set(P1, "profile", 1, b"b").await?, 2, "rerun");
    assert_eq!(store.fault_counts().unwrap().unknown_applied, 1);

    st.store
        .run(|tx| async move {
            let f = Fence::Outgoing {
                transfer: "t1".into(),
                to: "us".into(),
            };
            fence::set::<_, StateError>(&tx, &crate::keyspace::RegionName::new("eu").unwrap(), P1, &f)?;
            Ok::<_, TxError<StateError>>(())
        })
        .await?;
    // The rerun of "1 -> b" (the fence went up between its attempts).
    assert_eq!(st.compare_and_set(P1, "profile", 1, b"b").await?, 2);
    assert!(matches!(
        st.compare_and_set(P1, "profile", 2, b"c").await,
        Err(StateError::TransferInProgress { .. })
    ));
    assert!(matches!(
        st.compare_and_set(P1, "profile", 1, b"other").await,
        Err(StateError::TransferInProgress { .. })
    ));
    assert_eq!(st.get(P1, "profile").await?.unwrap().version, 2);
    Ok(())
}

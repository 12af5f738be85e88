//! Content tests against the real embedded store in a temporary directory.

use std::time::Duration;

use super::*;
use crate::audit::{self as audit_log, AuditQuery};
use crate::store::embedded::EmbeddedStore;

async fn open() -> anyhow::Result<(tempfile::TempDir, EmbeddedStore, Content<EmbeddedStore>)> {
    let dir = tempfile::tempdir()?;
    let store = crate::store::testing::open_store(dir.path()).await?;
    Ok((dir, store.clone(), Content::new(store)))
}

fn manifest(id: &str, version: u64, min: &str) -> ContentManifest {
    ContentManifest {
        id: id.into(),
        version,
        min_client_version: min.parse().expect("version"),
        assets: vec![
            Asset {
                url: format!("https://cdn.example.com/{id}/{version}/base.pak"),
                sha256: format!("{:064x}", version),
                size: 1000 + version,
            },
            Asset {
                url: format!("https://cdn.example.com/{id}/{version}/extra.pak"),
                sha256: "f".repeat(64),
                size: 7,
            },
        ],
    }
}

#[tokio::test]
async fn publish_get_latest_and_list() -> anyhow::Result<()> {
    let (_dir, _store, content) = open().await?;
    assert!(content.latest("maps").await?.is_none());
    assert!(content.list().await?.is_empty());

    let p1 = content.publish("alice", manifest("maps", 1, "1.0.0")).await?;
    assert_eq!(p1.published_by, "alice");
    assert!(p1.published_ms > 1_600_000_000_000);
    content.publish("alice", manifest("maps", 5, "1.1.0")).await?;
    content.publish("bob", manifest("store", 3, "1.0.0")).await?;

    let latest = content.latest("maps").await?.expect("published");
    assert_eq!(latest.manifest, manifest("maps", 5, "1.1.0"));
    assert_eq!(
        content.get("maps", 1).await?.expect("v1").manifest,
        manifest("maps", 1, "1.0.0")
    );
    assert!(content.get("maps", 2).await?.is_none());
    let list: Vec<_> = content
        .list()
        .await?
        .into_iter()
        .map(|m| (m.manifest.id, m.manifest.version))
        .collect();
    assert_eq!(list, vec![("maps".to_string(), 5), ("store".to_string(), 3)]);
    Ok(())
}

#[tokio::test]
async fn manifests_are_immutable_and_versions_increase() -> anyhow::Result<()> {
    let (_dir, _store, content) = open().await?;
    let first = content.publish("alice", manifest("maps", 2, "1.0.0")).await?;

    // Same (id, version), different contents: refused, the original stays.
    let mut changed = manifest("maps", 2, "1.0.0");
    changed.assets[0].size += 1;
    assert!(matches!(
        content.publish("mallory", changed).await,
        Err(ContentError::AlreadyPublished { version: 2, .. })
    ));
    assert_eq!(content.get("maps", 2).await?.expect("kept"), first);

    // Identical re-publish is idempotent: the first record comes back unchanged.
    let again = content
        .publish("alice-retry", manifest("maps", 2, "1.0.0"))
        .await?;
    assert_eq!(again, first);

    // Older than the latest: refused, latest unchanged.
    assert!(matches!(
        content.publish("alice", manifest("maps", 1, "1.0.0")).await,
        Err(ContentError::VersionNotNewer {
            version: 1,
            latest: 2,
            ..
        })
    ));
    assert_eq!(content.latest("maps").await?.expect("latest").manifest.version, 2);

    // Invalid manifests write nothing.
    let mut bad = manifest("maps", 3, "1.0.0");
    bad.assets[1].sha256 = "nothex".into();
    assert!(matches!(
        content.publish("alice", bad).await,
        Err(ContentError::InvalidManifest(_))
    ));
    assert!(content.get("maps", 3).await?.is_none());
    assert!(matches!(
        content.publish("", manifest("maps", 3, "1.0.0")).await,
        Err(ContentError::InvalidActor)
    ));
    Ok(())
}

#[tokio::test]
async fn oversized_manifest_is_refused() -> anyhow::Result<()> {
    let (_dir, _store, content) = open().await?;
    let mut m = manifest("big", 1, "1.0.0");
    m.assets = (0..MAX_ASSETS)
        .map(|i| Asset {
            url: format!("https://cdn.example.com/{}/{i}", "x".repeat(600)),
            sha256: "0".repeat(64),
            size: 1,
        })
        .collect();
    match content.publish("alice", m).await {
        Err(ContentError::InvalidManifest(msg)) => assert!(msg.contains("limit"), "{msg}"),
        other => panic!("expected too large, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn client_too_old_carries_the_minimum() -> anyhow::Result<()> {
    let (_dir, _store, content) = open().await?;
    content.publish("alice", manifest("maps", 1, "2.3.0")).await?;
    let m = content.latest("maps").await?.expect("published").manifest;
    assert!(m.check_client("2.3.0".parse()?).is_ok());
    assert!(m.check_client("2.10.0".parse()?).is_ok());
    match m.check_client("2.2.9".parse()?) {
        Err(ContentError::ClientTooOld { min, client }) => {
            assert_eq!(min.to_string(), "2.3.0");
            assert_eq!(client.to_string(), "2.2.9");
        }
        other => panic!("expected ClientTooOld, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn watch_fires_on_publish_from_another_handle() -> anyhow::Result<()> {
    let (_dir, store, content) = open().await?;
    let (list, watch) = content.list_and_watch().await?;
    assert!(list.is_empty());
    let seq0 = watch.seq;

    // Nothing published: the watch stays pending.
    let mut watch = Box::pin(watch);
    assert!(tokio::time::timeout(Duration::from_millis(200), &mut watch)
        .await
        .is_err());

    // Another handle on the same store (another gateway's view) publishes.
    let other = Content::new(store.clone());
    other.publish("alice", manifest("maps", 1, "1.0.0")).await?;
    tokio::time::timeout(Duration::from_secs(5), watch).await??;

    let w2 = content.watch_content().await?;
    assert_eq!(w2.seq, seq0 + 1, "one publish, one bump");
    // A refused publish does not bump the counter.
    assert!(other
        .publish("alice", manifest("maps", 1, "9.9.9"))
        .await
        .is_err());
    let mut w2 = Box::pin(w2);
    assert!(tokio::time::timeout(Duration::from_millis(200), &mut w2)
        .await
        .is_err());
    other.publish("alice", manifest("maps", 2, "1.0.0")).await?;
    tokio::time::timeout(Duration::from_secs(5), w2).await??;
    Ok(())
}

#[tokio::test]
async fn publishes_are_audited() -> anyhow::Result<()> {
    let (_dir, store, content) = open().await?;
    content.publish("alice", manifest("maps", 1, "1.0.0")).await?;
    content.publish("bob", manifest("maps", 2, "1.0.0")).await?;
    content.publish("bob", manifest("maps", 2, "1.0.0")).await?; // idempotent: no record
    let entries = audit_log::read(
        &store,
        &AuditQuery {
            target: Some("content:maps".into()),
            ..Default::default()
        },
    )
    .await?;
    let seen: Vec<_> = entries
        .iter()
        .map(|e| {
            (
                e.record.actor.as_str(),
                e.record.new.as_ref().map(|n| n["version"].clone()),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("alice", Some(serde_json::json!(1))),
            ("bob", Some(serde_json::json!(2)))
        ]
    );
    assert_eq!(entries[1].record.old, Some(serde_json::json!({"version": 1})));
    Ok(())
}

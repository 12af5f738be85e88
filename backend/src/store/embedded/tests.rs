//! Group commit and relaxed durability on the real embedded store in a temp dir.

use std::time::Duration;

use super::*;
use crate::store::{Transaction, TxError};

async fn open() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path()))
        .await
        .expect("open");
    (dir, store)
}

fn syncs(store: &EmbeddedStore) -> u64 {
    store.inner.group.as_ref().expect("durable mode").syncs()
}

async fn put(store: &EmbeddedStore, durability: Durability, k: &[u8], v: &[u8]) {
    let options = TransactOptions {
        durability,
        ..TransactOptions::default()
    };
    store
        .transact(options, |tx| {
            let (k, v) = (k.to_vec(), v.to_vec());
            async move {
                tx.set(&k, &v)?;
                Ok::<_, TxError>(())
            }
        })
        .await
        .expect("commit");
}

async fn read(store: &EmbeddedStore, k: &[u8]) -> Option<Vec<u8>> {
    store
        .run(|tx| {
            let k = k.to_vec();
            async move { Ok::<_, TxError>(tx.get(&k).await?) }
        })
        .await
        .expect("read")
}

#[tokio::test]
async fn relaxed_commits_and_their_readers_cause_no_journal_sync() {
    let (_dir, store) = open().await;
    put(&store, Durability::Durable, b"d0", b"x").await;
    let before = syncs(&store);
    assert!(before >= 1, "a durable commit waits for a sync");

    for i in 0..50u32 {
        put(&store, Durability::Relaxed, format!("r{i}").as_bytes(), b"y").await;
        // Reading what a relaxed commit wrote does not wait for it to be durable.
        assert_eq!(
            read(&store, format!("r{i}").as_bytes()).await.as_deref(),
            Some(&b"y"[..])
        );
    }
    // Nothing asked for a sync; give the flusher a moment to prove it stays idle.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        syncs(&store),
        before,
        "relaxed commits must not trigger journal syncs"
    );

    // A durable commit syncs the journal, which holds the relaxed commits before it.
    put(&store, Durability::Durable, b"d1", b"z").await;
    assert!(syncs(&store) > before);
}

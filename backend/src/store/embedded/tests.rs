//! Group commit and relaxed durability on the real embedded store in a temp dir.

use std::time::{Duration, Instant};

use super::*;
use crate::store::{Durability, Transaction, TxError};

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

/// A durable store whose group commit lingers `linger` (see the linger test).
async fn open_lingering(linger: Duration) -> (tempfile::TempDir, EmbeddedStore) {
    open_lingering_with(linger, true).await
}

/// As [`open_lingering`], with the adaptive (`true`) or fixed linger.
async fn open_lingering_with(linger: Duration, adaptive: bool) -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(EmbeddedConfig {
        group_commit_linger_us: linger.as_micros() as u64,
        group_commit_adaptive: adaptive,
        ..EmbeddedConfig::new(dir.path())
    })
    .await
    .expect("open");
    (dir, store)
}

/// Commits waves of 16 concurrent durable writes until one fsync has released
/// more than one waiter, so that the next fsync lingers.
async fn share_an_fsync(store: &EmbeddedStore) {
    for wave in 0.. {
        assert!(wave < 20, "16 concurrent commits never shared an fsync");
        let commits = (0..16).map(|i| {
            let key = format!("w{wave}-{i}");
            async move { put(store, Durability::Durable, key.as_bytes(), b"y").await }
        });
        futures::future::join_all(commits).await;
        if store.inner.group.as_ref().expect("durable mode").last_batch() > 1 {
            return;
        }
    }
}

#[tokio::test]
async fn group_commit_lingers_only_after_a_shared_fsync() {
    // A long linger, so that waiting for it cannot be confused with a slow fsync.
    let linger = Duration::from_secs(1);
    let (_dir, store) = open_lingering(linger).await;
    let group = || store.inner.group.as_ref().expect("durable mode");

    // A lone commit on an idle store: no linger.
    let t = Instant::now();
    put(&store, Durability::Durable, b"alone", b"x").await;
    assert!(
        t.elapsed() < linger * 9 / 10,
        "idle commit waited {:?}",
        t.elapsed()
    );
    assert!(group().last_batch() <= 1);

    // Concurrent commits share fsyncs; once one fsync released several waiters,
    // the next commit waits for the batch to grow.
    share_an_fsync(&store).await;
    let t = Instant::now();
    put(&store, Durability::Durable, b"after-batch", b"z").await;
    assert!(t.elapsed() >= linger * 9 / 10, "lingered only {:?}", t.elapsed());

    // That fsync covered one commit, so the next lone commit goes at once again.
    assert_eq!(group().last_batch(), 1);
    let t = Instant::now();
    put(&store, Durability::Durable, b"alone-again", b"x").await;
    assert!(
        t.elapsed() < linger * 9 / 10,
        "idle commit waited {:?}",
        t.elapsed()
    );
}

/// After an fsync released `n` commits, `n` concurrent commits make a complete
/// batch: the adaptive linger ends when the last of them arrives, the fixed one
/// waits it out.
async fn time_a_returning_batch(adaptive: bool) -> (Duration, Duration) {
    // A long linger, so that waiting for it cannot be confused with a slow fsync.
    let linger = Duration::from_secs(1);
    let (_dir, store) = open_lingering_with(linger, adaptive).await;
    share_an_fsync(&store).await;
    let n = store.inner.group.as_ref().expect("durable mode").last_batch();
    assert!(n > 1);
    let t = Instant::now();
    futures::future::join_all((0..n).map(|i| {
        let key = format!("back-{i}");
        let store = &store;
        async move { put(store, Durability::Durable, key.as_bytes(), b"b").await }
    }))
    .await;
    (t.elapsed(), linger)
}

#[tokio::test]
async fn adaptive_linger_ends_when_the_last_batch_is_back() {
    let (took, linger) = time_a_returning_batch(true).await;
    assert!(took < linger / 2, "the complete batch still lingered {took:?}");
}

#[tokio::test]
async fn fixed_linger_waits_even_for_a_complete_batch() {
    let (took, linger) = time_a_returning_batch(false).await;
    assert!(took >= linger * 9 / 10, "lingered only {took:?}");
}

#[tokio::test]
async fn relaxed_reads_do_not_wait_for_other_commits_to_become_durable() {
    let linger = Duration::from_secs(1);
    let (_dir, store) = open_lingering(linger).await;
    put(&store, Durability::Relaxed, b"soft", b"1").await;
    share_an_fsync(&store).await;
    // A durable commit now waits ~1 s (linger) for its fsync; meanwhile a read
    // at a version above it either waits for that fsync (durable read) or not.
    let pending = put(&store, Durability::Durable, b"hard", b"2");
    let reads = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let read = |durability| {
            let store = &store;
            async move {
                let options = TransactOptions {
                    durability,
                    ..TransactOptions::default()
                };
                let t = Instant::now();
                let v = store
                    .transact(
                        options,
                        |tx| async move { Ok::<_, TxError>(tx.get(b"soft").await?) },
                    )
                    .await
                    .expect("read");
                assert_eq!(v.as_deref(), Some(&b"1"[..]));
                t.elapsed()
            }
        };
        (read(Durability::Relaxed).await, read(Durability::Durable).await)
    };
    let ((), (relaxed, durable)) = tokio::join!(pending, reads);
    assert!(relaxed < linger / 2, "relaxed read waited {relaxed:?}");
    assert!(
        durable >= linger / 2,
        "durable read returned after {durable:?}, before the fsync"
    );
}

#[test]
fn background_nice_is_validated() {
    let mut config = EmbeddedConfig::new("/tmp/x");
    assert!(config.validate().is_ok());
    for bad in [-1, 20] {
        config.background_nice = bad;
        assert!(matches!(
            config.validate(),
            Err(EmbeddedConfigError::BackgroundNice(n)) if n == bad
        ));
    }
    config.background_nice = 0;
    assert!(config.validate().is_ok());
}

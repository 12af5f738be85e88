//! The committer thread on the real embedded store in a temp dir: a commit
//! that blocks inside the store stops one runtime worker at most, and the
//! store still closes when its last handle is dropped on that thread.

use std::time::Duration;

use super::faults::{CommitFault, FaultConfig};
use super::*;
use crate::store::{Durability, Transaction, TxError};

/// A store whose fault mode injects nothing unless a test scripts it.
async fn open_scriptable(dir: &Path) -> EmbeddedStore {
    let mut config = EmbeddedConfig::new(dir);
    config.faults = Some(FaultConfig::default());
    EmbeddedStore::open(config).await.expect("open")
}

async fn put(store: &EmbeddedStore, k: &'static [u8], v: &'static [u8]) -> Result<(), TxError> {
    store
        .run(|tx| async move {
            tx.set(k, v)?;
            Ok::<_, TxError>(())
        })
        .await
}

async fn get(store: &EmbeddedStore, k: &'static [u8]) -> Option<Vec<u8>> {
    store
        .run(|tx| async move { Ok::<_, TxError>(tx.get(k).await?) })
        .await
        .expect("read")
}

/// Waits until the fault mode has handed out `n` scripted stalls (counted
/// when the commit is planned, just before it is queued) and the first has
/// had time to start.
async fn stall_started(store: &EmbeddedStore, n: u64) {
    while store.fault_counts().expect("fault mode").commit_delay < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// The gateway's shape of runtime: two workers. One commit stalls for 2 s
/// inside the store, holding the commit lock (as when fjall's write stall
/// sleeps), and a second commits after it. When every commit waited for the
/// lock on its caller's thread, the two workers were both stopped until the
/// stall ended: the first in the stall, the second waiting for the lock. Now
/// the second is queued to the committer thread, and other tasks (timers,
/// reads, a transaction's begin) go on on the other worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_stalled_in_the_store_stops_one_runtime_worker_at_most() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_scriptable(dir.path()).await;
    put(&store, b"before", b"0").await.expect("commit");
    assert!(store.script_commit_faults([CommitFault::Stall(Duration::from_secs(2))]));

    let stalled = tokio::spawn({
        let store = store.clone();
        async move { put(&store, b"a", b"1").await }
    });
    stall_started(&store, 1).await;
    let queued = tokio::spawn({
        let store = store.clone();
        async move { put(&store, b"b", b"2").await }
    });
    // Everything the probe does needs a runtime worker: 20 timer wake-ups and
    // a transaction that reads.
    let probe = tokio::spawn({
        let store = store.clone();
        async move {
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            get(&store, b"before").await
        }
    });
    let read = probe.await.expect("probe");
    assert_eq!(read.as_deref(), Some(&b"0"[..]));
    assert!(
        !stalled.is_finished() && !queued.is_finished(),
        "the probe ran while the stalled commit and the one behind it waited"
    );

    stalled.await.expect("task").expect("stalled commit applies");
    queued.await.expect("task").expect("queued commit applies");
    assert_eq!(get(&store, b"a").await.as_deref(), Some(&b"1"[..]));
    assert_eq!(get(&store, b"b").await.as_deref(), Some(&b"2"[..]));
}

/// A caller that stops waiting while its commit is queued does not stop the
/// commit (it is applied, as a commit that started always was), and if the
/// last handle on the store is then the queued job's, the store still closes
/// when the committer thread drops it (the thread ends instead of joining
/// itself), and the directory can be opened again with both commits in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_handle_dropped_by_the_committer_still_closes_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_scriptable(dir.path()).await;
    assert!(store.script_commit_faults([CommitFault::Stall(Duration::from_millis(500))]));
    let stalled = tokio::spawn({
        let store = store.clone();
        async move { put(&store, b"first", b"1").await }
    });
    stall_started(&store, 1).await;
    let gave_up = tokio::time::timeout(Duration::from_millis(100), put(&store, b"second", b"2")).await;
    assert!(gave_up.is_err(), "the second commit was queued behind the stall");
    drop(store);
    stalled.await.expect("task").expect("first commit");

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let reopened = loop {
        match EmbeddedStore::open(EmbeddedConfig::new(dir.path())).await {
            Ok(s) => break s,
            Err(OpenError::Locked { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the store did not close: {e}"),
        }
    };
    assert_eq!(get(&reopened, b"first").await.as_deref(), Some(&b"1"[..]));
    assert_eq!(get(&reopened, b"second").await.as_deref(), Some(&b"2"[..]));
}

/// Read-only transactions without watches begin and commit on their own task:
/// they do not queue behind a stalled commit. (Timed against the stall: each
/// read takes well under a millisecond here, the stall 2 s; when a read had to
/// wait for the commit lock it took the rest of the stall.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_do_not_queue_behind_a_stalled_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_scriptable(dir.path()).await;
    put(&store, b"x", b"1").await.expect("commit");
    assert!(store.script_commit_faults([CommitFault::Stall(Duration::from_secs(2))]));
    let stalled = tokio::spawn({
        let store = store.clone();
        async move { put(&store, b"y", b"2").await }
    });
    stall_started(&store, 1).await;
    let started = std::time::Instant::now();
    for durability in [Durability::Relaxed, Durability::Durable] {
        let options = TransactOptions {
            durability,
            ..TransactOptions::default()
        };
        let v = store
            .transact(options, |tx| async move { Ok::<_, TxError>(tx.get(b"x").await?) })
            .await
            .expect("read");
        assert_eq!(v.as_deref(), Some(&b"1"[..]));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "both reads waited for the stall: {:?}",
        started.elapsed()
    );
    stalled.await.expect("task").expect("commit");
}

/// A transaction that begins while a commit is stalled holding the lock
/// begins without it, at the version its snapshot holds: it does not see the
/// stalled commit's write, so when that commit lands first, its own commit
/// conflicts and the retry reads the new value (serializable, as always).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_begun_during_a_stall_reads_at_its_snapshots_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_scriptable(dir.path()).await;
    assert!(store.script_commit_faults([CommitFault::Stall(Duration::from_millis(500))]));
    let stalled = tokio::spawn({
        let store = store.clone();
        async move { put(&store, b"a", b"1").await }
    });
    stall_started(&store, 1).await;

    let attempts = std::sync::atomic::AtomicU32::new(0);
    store
        .run(|tx| {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                let a = tx.get(b"a").await?;
                tx.set(b"c", a.as_deref().unwrap_or(b"none"))?;
                Ok::<_, TxError>(())
            }
        })
        .await
        .expect("commit");
    stalled.await.expect("task").expect("stalled commit");
    assert_eq!(
        attempts.into_inner(),
        2,
        "the first attempt read before the stalled commit and conflicted with it"
    );
    assert_eq!(get(&store, b"c").await.as_deref(), Some(&b"1"[..]));
}

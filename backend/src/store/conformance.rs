//! The conformance suite: one set of checks, generic over any [`Store`], that every
//! backend must pass. `tests/store_conformance.rs` runs it against the embedded
//! backend (always) and against FoundationDB (feature `fdb`, when
//! `FDB_CLUSTER_FILE` is set).
//!
//! Every case works under its own key prefix inside `root`, clears it first, and
//! panics (with a message) when the backend misbehaves: it is test support, not
//! production code. Cases that need two transactions to overlap do it
//! deterministically: the first transaction's closure runs a whole second
//! transaction between its read and its commit.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use foundationdb_tuple::{Subspace, Versionstamp};

use super::{Durability, KeyValue, Store, StoreError, TransactOptions, Transaction, TxError};

mod add_cases;
mod limit_cases;
pub use add_cases::{adds_after_a_range_clear, adds_after_reads};
pub use limit_cases::limits_are_enforced;

/// One attempt only: a retryable error surfaces as `RetryLimitReached`.
const ONCE: TransactOptions = TransactOptions {
    retry_limit: Some(1),
    timeout: None,
    durability: Durability::Durable,
};

fn key(root: &[u8], case: &str, k: &str) -> Vec<u8> {
    Subspace::from_bytes(root.to_vec()).pack(&(case, k))
}

fn case_range(root: &[u8], case: &str) -> (Vec<u8>, Vec<u8>) {
    Subspace::from_bytes(root.to_vec()).subspace(&(case,)).range()
}

async fn reset<S: Store>(store: &S, root: &[u8], case: &str) {
    let (b, e) = case_range(root, case);
    store
        .run(|tx| {
            let (b, e) = (b.clone(), e.clone());
            async move {
                tx.clear_range(&b, &e)?;
                Ok::<_, TxError>(())
            }
        })
        .await
        .expect("clearing the case's keys");
}

async fn set<S: Store>(store: &S, k: &[u8], v: &[u8]) {
    store
        .run(|tx| async move {
            tx.set(k, v)?;
            Ok::<_, TxError>(())
        })
        .await
        .expect("set");
}

async fn get<S: Store>(store: &S, k: &[u8]) -> Option<Vec<u8>> {
    store
        .run(|tx| async move { Ok::<_, TxError>(tx.get(k).await?) })
        .await
        .expect("get")
}

fn expect_conflict<T: std::fmt::Debug>(r: Result<T, TxError>, what: &str) {
    match r {
        Err(TxError::Store(StoreError::RetryLimitReached { last, .. }))
            if matches!(*last, StoreError::Conflict) => {}
        other => panic!("{what}: expected a conflict, got {other:?}"),
    }
}

/// Runs every case. Takes about 6 s (one case waits out the 5 s transaction limit).
pub async fn run_all<S: Store>(store: &S, root: &[u8]) {
    read_your_writes(store, root).await;
    point_read_conflict(store, root).await;
    range_read_conflict(store, root).await;
    no_conflict_for_snapshot_blind_and_atomic(store, root).await;
    adds_after_reads(store, root).await;
    adds_after_a_range_clear(store, root).await;
    retry_reruns_closure(store, root).await;
    versionstamp_order(store, root).await;
    watches_fire_on_change(store, root).await;
    watches_see_changes_before_their_commit(store, root).await;
    limits_are_enforced(store, root).await;
    relaxed_commits_are_transactions(store, root).await;
    concurrent_increments(store, root, 64, 1000).await;
}

/// A [`Durability::Relaxed`] commit is still a transaction: atomic, visible to
/// every later transaction, conflict-checked, and it fires watches.
pub async fn relaxed_commits_are_transactions<S: Store>(store: &S, root: &[u8]) {
    reset(store, root, "relaxed").await;
    let (a, b) = (key(root, "relaxed", "a"), key(root, "relaxed", "b"));
    let relaxed = TransactOptions {
        durability: Durability::Relaxed,
        ..ONCE
    };
    let watch = store
        .run(|tx| {
            let a = a.clone();
            async move {
                tx.get(&a).await?;
                Ok::<_, TxError>(tx.watch(&a)?)
            }
        })
        .await
        .expect("watch");
    store
        .transact(relaxed, |tx| {
            let (a, b) = (a.clone(), b.clone());
            async move {
                tx.set(&a, b"1")?;
                tx.set(&b, b"2")?;
                Ok::<_, TxError>(())
            }
        })
        .await
        .expect("relaxed commit");
    assert_eq!(
        get(store, &a).await.as_deref(),
        Some(&b"1"[..]),
        "visible at once"
    );
    assert_eq!(get(store, &b).await.as_deref(), Some(&b"2"[..]), "atomic");
    tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("a relaxed commit fires watches")
        .expect("watch");
    let r = store
        .transact(relaxed, |tx| {
            let a = a.clone();
            async move {
                let _ = tx.get(&a).await?;
                set(store, &a, b"3").await; // interferes
                tx.set(&a, b"4")?;
                Ok::<_, TxError>(())
            }
        })
        .await;
    expect_conflict(r, "relaxed commits are conflict-checked");
    assert_eq!(get(store, &a).await.as_deref(), Some(&b"3"[..]));
}

/// Reads see the transaction's own sets, clears, range clears and atomic adds,
/// merged with committed data, forward and reverse, with limits.
pub async fn read_your_writes<S: Store>(store: &S, root: &[u8]) {
    reset(store, root, "ryw").await;
    let k = |s: &str| key(root, "ryw", s);
    for s in ["a", "b", "c", "d", "e"] {
        set(store, &k(s), s.as_bytes()).await;
    }
    set(store, &k("n"), &40i64.to_le_bytes()).await;
    let (b, e) = case_range(root, "ryw");
    let seen = store
        .run(|tx| {
            let (b, e) = (b.clone(), e.clone());
            let k = &k;
            async move {
                assert_eq!(tx.get(&k("a")).await?, Some(b"a".to_vec()));
                tx.set(&k("a"), b"A")?;
                assert_eq!(tx.get(&k("a")).await?, Some(b"A".to_vec()), "own set");
                tx.clear(&k("b"))?;
                assert_eq!(tx.get(&k("b")).await?, None, "own clear");
                tx.clear_range(&k("c"), &k("e"))?; // c, d
                tx.set(&k("d"), b"D")?; // set after the range clear wins
                assert_eq!(tx.get(&k("c")).await?, None, "own range clear");
                tx.atomic_add(&k("n"), 2)?;
                tx.atomic_add(&k("n"), -1)?;
                tx.atomic_add(&k("fresh"), 7)?;
                assert_eq!(tx.get(&k("n")).await?, Some(41i64.to_le_bytes().to_vec()));
                let fwd = tx.get_range(&b, &e, None, false).await?;
                let rev = tx.get_range(&b, &e, Some(2), true).await?;
                Ok::<_, TxError>((fwd, rev))
            }
        })
        .await
        .expect("ryw transaction");
    let kv = |s: &str, v: &[u8]| KeyValue {
        key: k(s),
        value: v.to_vec(),
    };
    let expected = vec![
        kv("a", b"A"),
        kv("d", b"D"),
        kv("e", b"e"),
        kv("fresh", &7i64.to_le_bytes()),
        kv("n", &41i64.to_le_bytes()),
    ];
    assert_eq!(seen.0, expected, "forward range with own writes");
    assert_eq!(
        seen.1,
        vec![expected[4].clone(), expected[3].clone()],
        "reverse range, limit 2"
    );
    // And the same is what got committed.
    let committed = store
        .run(|tx| {
            let (b, e) = (b.clone(), e.clone());
            async move { Ok::<_, TxError>(tx.get_range(&b, &e, None, false).await?) }
        })
        .await
        .expect("read back");
    assert_eq!(committed, expected, "committed state");
}

/// A point read conflicts with a later commit that wrote the key.
pub async fn point_read_conflict<S: Store>(store: &S, root: &[u8]) {
    reset(store, root, "pconf").await;
    let k = key(root, "pconf", "k");
    let out = key(root, "pconf", "out");
    set(store, &k, b"0").await;
    let r = store
        .transact(ONCE, |tx| {
            let (k, out) = (k.clone(), out.clone());
            async move {
                let _ = tx.get(&k).await?;
                set(store, &k, b"1").await; // interferes
                tx.set(&out, b"x")?;
                Ok::<_, TxError>(())
            }
        })
        .await;
    expect_conflict(r, "point read then concurrent write");
    assert_eq!(get(store, &out).await, None, "conflicted writes must not apply");
}

/// A range read conflicts with a commit inserting into the range (a phantom), but
/// a limited range read only covers the keys it returned.
pub async fn range_read_conflict<S: Store>(store: &S, root: &[u8]) {
    reset(store, root, "rconf").await;
    let k = |s: &str| key(root, "rconf", s);
    for s in ["r1", "r2", "r3"] {
        set(store, &k(s), b"v").await;
    }
    let r = store
        .transact(ONCE, |tx| async move {
            let k = |s: &str| key(root, "rconf", s);
            let n = tx.get_range(&k("r0"), &k("r9"), None, false).await?.len();
            set(store, &k("r5"), b"phantom").await;
            tx.set(&k("count"), n.to_string().as_bytes())?;
            Ok::<_, TxError>(())
        })
        .await;
    expect_conflict(r, "range read then concurrent insert into the range");

    let r = store
        .transact(ONCE, |tx| async move {
            let k = |s: &str| key(root, "rconf", s);
            let got = tx.get_range(&k("r0"), &k("r9"), Some(2), false).await?;
            assert_eq!(got.len(), 2);
            set(store, &k("r8"), b"beyond the part read").await;
            tx.set(&k("count"), b"2")?;
            Ok::<_, TxError>(())
        })
        .await;
    assert!(
        r.is_ok(),
        "a write past the end of a limited range read must not conflict: {r:?}"
    );
}

/// Snapshot reads, blind writes and atomic adds never conflict.
pub async fn no_conflict_for_snapshot_blind_and_atomic<S: Store>(store: &S, root: &[u8]) {
    reset(store, root, "noconf").await;
    let k = |s: &str| key(root, "noconf", s);
    set(store, &k("s"), b"0").await;
    let (b, e) = case_range(root, "noconf");
    let r = store
        .transact(ONCE, |tx| {
            let (b, e) = (b.clone(), e.clone());
            let k = &k;
            async move {
                let _ = tx.get_snapshot(&k("s")).await?;
                let _ = tx.get_range_snapshot(&b, &e, None, false).await?;
                tx.set(&k("blind"), b"mine")?;
                tx.atomic_add(&k("counter"), 1)?;
                // Another transaction writes everything this one touched.
                store
                    .run(|tx2| async move {
                        tx2.set(&k("s"), b"1")?;
                        tx2.set(&k("blind"), b"theirs")?;
                        tx2.set(&k("new"), b"x")?;
                        tx2.atomic_add(&k("counter"), 10)?;
                        Ok::<_, TxError>(())
                    })
                    .await?;
                Ok::<_, TxError>(())
            }
        })
        .await;
    assert!(
        r.is_ok(),
        "snapshot reads / blind writes / adds conflicted: {r:?}"
    );
    assert_eq!(get(store, &k("blind")).await, Some(b"mine".to_vec()));
    assert_eq!(
        get(store, &k("counter")).await,
        Some(11i64.to_le_bytes().to_vec()),
        "both atomic adds apply"
    );
}

/// On a conflict the retry loop runs the closure again, with fresh reads.
pub async fn retry_reruns_closure<S: Store>(store: &S, root: &[u8]) {
    reset(store, root, "retry").await;
    let k = key(root, "retry", "k");
    set(store, &k, b"first").await;
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = store
        .run(|tx| {
            let (k, attempts) = (k.clone(), attempts.clone());
            async move {
                let n = attempts.fetch_add(1, Ordering::SeqCst);
                let v = tx.get(&k).await?;
                if n == 0 {
                    set(store, &k, b"second").await;
                }
                tx.set(&k, b"done")?;
                Ok::<_, TxError>(v)
            }
        })
        .await
        .expect("retried transaction");
    assert_eq!(attempts.load(Ordering::SeqCst), 2, "closure runs exactly twice");
    assert_eq!(seen, Some(b"second".to_vec()), "the retry sees the new value");
    assert_eq!(get(store, &k).await, Some(b"done".to_vec()));
}

/// Versionstamps increase with commit order; concurrent appends get distinct
/// stamps, and key order equals stamp order.
pub async fn versionstamp_order<S: Store>(store: &S, root: &[u8]) {
    reset(store, root, "vs").await;
    let log = Subspace::from_bytes(root.to_vec()).subspace(&("vs",));
    let append = |who: u32| {
        let (store, log) = (store.clone(), log.clone());
        async move {
            let stamp = store
                .run(|tx| {
                    let log = log.clone();
                    async move {
                        tx.set_versionstamped_key(
                            &log.pack_with_versionstamp(&(Versionstamp::incomplete(0),)),
                            &who.to_be_bytes(),
                        )?;
                        Ok::<_, TxError>(tx.versionstamp())
                    }
                })
                .await
                .expect("append");
            stamp.await.expect("versionstamp after commit")
        }
    };
    let first = append(1000).await;
    let second = append(1001).await;
    assert!(first < second, "sequential commits: {first:?} !< {second:?}");

    let tasks: Vec<_> = (0..16u32).map(|i| tokio::spawn(append(i))).collect();
    let mut stamps = vec![first, second];
    for t in tasks {
        stamps.push(t.await.expect("append task"));
    }
    let (b, e) = log.range();
    let rows = store
        .run(|tx| {
            let (b, e) = (b.clone(), e.clone());
            async move { Ok::<_, TxError>(tx.get_range(&b, &e, None, false).await?) }
        })
        .await
        .expect("read log");
    assert_eq!(rows.len(), 18, "every append is present");
    let key_stamps: Vec<[u8; 10]> = rows
        .iter()
        .map(|kv| {
            let (vs,): (Versionstamp,) = log.unpack(&kv.key).expect("log key");
            vs.transaction_version().try_into().expect("10 bytes")
        })
        .collect();
    let mut sorted = stamps.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 18, "stamps are distinct");
    assert_eq!(key_stamps, sorted, "keys carry the committed stamps, in order");
    assert_eq!(rows[0].value, 1000u32.to_be_bytes());
    assert_eq!(rows[1].value, 1001u32.to_be_bytes());
}

/// A watch fires after a commit changes the key, not before.
pub async fn watches_fire_on_change<S: Store>(store: &S, root: &[u8]) {
    reset(store, root, "watch").await;
    let k = key(root, "watch", "w");
    set(store, &k, b"1").await;
    let mut w = store
        .run(|tx| {
            let k = k.clone();
            async move {
                let _ = tx.get(&k).await?;
                Ok::<_, TxError>(tx.watch(&k)?)
            }
        })
        .await
        .expect("watch");
    set(store, &key(root, "watch", "other"), b"x").await;
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut w)
            .await
            .is_err(),
        "watch fired without a change to its key"
    );
    set(store, &k, b"2").await;
    tokio::time::timeout(Duration::from_secs(10), w)
        .await
        .expect("watch did not fire within 10 s of a change")
        .expect("watch failed");

    // A watch on a missing key fires when the key appears.
    let absent = key(root, "watch", "absent");
    let w2 = store
        .run(|tx| {
            let absent = absent.clone();
            async move { Ok::<_, TxError>(tx.watch(&absent)?) }
        })
        .await
        .expect("watch absent");
    set(store, &absent, b"here").await;
    tokio::time::timeout(Duration::from_secs(10), w2)
        .await
        .expect("watch on absent key did not fire")
        .expect("watch failed");
}

/// A watch whose key another commit changes after the watching transaction
/// read it (with a conflict, by snapshot, or not at all) and before that
/// transaction commits fires; one whose key nobody changes does not.
pub async fn watches_see_changes_before_their_commit<S: Store>(store: &S, root: &[u8]) {
    reset(store, root, "wlate").await;
    for (i, how) in ["conflict", "snapshot", "unread", "untouched"]
        .into_iter()
        .enumerate()
    {
        let k = key(root, "wlate", how);
        set(store, &k, b"1").await;
        let w = store
            .run(|tx| {
                let k = k.clone();
                async move {
                    match i {
                        0 => drop(tx.get(&k).await?),
                        1 => drop(tx.get_snapshot(&k).await?),
                        _ => {}
                    }
                    let w = tx.watch(&k)?;
                    if how != "untouched" {
                        set(store, &k, b"2").await; // after the read, before the commit
                    }
                    Ok::<_, TxError>(w)
                }
            })
            .await
            .expect("watch");
        let fired = tokio::time::timeout(
            Duration::from_millis(if how == "untouched" { 200 } else { 10_000 }),
            w,
        )
        .await;
        if how == "untouched" {
            assert!(fired.is_err(), "watch fired without a change to its key");
        } else {
            fired
                .unwrap_or_else(|_| panic!("{how}: a change before the commit did not fire the watch"))
                .expect("watch failed");
        }
    }
}

/// `tasks` concurrent tasks each increment one key `per_task` times with
/// read-modify-write transactions; no increment may be lost or doubled.
pub async fn concurrent_increments<S: Store>(store: &S, root: &[u8], tasks: u64, per_task: u64) {
    reset(store, root, "incr").await;
    let k = key(root, "incr", "n");
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (store, k) = (store.clone(), k.clone());
            tokio::spawn(async move {
                for _ in 0..per_task {
                    store
                        .transact(
                            TransactOptions {
                                retry_limit: None,
                                timeout: Some(Duration::from_secs(60)),
                                ..TransactOptions::default()
                            },
                            |tx| {
                                let k = k.clone();
                                async move {
                                    let n = match tx.get(&k).await? {
                                        Some(v) => u64::from_be_bytes(v.try_into().expect("8-byte counter")),
                                        None => 0,
                                    };
                                    tx.set(&k, &(n + 1).to_be_bytes())?;
                                    Ok::<_, TxError>(())
                                }
                            },
                        )
                        .await
                        .expect("increment");
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("increment task");
    }
    let n = get(store, &k).await.expect("counter exists");
    assert_eq!(
        u64::from_be_bytes(n.try_into().expect("8 bytes")),
        tasks * per_task,
        "lost or doubled increments"
    );
}

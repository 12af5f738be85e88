//! The conformance case of atomic adds to keys the same transaction read: the
//! add applies to the value present at commit either way, a read with a
//! conflict makes a concurrent write of the key abort the transaction, and a
//! snapshot read does not. (The embedded backend applies an add to a key it
//! read with a conflict to the value it read, without reading it again at
//! commit: these checks are what makes that equivalent.)

use super::{expect_conflict, get, key, reset, set, ONCE};
use crate::store::{Store, Transaction, TxError};

fn counter(v: i64) -> Option<Vec<u8>> {
    Some(v.to_le_bytes().to_vec())
}

/// Reads then adds, alone and with another transaction adding to the same key
/// (and to a key only added to) between the read and the commit.
pub async fn adds_after_reads<S: Store>(store: &S, root: &[u8]) {
    reset(store, root, "readadd").await;
    let k = |s: &str| key(root, "readadd", s);
    set(store, &k("a"), &5i64.to_le_bytes()).await;
    // Alone: the read value plus the delta; a key read with a conflict while
    // absent counts as zero; a second add in the same transaction adds up.
    store
        .transact(ONCE, |tx| {
            let k = &k;
            async move {
                assert_eq!(tx.get(&k("a")).await?, counter(5));
                assert_eq!(tx.get(&k("absent")).await?, None);
                tx.atomic_add(&k("a"), 3)?;
                tx.atomic_add(&k("absent"), 2)?;
                tx.atomic_add(&k("a"), 1)?;
                assert_eq!(tx.get(&k("a")).await?, counter(9), "read your adds");
                Ok::<_, TxError>(())
            }
        })
        .await
        .expect("read then add");
    assert_eq!(get(store, &k("a")).await, counter(9));
    assert_eq!(get(store, &k("absent")).await, counter(2));

    // A concurrent add to a key read with a conflict: this transaction aborts,
    // only the other add applies.
    let r = store
        .transact(ONCE, |tx| {
            let k = &k;
            async move {
                let _ = tx.get(&k("a")).await?;
                tx.atomic_add(&k("a"), 100)?;
                interfere(store, &k("a"), &k("blind")).await?;
                Ok::<_, TxError>(())
            }
        })
        .await;
    expect_conflict(r, "read with a conflict, add, concurrent add");
    assert_eq!(get(store, &k("a")).await, counter(19));
    assert_eq!(get(store, &k("blind")).await, counter(10));

    // The same with a snapshot read: no conflict, and the add applies to the
    // value present at commit (the other add included), as does a blind add.
    store
        .transact(ONCE, |tx| {
            let k = &k;
            async move {
                assert_eq!(tx.get_snapshot(&k("a")).await?, counter(19));
                tx.atomic_add(&k("a"), 100)?;
                tx.atomic_add(&k("blind"), 100)?;
                interfere(store, &k("a"), &k("blind")).await?;
                Ok::<_, TxError>(())
            }
        })
        .await
        .expect("snapshot read then add");
    assert_eq!(get(store, &k("a")).await, counter(129));
    assert_eq!(get(store, &k("blind")).await, counter(120));
}

/// An add after a range clear that covers its key applies to nothing (as in
/// FoundationDB: the clear comes first in the transaction, so the add sees the
/// key absent), whether or not the transaction read the key before the clear;
/// an add before the clear is cleared with it.
pub async fn adds_after_a_range_clear<S: Store>(store: &S, root: &[u8]) {
    reset(store, root, "clearadd").await;
    let k = |s: &str| key(root, "clearadd", s);
    for name in ["a", "b", "c"] {
        set(store, &k(name), &5i64.to_le_bytes()).await;
    }
    store
        .transact(ONCE, |tx| {
            let k = &k;
            async move {
                assert_eq!(tx.get(&k("a")).await?, counter(5), "read before the clear");
                tx.atomic_add(&k("c"), 1)?;
                tx.clear_range(&k("a"), &k("z"))?;
                tx.atomic_add(&k("a"), 3)?;
                tx.atomic_add(&k("b"), 4)?;
                assert_eq!(tx.get(&k("a")).await?, counter(3), "read your clear and add");
                assert_eq!(tx.get(&k("c")).await?, None, "the earlier add was cleared");
                Ok::<_, TxError>(())
            }
        })
        .await
        .expect("clear, then add");
    assert_eq!(get(store, &k("a")).await, counter(3));
    assert_eq!(get(store, &k("b")).await, counter(4));
    assert_eq!(get(store, &k("c")).await, None);
}

/// Another transaction adds 10 to `a` and to `blind`.
async fn interfere<S: Store>(store: &S, a: &[u8], blind: &[u8]) -> Result<(), TxError> {
    store
        .run(|tx2| async move {
            tx2.atomic_add(a, 10)?;
            tx2.atomic_add(blind, 10)?;
            Ok::<_, TxError>(())
        })
        .await
}

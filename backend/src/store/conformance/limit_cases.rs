//! The conformance cases of the store's limits (see [`crate::store::limits`]): key,
//! value and transaction sizes, transaction age, the closure timeout, and how
//! user errors pass through. One function per limit, run in order by
//! [`limits_are_enforced`].

use std::time::Duration;

use super::{get, key, reset, ONCE};
use crate::store::{limits, Store, StoreError, TransactOptions, Transaction, TxError};

/// Key, value and transaction size limits; the age limit; the timeout; a bad
/// versionstamp offset. Each limit is its own check below, run in this order on
/// the case's one key.
pub async fn limits_are_enforced<S: Store>(store: &S, root: &[u8]) {
    reset(store, root, "limits").await;
    let k = key(root, "limits", "k");
    key_and_value_limits(store, &k).await;
    transaction_size_limit(store, &k).await;
    transaction_age_limit(store, &k).await;
    timeout_is_enforced(store).await;
    user_errors_pass_through(store, &k).await;
}

/// A key or value of exactly the limit commits, one byte more is refused at
/// once (on write and on read), and so is a versionstamp offset outside the key.
async fn key_and_value_limits<S: Store>(store: &S, k: &[u8]) {
    let k = k.to_vec();
    let big_key = {
        let mut v = k.clone();
        v.resize(limits::MAX_KEY_BYTES, b'x');
        v
    };
    let r = store
        .run(|tx| {
            let (k, big_key) = (k.clone(), big_key.clone());
            async move {
                tx.set(&big_key, b"max key ok")?;
                let mut too_big = big_key.clone();
                too_big.push(b'x');
                assert!(matches!(
                    tx.set(&too_big, b"v"),
                    Err(StoreError::KeyTooLarge { .. })
                ));
                assert!(matches!(
                    tx.get(&too_big).await,
                    Err(StoreError::KeyTooLarge { .. })
                ));
                tx.set(&k, &vec![1u8; limits::MAX_VALUE_BYTES])?;
                assert!(matches!(
                    tx.set(&k, &vec![1u8; limits::MAX_VALUE_BYTES + 1]),
                    Err(StoreError::ValueTooLarge { .. })
                ));
                assert!(matches!(
                    tx.set_versionstamped_key(&[1, 2, 3, 0, 0, 0, 0], b"v"),
                    Err(StoreError::InvalidVersionstamp(_))
                ));
                Ok::<_, TxError>(())
            }
        })
        .await;
    assert!(r.is_ok(), "limit-sized writes must commit: {r:?}");
    assert!(get(store, &big_key).await.is_some());
}

/// A transaction writing over 10 MB fails with `TransactionTooLarge`.
async fn transaction_size_limit<S: Store>(store: &S, k: &[u8]) {
    let r = store
        .transact(ONCE, |tx| {
            let k = k.to_vec();
            async move {
                let value = vec![7u8; limits::MAX_VALUE_BYTES - 100];
                for i in 0..200u32 {
                    let mut key = k.clone();
                    key.extend_from_slice(&i.to_be_bytes());
                    tx.set(&key, &value)?;
                }
                Ok::<_, TxError>(())
            }
        })
        .await;
    assert!(
        matches!(r, Err(TxError::Store(StoreError::TransactionTooLarge { .. }))),
        "over 10 MB: {r:?}"
    );
}

/// A transaction older than the 5 s limit fails with `TransactionTooOld`.
async fn transaction_age_limit<S: Store>(store: &S, k: &[u8]) {
    let r = store
        .transact(ONCE, |tx| {
            let k = k.to_vec();
            async move {
                tokio::time::sleep(limits::MAX_TRANSACTION_AGE + Duration::from_millis(300)).await;
                let _ = tx.get(&k).await?;
                tx.set(&k, b"late")?;
                Ok::<_, TxError>(())
            }
        })
        .await;
    match r {
        Err(TxError::Store(StoreError::RetryLimitReached { last, .. }))
            if matches!(*last, StoreError::TransactionTooOld) => {}
        other => panic!("a 5.3 s transaction must be too old, got {other:?}"),
    }
}

/// `TransactOptions::timeout` bounds the closure.
async fn timeout_is_enforced<S: Store>(store: &S) {
    let r = store
        .transact(
            TransactOptions {
                retry_limit: None,
                timeout: Some(Duration::from_millis(50)),
                ..TransactOptions::default()
            },
            |_tx| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok::<_, TxError>(())
            },
        )
        .await;
    assert!(
        matches!(r, Err(TxError::Store(StoreError::Timeout))),
        "timeout: {r:?}"
    );
}

/// User errors pass through typed, without committing.
async fn user_errors_pass_through<S: Store>(store: &S, k: &[u8]) {
    let r: Result<(), TxError<&str>> = store
        .run(|tx| {
            let k = k.to_vec();
            async move {
                tx.set(&k, b"never")?;
                Err(TxError::User("nope"))
            }
        })
        .await;
    assert!(matches!(r, Err(TxError::User("nope"))));
    assert_ne!(get(store, k).await, Some(b"never".to_vec()));
}

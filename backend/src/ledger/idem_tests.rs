//! Idempotency: duplicates, reruns after an unknown commit result, concurrent
//! requests with one key (real embedded store in a temporary directory).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::tests::{bal, gold, open, CATALOG, P1, P2};
use super::*;
use crate::store::embedded::{EmbeddedStore, EmbeddedTx};
use crate::store::TransactOptions;

#[tokio::test]
async fn duplicates_return_the_original_and_are_recorded() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    let first = l.grant(P1, "req-1", "match_reward", &[gold(7)]).await?;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let again = l.grant(P1, "req-1", "match_reward", &[gold(7)]).await?;
    let third = l.grant(P1, "req-1", "match_reward", &[gold(7)]).await?;
    assert!(again.duplicate && third.duplicate);
    assert_eq!(again.receipt, first.receipt);
    assert_eq!(third.receipt, first.receipt);
    assert_eq!(bal(&l.balances(P1).await?, Asset::currency("gold")), 7);
    let dups = l.duplicates(P1).await?;
    assert_eq!(dups.len(), 1);
    assert_eq!((dups[0].idempotency_key.as_str(), dups[0].count), ("req-1", 2));
    assert!(dups[0].first_seen_ms > first.receipt.at_ms);
    assert!(dups[0].last_seen_ms >= dups[0].first_seen_ms);
    // Same key, different request: refused, nothing applied.
    for bad in [
        l.grant(P1, "req-1", "match_reward", &[gold(8)]).await,
        l.grant(P1, "req-1", "quest", &[gold(7)]).await,
        l.consume(P1, "req-1", "match_reward", &[gold(7)]).await,
    ] {
        assert!(
            matches!(bad, Err(LedgerError::IdempotencyKeyReused(_))),
            "{bad:?}"
        );
    }
    // Keys are per player.
    assert!(!l.grant(P2, "req-1", "match_reward", &[gold(7)]).await?.duplicate);
    assert_eq!(bal(&l.balances(P1).await?, Asset::currency("gold")), 7);
    assert_eq!(l.duplicates(P1).await?[0].count, 2);
    Ok(())
}

#[tokio::test]
async fn an_attempt_failing_after_its_writes_is_retried_once_applied() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    l.fail_next_attempts_after_writes(2);
    let out = l.grant(P1, "k", "match_reward", &[gold(3)]).await?;
    assert!(!out.duplicate, "the failed attempts never committed");
    // (The fault mode adds attempts of its own.)
    let attempts = l.stats().attempts;
    assert!(
        attempts == 3 || crate::store::testing::faults_enabled() && attempts > 3,
        "{attempts}"
    );
    assert_eq!(bal(&l.balances(P1).await?, Asset::currency("gold")), 3);
    assert_eq!(l.history(P1, HistoryQuery::default()).await?.events.len(), 1);
    assert!(l.duplicates(P1).await?.is_empty());
    Ok(())
}

/// A store whose commit "result is unknown" once: the commit is applied, then
/// the closure runs again, as the retry loop does on FoundationDB.
#[derive(Clone)]
struct RerunOnce {
    inner: EmbeddedStore,
    armed: Arc<AtomicBool>,
}

impl Store for RerunOnce {
    type Tx = EmbeddedTx;
    async fn transact<T, E, F, Fut>(&self, options: TransactOptions, mut f: F) -> Result<T, TxError<E>>
    where
        F: FnMut(Self::Tx) -> Fut + Send,
        Fut: Future<Output = Result<T, TxError<E>>> + Send,
        T: Send,
        E: Send,
    {
        let first = self.inner.transact(options, &mut f).await;
        if first.is_ok() && self.armed.swap(false, Ordering::SeqCst) {
            return self.inner.transact(options, &mut f).await;
        }
        first
    }
}

#[tokio::test]
async fn commit_result_unknown_rerun_returns_the_original() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let inner = crate::store::testing::open_store(dir.path()).await?;
    let armed = Arc::new(AtomicBool::new(false));
    let store = RerunOnce {
        inner,
        armed: armed.clone(),
    };
    let l = Ledger::new(store, "eu", Catalog::from_toml_str(CATALOG)?)?;
    l.grant(P1, "seed", "match_reward", &[Quantity::currency("gems", 20)])
        .await?;

    armed.store(true, Ordering::SeqCst);
    let out = l.purchase(P1, "buy-1", "potion_pack").await?;
    assert!(
        !armed.load(Ordering::SeqCst),
        "the closure ran again after commit"
    );
    // The re-run found the committed receipt: the call's own, not a client's
    // duplicate (the receipt carries the call's op id).
    assert!(!out.duplicate, "the call's own re-run is not a duplicate");
    assert!(l.duplicates(P1).await?.is_empty());
    let b = l.balances(P1).await?;
    assert_eq!(
        (bal(&b, Asset::currency("gems")), bal(&b, Asset::item("potion"))),
        (10, 5)
    );
    let hist = l.history(P1, HistoryQuery::default()).await?.events;
    assert_eq!(hist.len(), 2);
    assert_eq!(
        hist[1].id, out.receipt.event,
        "the receipt names the committed event"
    );
    assert_eq!(hist[1].offer.as_deref(), Some("potion_pack"));
    // The client's own retry gets the same receipt again, as a duplicate.
    let again = l.purchase(P1, "buy-1", "potion_pack").await?;
    assert!(again.duplicate && again.receipt == out.receipt);
    assert_eq!(l.duplicates(P1).await?[0].count, 1);
    assert!(l.audit_player(P1).await?.is_clean());
    Ok(())
}

#[tokio::test]
async fn concurrent_duplicates_apply_once() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let l = l.clone();
        tasks.push(tokio::spawn(async move {
            l.grant(P1, "same", "match_reward", &[gold(5), Quantity::item("ore", 9)])
                .await
        }));
    }
    let mut outs = Vec::new();
    for t in tasks {
        outs.push(t.await??);
    }
    assert_eq!(outs.iter().filter(|o| !o.duplicate).count(), 1);
    assert!(outs.iter().all(|o| o.receipt == outs[0].receipt));
    let b = l.balances(P1).await?;
    assert_eq!(
        (bal(&b, Asset::currency("gold")), bal(&b, Asset::item("ore"))),
        (5, 9)
    );
    // Counted once per call, also when a bump's commit result was unknown
    // (the fault mode) and its call ran again.
    assert_eq!(l.duplicates(P1).await?[0].count, 15);
    Ok(())
}

/// A duplicate whose bump of the duplicate counter applied, then reported an
/// unknown result (forced): the rerun does not count it again.
#[tokio::test]
async fn a_duplicate_is_counted_once_when_its_commit_result_was_unknown() -> anyhow::Result<()> {
    use crate::store::testing::{open_scripted_store, CommitFault};
    let dir = tempfile::tempdir()?;
    let store = open_scripted_store(dir.path()).await?;
    let l = Ledger::new(store.clone(), "eu", Catalog::from_toml_str(CATALOG)?)?;
    let first = l.grant(P1, "k", "match_reward", &[gold(3)]).await?;
    for n in 1..=3 {
        assert!(store.script_commit_faults([CommitFault::UnknownApplied]));
        let dup = l.grant(P1, "k", "match_reward", &[gold(3)]).await?;
        assert!(dup.duplicate && dup.receipt == first.receipt);
        assert_eq!(l.duplicates(P1).await?[0].count, n);
    }
    assert_eq!(store.fault_counts().unwrap().unknown_applied, 3);
    assert_eq!(bal(&l.balances(P1).await?, Asset::currency("gold")), 3);
    assert!(l.audit_player(P1).await?.is_clean());
    Ok(())
}

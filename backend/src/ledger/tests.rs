//! Ledger tests against the real embedded store in a temporary directory.

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::*;
use crate::store::embedded::{EmbeddedStore, EmbeddedTx};
use crate::store::TransactOptions;

pub(super) const P1: &str = "0123456789abcdef0123456789abcdef";
pub(super) const P2: &str = "fedcba9876543210fedcba9876543210";

pub(super) const CATALOG: &str = r#"
    [items.sword]
    max_stack = 1
    [items.potion]
    max_stack = 99
    [items.ore]
    max_stack = 100000
    [items.dust]
    [currencies.gold]
    max_balance = 1000000
    [currencies.gems]
    [offers.potion_pack]
    price = { gems = 10 }
    items = { potion = 5 }
    [offers.gold_bag]
    price = { gems = 5 }
    currencies = { gold = 100 }
"#;

pub(super) async fn open(region: &str) -> anyhow::Result<(tempfile::TempDir, Ledger<EmbeddedStore>)> {
    let dir = tempfile::tempdir()?;
    let store = crate::store::testing::open_store(dir.path()).await?;
    Ok((dir, Ledger::new(store, region, Catalog::from_toml_str(CATALOG)?)?))
}

pub(super) fn gold(n: u64) -> Quantity {
    Quantity::currency("gold", n)
}

pub(super) fn bal(b: &Balances, a: Asset) -> u64 {
    b.get(&a).copied().unwrap_or(0)
}

pub(super) fn side(player: &str, gives: Vec<Quantity>) -> TradeSide {
    TradeSide {
        player: player.into(),
        home_region: "eu".into(),
        gives,
    }
}

#[tokio::test]
async fn grant_consume_balances_and_history() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    let g = l
        .grant(
            P1,
            "g1",
            "match_reward",
            &[gold(50), Quantity::item("dust", 3), gold(5)],
        )
        .await?;
    assert!(!g.duplicate);
    assert_eq!(g.receipt.kind, EventKind::Grant);
    assert_eq!(
        g.receipt.changes,
        vec![
            Change {
                asset: Asset::item("dust"),
                delta: 3
            },
            Change {
                asset: Asset::currency("gold"),
                delta: 55
            },
        ]
    );
    let c = l
        .consume(P1, "c1", "crafting", &[Quantity::item("dust", 2)])
        .await?;
    let b = l.balances(P1).await?;
    assert_eq!(
        (bal(&b, Asset::currency("gold")), bal(&b, Asset::item("dust"))),
        (55, 1)
    );
    assert!(l.balances(P2).await?.is_empty(), "players are separate");

    for i in 0..5 {
        l.grant(P1, &format!("more-{i}"), "quest", &[gold(1)]).await?;
    }
    // Forward pages of 3 chain to every event, in order.
    let mut all = Vec::new();
    let mut q = HistoryQuery {
        limit: 3,
        ..Default::default()
    };
    loop {
        let page = l.history(P1, q).await?;
        all.extend(page.events);
        match page.next {
            Some(n) => q.after = Some(n),
            None => break,
        }
    }
    assert_eq!(all.len(), 7);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!((all[0].id, all[1].id), (g.receipt.event, c.receipt.event));
    assert_eq!(all[0].source, "match_reward");
    assert_eq!(all[1].kind, EventKind::Consume);
    assert_eq!(all[1].idempotency_key, "c1");
    assert_eq!(
        all[1].changes,
        vec![Change {
            asset: Asset::item("dust"),
            delta: -2
        }]
    );
    assert!(all[0].at_ms > 1_600_000_000_000);
    // Reverse from a cursor.
    let rev = l
        .history(
            P1,
            HistoryQuery {
                after: Some(all[3].id),
                limit: 10,
                reverse: true,
            },
        )
        .await?;
    let ids: Vec<_> = rev.events.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![all[2].id, all[1].id, all[0].id]);
    assert_eq!(rev.next, None);
    // The cursor's string form round-trips.
    assert_eq!(all[4].id.to_string().parse::<EventId>()?, all[4].id);
    Ok(())
}

#[tokio::test]
async fn overdraw_is_refused_and_writes_nothing() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    l.grant(P1, "g", "match_reward", &[gold(10), Quantity::item("dust", 1)])
        .await?;
    let seq = l.watch_changes(P1).await?.seq;
    match l
        .consume(P1, "c", "shop", &[Quantity::item("dust", 1), gold(11)])
        .await
    {
        Err(LedgerError::Insufficient {
            asset,
            balance: 10,
            requested: 11,
        }) => {
            assert_eq!(asset, Asset::currency("gold"))
        }
        other => panic!("expected insufficient, got {other:?}"),
    }
    let b = l.balances(P1).await?;
    assert_eq!(
        (bal(&b, Asset::currency("gold")), bal(&b, Asset::item("dust"))),
        (10, 1)
    );
    assert_eq!(l.history(P1, HistoryQuery::default()).await?.events.len(), 1);
    assert_eq!(l.watch_changes(P1).await?.seq, seq, "no change recorded");
    // The key was not consumed by the failure: a valid retry with it applies.
    l.grant(P1, "g2", "match_reward", &[gold(1)]).await?;
    assert!(
        !l.consume(P1, "c", "shop", &[Quantity::item("dust", 1), gold(11)])
            .await?
            .duplicate
    );
    assert_eq!(l.balances(P1).await?.get(&Asset::currency("gold")), None);
    assert!(l.audit_player(P1).await?.is_clean());
    Ok(())
}

#[tokio::test]
async fn limits_hold_on_both_paths() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    // One-shard item.
    l.grant(P1, "p1", "loot", &[Quantity::item("potion", 98)]).await?;
    assert!(matches!(
        l.grant(P1, "p2", "loot", &[Quantity::item("potion", 2)]).await,
        Err(LedgerError::LimitExceeded {
            limit: 99,
            balance: 98,
            adding: 2,
            ..
        })
    ));
    l.grant(P1, "p3", "loot", &[Quantity::item("potion", 1)]).await?;
    // 32-shard item (capacity 3125 each): a grant larger than any shard's room
    // spreads over shards; the total stops exactly at the limit.
    l.grant(P1, "o1", "loot", &[Quantity::item("ore", 70_000)])
        .await?;
    l.grant(P1, "o2", "loot", &[Quantity::item("ore", 29_999)])
        .await?;
    assert!(matches!(
        l.grant(P1, "o3", "loot", &[Quantity::item("ore", 2)]).await,
        Err(LedgerError::LimitExceeded { balance: 99_999, .. })
    ));
    l.grant(P1, "o4", "loot", &[Quantity::item("ore", 1)]).await?;
    // A grant that fails on one asset grants none.
    assert!(l
        .grant(
            P1,
            "mix",
            "loot",
            &[Quantity::item("dust", 5), Quantity::item("sword", 2)]
        )
        .await
        .is_err());
    let b = l.balances(P1).await?;
    assert_eq!(bal(&b, Asset::item("potion")), 99);
    assert_eq!(bal(&b, Asset::item("ore")), 100_000);
    assert_eq!(bal(&b, Asset::item("dust")), 0);
    // Unlimited assets have a far ceiling only.
    l.grant(P1, "d", "loot", &[Quantity::item("dust", MAX_AMOUNT)])
        .await?;
    let audit = l.audit_player(P1).await?;
    assert!(audit.is_clean(), "{audit:?}");
    Ok(())
}

#[tokio::test]
async fn a_changed_shard_count_keeps_the_limit() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    let def = |shards| ItemDef {
        max_stack: Some(100),
        escrow_shards: Some(shards),
    };
    let mut catalog = Catalog::default();
    catalog.items.insert("rune".into(), def(2));
    let two = Ledger::new(l.store().clone(), "eu", catalog.clone())?;
    two.grant(P1, "a", "loot", &[Quantity::item("rune", 100)]).await?; // 50 + 50
    catalog.items.insert("rune".into(), def(4)); // capacities 25: shards 0 and 1 are over
    let four = Ledger::new(l.store().clone(), "eu", catalog.clone())?;
    assert!(matches!(
        four.grant(P1, "b", "loot", &[Quantity::item("rune", 1)]).await,
        Err(LedgerError::LimitExceeded { balance: 100, .. })
    ));
    four.consume(P1, "c", "use", &[Quantity::item("rune", 60)])
        .await?;
    four.grant(P1, "d", "loot", &[Quantity::item("rune", 60)]).await?;
    assert!(four
        .grant(P1, "e", "loot", &[Quantity::item("rune", 1)])
        .await
        .is_err());
    catalog.items.insert("rune".into(), def(1)); // shards 1.. are left over
    let one = Ledger::new(l.store().clone(), "eu", catalog)?;
    assert!(one
        .grant(P1, "f", "loot", &[Quantity::item("rune", 1)])
        .await
        .is_err());
    one.consume(P1, "g", "use", &[Quantity::item("rune", 100)])
        .await?;
    one.grant(P1, "h", "loot", &[Quantity::item("rune", 100)]).await?;
    assert_eq!(bal(&one.balances(P1).await?, Asset::item("rune")), 100);
    assert!(one.audit_player(P1).await?.is_clean());
    Ok(())
}

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

/// A store that waits `delay` between a transaction's begin (its read version)
/// and the closure's first read, so concurrent transactions really overlap and
/// anything that is not protected by a read conflict races.
#[derive(Clone)]
pub(super) struct Delayed {
    pub(super) inner: EmbeddedStore,
    pub(super) delay: Duration,
}

impl Store for Delayed {
    type Tx = EmbeddedTx;
    async fn transact<T, E, F, Fut>(&self, options: TransactOptions, mut f: F) -> Result<T, TxError<E>>
    where
        F: FnMut(Self::Tx) -> Fut + Send,
        Fut: Future<Output = Result<T, TxError<E>>> + Send,
        T: Send,
        E: Send,
    {
        let delay = self.delay;
        self.inner
            .transact(options, move |tx| {
                let run = f(tx);
                async move {
                    tokio::time::sleep(delay).await;
                    run.await
                }
            })
            .await
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

#[tokio::test]
async fn purchases_are_atomic() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    assert!(matches!(
        l.purchase(P1, "b0", "potion_pack").await,
        Err(LedgerError::Insufficient {
            requested: 10,
            balance: 0,
            ..
        })
    ));
    l.grant(P1, "g", "store_topup", &[Quantity::currency("gems", 55)])
        .await?;
    for i in 0..4 {
        l.purchase(P1, &format!("b{i}"), "potion_pack").await?;
    }
    l.grant(P1, "p", "loot", &[Quantity::item("potion", 79)]).await?;
    // 99 potions: the next pack would pass the stack; the gems stay (15).
    assert!(matches!(
        l.purchase(P1, "b9", "potion_pack").await,
        Err(LedgerError::LimitExceeded { .. })
    ));
    let out = l.purchase(P1, "bag", "gold_bag").await?;
    assert_eq!(
        out.receipt.changes,
        vec![
            Change {
                asset: Asset::currency("gems"),
                delta: -5
            },
            Change {
                asset: Asset::currency("gold"),
                delta: 100
            },
        ]
    );
    let b = l.balances(P1).await?;
    assert_eq!(bal(&b, Asset::currency("gems")), 10);
    assert_eq!(bal(&b, Asset::item("potion")), 99);
    assert_eq!(bal(&b, Asset::currency("gold")), 100);
    assert!(matches!(
        l.purchase(P1, "x", "nope").await,
        Err(LedgerError::UnknownOffer(_))
    ));
    assert!(l.audit_player(P1).await?.is_clean());
    Ok(())
}

#[tokio::test]
async fn trades_move_assets_atomically_within_the_region() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    l.grant(P1, "g", "loot", &[gold(100), Quantity::item("sword", 1)])
        .await?;
    l.grant(P2, "g", "loot", &[Quantity::item("ore", 40)]).await?;
    let out = l
        .trade(
            &side(P1, vec![gold(30), Quantity::item("sword", 1)]),
            &side(P2, vec![Quantity::item("ore", 25)]),
            "t1",
        )
        .await?;
    assert_eq!(out.receipt.kind, EventKind::Trade);
    let (b1, b2) = (l.balances(P1).await?, l.balances(P2).await?);
    assert_eq!(bal(&b1, Asset::currency("gold")), 70);
    assert_eq!(bal(&b1, Asset::item("ore")), 25);
    assert_eq!(bal(&b1, Asset::item("sword")), 0);
    assert_eq!(bal(&b2, Asset::currency("gold")), 30);
    assert_eq!(bal(&b2, Asset::item("sword")), 1);
    assert_eq!(bal(&b2, Asset::item("ore")), 15);
    let e2 = l
        .history(
            P2,
            HistoryQuery {
                reverse: true,
                ..Default::default()
            },
        )
        .await?
        .events;
    assert_eq!(e2[0].counterparty.as_deref(), Some(P1));
    assert_eq!(e2[0].idempotency_key, "t1");
    assert_eq!(e2[0].id.stamp, out.receipt.event.stamp, "one transaction");

    // Overdraw on either side, or a stack overflow on the receiver: nothing moves.
    let before = (l.balances(P1).await?, l.balances(P2).await?);
    for (a, b) in [
        (vec![gold(71)], vec![]),
        (vec![gold(1)], vec![Quantity::item("ore", 16)]),
    ] {
        let res = l.trade(&side(P1, a), &side(P2, b), "t-bad").await;
        assert!(matches!(res, Err(LedgerError::Insufficient { .. })), "{res:?}");
    }
    assert_eq!((l.balances(P1).await?, l.balances(P2).await?), before);
    l.grant(P1, "s2", "loot", &[Quantity::item("sword", 1)]).await?;
    let before = (l.balances(P1).await?, l.balances(P2).await?);
    assert!(matches!(
        l.trade(
            &side(P1, vec![gold(1)]),
            &side(P2, vec![Quantity::item("sword", 1)]),
            "t-sword"
        )
        .await,
        Err(LedgerError::LimitExceeded { limit: 1, .. })
    ));
    assert_eq!((l.balances(P1).await?, l.balances(P2).await?), before);

    // Cross-region and malformed trades are refused.
    let mut far = side(P2, vec![]);
    far.home_region = "us".into();
    assert!(matches!(
        l.trade(&side(P1, vec![gold(1)]), &far, "t-x").await,
        Err(LedgerError::CrossRegionTrade { home, .. }) if home == "us"
    ));
    assert!(matches!(
        l.trade(&side(P1, vec![gold(1)]), &side(P1, vec![]), "t-self")
            .await,
        Err(LedgerError::InvalidTrade(_))
    ));
    assert!(matches!(
        l.trade(&side(P1, vec![gold(1)]), &side(P2, vec![gold(1)]), "t-0")
            .await,
        Err(LedgerError::InvalidTrade(_))
    ));
    // A duplicate trade returns the original and moves nothing.
    let dup = l
        .trade(
            &side(P1, vec![gold(30), Quantity::item("sword", 1)]),
            &side(P2, vec![Quantity::item("ore", 25)]),
            "t1",
        )
        .await?;
    assert!(dup.duplicate && dup.receipt == out.receipt);
    assert_eq!(bal(&l.balances(P2).await?, Asset::currency("gold")), 30);
    assert!(l.audit_player(P1).await?.is_clean() && l.audit_player(P2).await?.is_clean());
    Ok(())
}

/// The region every test ledger serves.
pub(super) fn eu() -> crate::keyspace::RegionName {
    crate::keyspace::RegionName::new("eu").unwrap()
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

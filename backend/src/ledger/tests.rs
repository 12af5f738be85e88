//! Ledger tests against the real embedded store in a temporary directory.

use std::future::Future;

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

//! Limits and escrow shards: both credit paths, catalog changes, the layout
//! record (real embedded store in a temporary directory).

use super::tests::{bal, open, P1};
use super::*;
use crate::store::TxError;

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

/// The asset's layout record (`(.., "escrow", kind, id)`), decoded as
/// `(limit, shards)`.
async fn layout(
    l: &Ledger<crate::store::embedded::EmbeddedStore>,
    asset: &Asset,
) -> anyhow::Result<Option<(u64, u16)>> {
    let key = keys::escrow_layout(&l.region, P1, asset);
    let v = l
        .store()
        .run(|tx| {
            let key = key.clone();
            async move { Ok::<_, TxError<LedgerError>>(tx.get(&key).await?) }
        })
        .await?;
    Ok(v.map(|v| {
        assert_eq!((v.len(), v[0]), (11, 1), "v1 layout record");
        (
            u64::from_be_bytes(v[1..9].try_into().unwrap()),
            u16::from_be_bytes(v[9..11].try_into().unwrap()),
        )
    }))
}

fn rune_catalog(limit: Option<u64>, shards: u16) -> Catalog {
    let mut catalog = Catalog::default();
    catalog.items.insert(
        "rune".into(),
        ItemDef {
            max_stack: limit,
            escrow_shards: limit.map(|_| shards),
        },
    );
    catalog
}

fn rune(n: u64) -> Quantity {
    Quantity::item("rune", n)
}

#[tokio::test]
async fn the_first_credit_records_the_layout_and_later_ones_stay_within_it() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    let ore = Asset::item("ore");
    assert_eq!(layout(&l, &ore).await?, None);
    l.grant(P1, "o0", "loot", &[Quantity::item("ore", 10)]).await?;
    assert_eq!(layout(&l, &ore).await?, Some((100_000, 32)));
    // Fast-path credits (one shard each) up to the limit: never past it.
    let mut granted = 10;
    for i in 0..40 {
        match l
            .grant(
                P1,
                &format!("o{}", i + 1),
                "loot",
                &[Quantity::item("ore", 2_600)],
            )
            .await
        {
            Ok(_) => granted += 2_600,
            Err(LedgerError::LimitExceeded { balance, .. }) => assert_eq!(balance, granted),
            Err(e) => return Err(e.into()),
        }
    }
    assert_eq!(granted, 10 + 38 * 2_600);
    assert_eq!(bal(&l.balances(P1).await?, ore.clone()), granted);
    assert_eq!(layout(&l, &ore).await?, Some((100_000, 32)));
    assert!(l.audit_player(P1).await?.is_clean());
    Ok(())
}

#[tokio::test]
async fn a_lowered_limit_clears_the_layout_record_until_shards_fit() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    let a = Asset::item("rune");
    let wide = Ledger::new(l.store().clone(), "eu", rune_catalog(Some(100), 4))?;
    wide.grant(P1, "a", "loot", &[rune(100)]).await?; // 25 in each shard
    assert_eq!(layout(&l, &a).await?, Some((100, 4)));
    let narrow = Ledger::new(l.store().clone(), "eu", rune_catalog(Some(40), 4))?; // capacities 10
    assert!(matches!(
        narrow.grant(P1, "b", "loot", &[rune(1)]).await,
        Err(LedgerError::LimitExceeded { balance: 100, .. })
    ));
    narrow.consume(P1, "c", "use", &[rune(70)]).await?; // 0, 0, 5, 25 in some order
    narrow.grant(P1, "d", "loot", &[rune(1)]).await?;
    // A shard is still over its capacity of 10: no layout vouches for the shards.
    assert_eq!(layout(&l, &a).await?, None);
    // Every credit now takes the exact path: the total stops at 40.
    narrow.grant(P1, "e", "loot", &[rune(9)]).await?;
    assert!(matches!(
        narrow.grant(P1, "f", "loot", &[rune(1)]).await,
        Err(LedgerError::LimitExceeded { balance: 40, .. })
    ));
    // The old catalog's writer finds no record either, and records its layout again.
    wide.grant(P1, "g", "loot", &[rune(1)]).await?;
    assert_eq!(layout(&l, &a).await?, Some((100, 4)));
    assert_eq!(bal(&l.balances(P1).await?, a), 41);
    assert!(l.audit_player(P1).await?.is_clean());
    Ok(())
}

#[tokio::test]
async fn an_unlimited_credit_clears_the_layout_record() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    let a = Asset::item("rune");
    let limited = Ledger::new(l.store().clone(), "eu", rune_catalog(Some(100), 4))?;
    limited.grant(P1, "a", "loot", &[rune(10)]).await?;
    assert_eq!(layout(&l, &a).await?, Some((100, 4)));
    let unlimited = Ledger::new(l.store().clone(), "eu", rune_catalog(None, 1))?;
    unlimited.grant(P1, "b", "loot", &[rune(500)]).await?; // all in shard 0
    assert_eq!(layout(&l, &a).await?, None);
    // Limited again: shard 0 is over its capacity, other shards have room; the
    // grant must see the total (a stale record would let it add to one of them).
    for i in 0..8 {
        assert!(matches!(
            limited.grant(P1, &format!("c{i}"), "loot", &[rune(1)]).await,
            Err(LedgerError::LimitExceeded { balance: 510, .. })
        ));
    }
    assert_eq!(bal(&l.balances(P1).await?, a), 510);
    Ok(())
}

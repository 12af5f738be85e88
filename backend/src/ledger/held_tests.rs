//! The held-asset index (`(.., "held")`, keys.rs): balances read through it
//! match the range read over every balance, and ledgers written before it
//! existed are indexed by their next credit.

use super::tests::{bal, gold, open, P1};
use super::*;
use crate::store::TxError;

/// Balances by the range read over every balance shard (the audit's read).
async fn scanned(
    l: &Ledger<crate::store::embedded::EmbeddedStore>,
    player: &str,
) -> anyhow::Result<Balances> {
    let region = l.region.clone();
    let player = player.to_owned();
    let raw = l
        .store()
        .run(|tx| {
            let (region, player) = (region.clone(), player.clone());
            async move { projection::read_all_scan(&tx, &region, &player, true).await }
        })
        .await?;
    Ok(projection::to_balances(&raw))
}

/// Balances as a hot player's are read: through the index, by point reads.
async fn by_index(
    l: &Ledger<crate::store::embedded::EmbeddedStore>,
    player: &str,
) -> anyhow::Result<Balances> {
    let (region, catalog) = (l.region.clone(), l.catalog.clone());
    let player = player.to_owned();
    let raw = l
        .store()
        .run(|tx| {
            let (region, player, catalog) = (region.clone(), player.clone(), catalog.clone());
            async move { projection::read_all(&tx, &region, &player, &catalog, true, true).await }
        })
        .await?;
    Ok(projection::to_balances(&raw))
}

async fn indexed(l: &Ledger<crate::store::embedded::EmbeddedStore>, player: &str) -> anyhow::Result<bool> {
    let key = keys::held_all(&l.region, player);
    let v = l
        .store()
        .run(|tx| {
            let key = key.clone();
            async move { Ok::<_, TxError<LedgerError>>(tx.get(&key).await?) }
        })
        .await?;
    Ok(v.is_some())
}

#[tokio::test]
async fn balances_through_the_index_match_the_scan() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    l.grant(P1, "k1", "quest", &[gold(70), Quantity::item("potion", 3)])
        .await?;
    l.grant(
        P1,
        "k2",
        "quest",
        &[Quantity::currency("gems", 20), Quantity::item("ore", 5)],
    )
    .await?;
    l.purchase(P1, "k3", "potion_pack").await?;
    l.consume(P1, "k4", "use", &[Quantity::item("ore", 5)]).await?;
    assert!(indexed(&l, P1).await?);
    let b = by_index(&l, P1).await?;
    assert_eq!(b, scanned(&l, P1).await?);
    assert_eq!(b, l.balances(P1).await?);
    assert_eq!(bal(&b, Asset::currency("gold")), 70);
    assert_eq!(bal(&b, Asset::item("potion")), 8);
    assert_eq!(bal(&b, Asset::currency("gems")), 10);
    // Consumed to zero: not listed, in either read.
    assert_eq!(bal(&b, Asset::item("ore")), 0);
    assert!(!b.contains_key(&Asset::item("ore")));
    assert!(l.audit_player(P1).await?.mismatches.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_ledger_written_before_the_index_is_indexed_by_its_next_credit() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    l.grant(P1, "k1", "quest", &[gold(40), Quantity::currency("gems", 9)])
        .await?;
    // Make it look like a ledger from before the index: no entries, no marker.
    let (region, held) = (l.region.clone(), keys::held(&l.region, P1));
    l.store()
        .run(|tx| {
            let (region, (b, e)) = (region.clone(), held.range());
            async move {
                tx.clear_range(&b, &e)?;
                tx.clear(&keys::held_all(&region, P1))?;
                Ok::<_, TxError<LedgerError>>(())
            }
        })
        .await?;
    assert!(!indexed(&l, P1).await?);
    // Without the marker, balances come from the range read: nothing is lost.
    let before = by_index(&l, P1).await?;
    assert_eq!(bal(&before, Asset::currency("gold")), 40);
    assert_eq!(bal(&before, Asset::currency("gems")), 9);
    // A credit of another asset indexes everything found, then sets the marker.
    l.grant(P1, "k2", "quest", &[Quantity::item("potion", 2)]).await?;
    assert!(indexed(&l, P1).await?);
    let after = by_index(&l, P1).await?;
    assert_eq!(after, scanned(&l, P1).await?);
    assert_eq!(bal(&after, Asset::currency("gold")), 40);
    assert_eq!(bal(&after, Asset::currency("gems")), 9);
    assert_eq!(bal(&after, Asset::item("potion")), 2);
    Ok(())
}

/// An older deployment's catalog: gold in 40 escrow shards (8 past the
/// current catalog's 32), and an item the current catalog no longer has.
const WIDER_CATALOG: &str = r#"
    [items.ore]
    max_stack = 100000
    [items.relic]
    max_stack = 10
    [currencies.gold]
    max_balance = 1000000
    escrow_shards = 40
"#;

/// Both reads in one transaction (one store state), raw: shard by shard,
/// zero-valued shards included. `point`: the read the push takes after a
/// change ([`Ledger::balances_and_watch_after_change`]).
type RawBalances = std::collections::BTreeMap<Asset, Vec<(u16, i64)>>;
async fn both_reads(
    l: &Ledger<crate::store::embedded::EmbeddedStore>,
    player: &str,
) -> anyhow::Result<(RawBalances, RawBalances)> {
    let (region, catalog) = (l.region.clone(), l.catalog.clone());
    let player = player.to_owned();
    Ok(l.store()
        .run(|tx| {
            let (region, player, catalog) = (region.clone(), player.clone(), catalog.clone());
            async move {
                let point = projection::read_all(&tx, &region, &player, &catalog, true, false).await?;
                let scan = projection::read_all_scan(&tx, &region, &player, false).await?;
                Ok::<_, TxError<LedgerError>>((point, scan))
            }
        })
        .await?)
}

#[tokio::test]
async fn the_read_after_a_change_returns_exactly_what_the_full_read_returns() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    let older = Ledger::new(l.store().clone(), "eu", Catalog::from_toml_str(WIDER_CATALOG)?)?;
    // Not indexed yet: both fall back to the range read (nothing to return).
    let (point, scan) = both_reads(&l, P1).await?;
    assert!(point.is_empty() && scan.is_empty());

    // The older catalog's writer fills gold over 40 shards (exact path,
    // 25,000 each), so shards past the current catalog's 32 hold gold, and
    // grants a relic the current catalog does not know.
    older
        .grant(P1, "o1", "quest", &[gold(900_000), Quantity::item("relic", 2)])
        .await?;
    // The current writer: gold by the exact path (the layout record is the
    // older catalog's) and then by the fast path into random shards; items,
    // an unlimited currency, a purchase; a 32-shard item consumed to zero
    // and an unlimited item consumed to zero.
    l.grant(P1, "k1", "quest", &[gold(10), Quantity::item("ore", 7)])
        .await?;
    for i in 0..20 {
        l.grant(P1, &format!("g{i}"), "loot", &[gold(3), Quantity::item("ore", 1)])
            .await?;
    }
    l.grant(
        P1,
        "k2",
        "quest",
        &[Quantity::currency("gems", 30), Quantity::item("dust", 4)],
    )
    .await?;
    l.purchase(P1, "k3", "potion_pack").await?;
    l.consume(P1, "k4", "use", &[Quantity::item("ore", 27)]).await?;
    l.consume(P1, "k5", "use", &[Quantity::item("dust", 4)]).await?;
    l.consume(P1, "k6", "spend", &[gold(100_000)]).await?;
    assert!(indexed(&l, P1).await?, "the index path is the one under test");

    let (point, scan) = both_reads(&l, P1).await?;
    assert_eq!(point, scan);
    // The state is what the test means it to be (else the comparison proves little).
    let shards = |a: Asset| point.get(&a).cloned().unwrap_or_default();
    let gold_shards = shards(Asset::currency("gold"));
    assert!(gold_shards.iter().any(|&(s, v)| s >= 32 && v > 0));
    assert!(gold_shards.iter().filter(|&&(_, v)| v > 0).count() > 20);
    // Ore (32 shards, fast-path grants into random shards) consumed to zero:
    // several shard keys, every one 0.
    let ore = shards(Asset::item("ore"));
    assert!(ore.len() > 1 && ore.iter().all(|&(_, v)| v == 0));
    assert!(!shards(Asset::item("dust")).is_empty());
    assert!(!shards(Asset::item("relic")).is_empty());

    // The public reads: the same balances (a BTreeMap: same order), zero
    // balances left out.
    let (first, _) = l.balances_and_watch(P1).await?;
    let (after, _) = l.balances_and_watch_after_change(P1).await?;
    assert_eq!(after, first);
    assert_eq!(after, projection::to_balances(&scan));
    assert_eq!(bal(&after, Asset::currency("gold")), 900_000 + 10 + 60 - 100_000);
    assert_eq!(bal(&after, Asset::item("relic")), 2);
    assert_eq!(bal(&after, Asset::currency("gems")), 20);
    assert_eq!(bal(&after, Asset::item("potion")), 5);
    assert!(!after.contains_key(&Asset::item("ore")) && !after.contains_key(&Asset::item("dust")));
    assert!(l.audit_player(P1).await?.mismatches.is_empty());
    Ok(())
}

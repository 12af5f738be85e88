//! Per-asset totals (`totals`, keys.rs "tot"): the push's read returns
//! exactly what the range read over every balance shard returns, and ledgers
//! written before totals existed read correctly and get them with their
//! next write.

use super::held_tests::indexed;
use super::tests::{bal, gold, open, P1};
use super::*;
use crate::store::TxError;

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

type RawBalances = std::collections::BTreeMap<Asset, Vec<(u16, i64)>>;

/// The three reads in one transaction (one store state): through the index
/// by point reads and by the range read (raw: shard by shard, zero-valued
/// shards included), and the totals (`None` while not kept).
async fn reads(
    l: &Ledger<crate::store::embedded::EmbeddedStore>,
    player: &str,
) -> anyhow::Result<(RawBalances, RawBalances, Option<Balances>)> {
    let (region, catalog) = (l.region.clone(), l.catalog.clone());
    let player = player.to_owned();
    Ok(l.store()
        .run(|tx| {
            let (region, player, catalog) = (region.clone(), player.clone(), catalog.clone());
            async move {
                let point = projection::read_all(&tx, &region, &player, &catalog, true, false).await?;
                let scan = projection::read_all_scan(&tx, &region, &player, false).await?;
                let totals = totals::read(&tx, &region, &player, false).await?;
                Ok::<_, TxError<LedgerError>>((point, scan, totals))
            }
        })
        .await?)
}

#[tokio::test]
async fn totals_and_the_index_return_exactly_what_the_full_read_returns() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    let older = Ledger::new(l.store().clone(), "eu", Catalog::from_toml_str(WIDER_CATALOG)?)?;
    // Nothing written: no index, no totals.
    let (point, scan, totals) = reads(&l, P1).await?;
    assert!(point.is_empty() && scan.is_empty() && totals.is_none());

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

    let (point, scan, totals) = reads(&l, P1).await?;
    assert_eq!(point, scan);
    let totals = totals.expect("kept since the first write");
    assert_eq!(totals, projection::to_balances(&scan));
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

    // The push's read: the same balances (a BTreeMap: same order), zero
    // balances left out.
    let (after, _) = l.balances_and_watch(P1).await?;
    assert_eq!(after, projection::to_balances(&scan));
    assert_eq!(after, l.balances(P1).await?);
    assert_eq!(bal(&after, Asset::currency("gold")), 900_000 + 10 + 60 - 100_000);
    assert_eq!(bal(&after, Asset::item("relic")), 2);
    assert_eq!(bal(&after, Asset::currency("gems")), 20);
    assert_eq!(bal(&after, Asset::item("potion")), 5);
    assert!(!after.contains_key(&Asset::item("ore")) && !after.contains_key(&Asset::item("dust")));
    assert!(l.audit_player(P1).await?.mismatches.is_empty());
    Ok(())
}

/// Makes `player`'s ledger look written before totals existed: no totals,
/// no marker (and so no "indexed" marker either, which vouches for it).
async fn forget_totals(
    l: &Ledger<crate::store::embedded::EmbeddedStore>,
    player: &str,
) -> anyhow::Result<()> {
    let (region, player) = (l.region.clone(), player.to_owned());
    l.store()
        .run(|tx| {
            let (region, player) = (region.clone(), player.clone());
            async move {
                let (b, e) = keys::totals(&region, &player).range();
                tx.clear_range(&b, &e)?;
                tx.clear(&keys::totals_all(&region, &player))?;
                tx.clear(&keys::indexed(&region, &player))?;
                Ok::<_, TxError<LedgerError>>(())
            }
        })
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_ledger_written_before_totals_reads_the_shards_and_gets_totals_with_its_next_write(
) -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    l.grant(P1, "k1", "quest", &[gold(40_000), Quantity::currency("gems", 9)])
        .await?;
    forget_totals(&l, P1).await?;
    let (_, scan, totals) = reads(&l, P1).await?;
    assert!(totals.is_none());
    // The push's read falls back to the shards: nothing lost.
    let (before, _) = l.balances_and_watch(P1).await?;
    assert_eq!(before, projection::to_balances(&scan));
    assert_eq!(bal(&before, Asset::currency("gold")), 40_000);
    // Stale totals without the marker are not read (totals left behind by a
    // writer that kept them beside one that did not), and the next write does
    // not keep them: one of an asset with shards, one of an asset without.
    l.store()
        .run(|tx| {
            let gold = keys::total(&l.region, P1, &Asset::currency("gold"));
            let ore = keys::total(&l.region, P1, &Asset::item("ore"));
            async move {
                tx.atomic_add(&gold, 5)?;
                tx.atomic_add(&ore, 3)?;
                Ok::<_, TxError<LedgerError>>(())
            }
        })
        .await?;
    assert_eq!(l.balances_and_watch(P1).await?.0, before);
    // The next write (a debit: no credit, so the held index is not what sets
    // the totals) sets every total from the shards, then adds its own change.
    l.consume(P1, "k2", "spend", &[gold(1_000)]).await?;
    let (_, scan, totals) = reads(&l, P1).await?;
    let totals = totals.expect("set by the write");
    assert_eq!(totals, projection::to_balances(&scan));
    assert_eq!(bal(&totals, Asset::currency("gold")), 39_000);
    assert_eq!(bal(&totals, Asset::currency("gems")), 9);
    assert_eq!(l.balances_and_watch(P1).await?.0, totals);
    assert!(l.audit_player(P1).await?.is_clean());
    Ok(())
}

#[tokio::test]
async fn the_audit_reports_a_total_that_drifted_from_its_shards() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    l.grant(P1, "k1", "quest", &[gold(70)]).await?;
    assert!(l.audit_player(P1).await?.is_clean());
    // A writer that does not keep totals (built before them) adds to a shard.
    l.store()
        .run(|tx| {
            let (shard, gen) = (
                keys::shard(&l.region, P1, &Asset::currency("gold"), 0),
                keys::changes(&l.region, P1),
            );
            async move {
                tx.atomic_add(&shard, 5)?;
                tx.atomic_add(&gen, 1)?;
                Ok::<_, TxError<LedgerError>>(())
            }
        })
        .await?;
    let audit = l.audit_player(P1).await?;
    assert!(audit.mismatches.contains(&Mismatch::Total {
        asset: Asset::currency("gold"),
        total: 70,
        shards: 75,
    }));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_while_totals_are_first_set_lose_nothing() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    // Several players, one after another: the race below is not certain to
    // go wrong in one try when the first write's read takes no conflicts.
    for p in 0..16 {
        let player = format!("{p:032x}");
        l.grant(
            &player,
            "k0",
            "quest",
            &[gold(1_000), Quantity::currency("gems", 1_000)],
        )
        .await?;
        forget_totals(&l, &player).await?;
        // Many writers at once, each the "first" write without the marker in
        // its snapshot: one sets the totals, the others conflict and retry
        // (or find the marker), and no add is lost.
        let mut tasks = Vec::new();
        for i in 0..24 {
            let (l, player) = (l.clone(), player.clone());
            tasks.push(tokio::spawn(async move {
                if i % 3 == 0 {
                    l.consume(
                        &player,
                        &format!("c{i}"),
                        "spend",
                        &[Quantity::currency("gems", 2)],
                    )
                    .await
                } else {
                    l.grant(
                        &player,
                        &format!("g{i}"),
                        "loot",
                        &[gold(1), Quantity::currency("gems", 1)],
                    )
                    .await
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
        let (_, scan, totals) = reads(&l, &player).await?;
        let totals = totals.expect("set by the first write");
        assert_eq!(totals, projection::to_balances(&scan), "player {p}");
        assert_eq!(bal(&totals, Asset::currency("gold")), 1_016);
        assert_eq!(bal(&totals, Asset::currency("gems")), 1_000 + 16 - 16);
        assert!(l.audit_player(&player).await?.is_clean());
    }
    Ok(())
}

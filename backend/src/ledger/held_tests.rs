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

pub(super) async fn indexed(
    l: &Ledger<crate::store::embedded::EmbeddedStore>,
    player: &str,
) -> anyhow::Result<bool> {
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
    // Make it look like a ledger from before the index: no entries, no
    // marker (and no "indexed" marker, which vouches for it).
    let (region, held) = (l.region.clone(), keys::held(&l.region, P1));
    l.store()
        .run(|tx| {
            let (region, (b, e)) = (region.clone(), held.range());
            async move {
                tx.clear_range(&b, &e)?;
                tx.clear(&keys::held_all(&region, P1))?;
                tx.clear(&keys::indexed(&region, P1))?;
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

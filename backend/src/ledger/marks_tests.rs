//! The "indexed" marker (`marks`, keys.rs "indexed"): ledgers written before
//! it (both older markers set, or neither) read the same balances and get it
//! with their next write, whatever that write is.

use super::tests::{bal, gold, open, P1};
use super::*;
use crate::store::TxError;

type TestLedger = Ledger<crate::store::embedded::EmbeddedStore>;

/// Which of "indexed", "held_all" and "tot_all" the player has.
async fn markers(l: &TestLedger, player: &str) -> anyhow::Result<[bool; 3]> {
    let keys = [
        keys::indexed(&l.region, player),
        keys::held_all(&l.region, player),
        keys::totals_all(&l.region, player),
    ];
    Ok(l.store()
        .run(|tx| {
            let keys = keys.clone();
            async move {
                let mut out = [false; 3];
                for (o, k) in out.iter_mut().zip(&keys) {
                    *o = tx.get(k).await?.is_some();
                }
                Ok::<_, TxError<LedgerError>>(out)
            }
        })
        .await?)
}

/// The totals' read (`None`: not used) and the range read over every shard,
/// in one transaction.
async fn totals_and_scan(l: &TestLedger, player: &str) -> anyhow::Result<(Option<Balances>, Balances)> {
    let (region, player) = (l.region.clone(), player.to_owned());
    Ok(l.store()
        .run(|tx| {
            let (region, player) = (region.clone(), player.clone());
            async move {
                let totals = totals::read(&tx, &region, &player, false).await?;
                let scan = projection::read_all_scan(&tx, &region, &player, false).await?;
                Ok::<_, TxError<LedgerError>>((totals, projection::to_balances(&scan)))
            }
        })
        .await?)
}

/// Clears `keys` of the player (to make the ledger look written by older code).
async fn clear(l: &TestLedger, keys: Vec<Vec<u8>>, ranges: Vec<(Vec<u8>, Vec<u8>)>) -> anyhow::Result<()> {
    l.store()
        .run(|tx| {
            let (keys, ranges) = (keys.clone(), ranges.clone());
            async move {
                for k in &keys {
                    tx.clear(k)?;
                }
                for (b, e) in &ranges {
                    tx.clear_range(b, e)?;
                }
                Ok::<_, TxError<LedgerError>>(())
            }
        })
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_ledger_written_before_the_marker_reads_through_the_older_markers_and_gets_it() -> anyhow::Result<()>
{
    let (_dir, l) = open("eu").await?;
    l.grant(P1, "k1", "quest", &[gold(500), Quantity::currency("gems", 9)])
        .await?;
    assert_eq!(markers(&l, P1).await?, [true, true, true]);
    // As written by the previous version: both older markers, no "indexed".
    clear(&l, vec![keys::indexed(&l.region, P1)], vec![]).await?;
    let (totals, scan) = totals_and_scan(&l, P1).await?;
    assert_eq!(totals.as_ref(), Some(&scan), "the totals are still read");
    assert_eq!(l.balances_and_watch(P1).await?.0, scan);
    // Any write (here a debit) sets it; balances and the audit agree.
    l.consume(P1, "k2", "spend", &[gold(200)]).await?;
    assert_eq!(markers(&l, P1).await?, [true, true, true]);
    l.grant(P1, "k3", "loot", &[gold(7), Quantity::item("ore", 3)])
        .await?;
    let (totals, scan) = totals_and_scan(&l, P1).await?;
    assert_eq!(totals.as_ref(), Some(&scan));
    assert_eq!(bal(&scan, Asset::currency("gold")), 307);
    assert_eq!(bal(&scan, Asset::item("ore")), 3);
    assert_eq!(l.balances(P1).await?, scan);
    assert!(l.audit_player(P1).await?.is_clean());
    Ok(())
}

#[tokio::test]
async fn a_first_write_that_only_debits_indexes_the_ledger_and_sets_its_totals() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    l.grant(P1, "k1", "quest", &[gold(40), Quantity::currency("gems", 9)])
        .await?;
    // As written before the held-asset index and the totals: shards only.
    let r = &l.region;
    clear(
        &l,
        vec![
            keys::indexed(r, P1),
            keys::held_all(r, P1),
            keys::totals_all(r, P1),
        ],
        vec![keys::held(r, P1).range(), keys::totals(r, P1).range()],
    )
    .await?;
    assert_eq!(markers(&l, P1).await?, [false, false, false]);
    let (totals, before) = totals_and_scan(&l, P1).await?;
    assert!(totals.is_none());
    assert_eq!(l.balances_and_watch(P1).await?.0, before);
    // A debit (no credit to index an asset): every asset found is indexed,
    // every total set, then all three markers.
    l.consume(P1, "k2", "spend", &[Quantity::currency("gems", 4)])
        .await?;
    assert_eq!(markers(&l, P1).await?, [true, true, true]);
    let (totals, scan) = totals_and_scan(&l, P1).await?;
    assert_eq!(totals.as_ref(), Some(&scan));
    assert_eq!(bal(&scan, Asset::currency("gold")), 40);
    assert_eq!(bal(&scan, Asset::currency("gems")), 5);
    let indexed: Vec<Asset> = l
        .store()
        .run(|tx| {
            let region = l.region.clone();
            async move { projection::held_assets(&tx, &region, P1, true).await }
        })
        .await?;
    assert_eq!(indexed, vec![Asset::currency("gems"), Asset::currency("gold")]);
    assert!(l.audit_player(P1).await?.is_clean());
    Ok(())
}

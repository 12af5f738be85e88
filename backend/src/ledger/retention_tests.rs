//! Receipt retention through the event walk (real embedded store in a
//! temporary directory).

use std::time::Duration;

use super::*;
use crate::fence::{self, Fence};
use crate::ledger::tests::{bal, eu, gold, open, side, P1, P2};
use crate::ledger::types::{Asset, HistoryQuery};
use crate::store::embedded::EmbeddedStore;
use crate::store::testing::faults_enabled;
use crate::time::now_ms;

/// Receipts stored for `player` (any key).
async fn receipts(l: &Ledger<EmbeddedStore>, player: &str) -> anyhow::Result<usize> {
    let (b, e) = keys::player(&eu(), player).subspace(&("idem",)).range();
    let kvs = l
        .store()
        .run(|tx| {
            let (b, e) = (b.clone(), e.clone());
            async move { Ok::<_, TxError<LedgerError>>(tx.get_range(&b, &e, None, false).await?) }
        })
        .await?;
    Ok(kvs.len())
}

/// A pass's counts: exact, except in the store's fault mode. There an attempt
/// whose commit result was unknown but applied runs again, and the rerun
/// reports its own page only (it finds the cursor moved past the first
/// attempt's work and goes on from there), so the counts can only fall short.
/// The receipts left, asserted beside every pass, are exact either way.
fn assert_counts(r: &RetentionReport, collected: usize, events_read: usize) {
    let got = (r.receipts_collected, r.events_read);
    if faults_enabled() {
        assert!(got.0 <= collected && got.1 <= events_read, "{r:?}");
    } else {
        assert_eq!(got, (collected, events_read), "{r:?}");
    }
}

/// One pass over `player` with receipts created at or before `cutoff_ms` old.
async fn pass(l: &Ledger<EmbeddedStore>, player: &str, cutoff_ms: u64, batch: usize) -> RetentionReport {
    l.collect_player(player, cutoff_ms, batch, now_ms())
        .await
        .unwrap()
        .expect("not fenced")
}

#[tokio::test]
async fn old_receipts_go_new_ones_stay_and_a_key_is_new_after_its_window() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    l.grant(P1, "a", "loot", &[gold(1)]).await?;
    let b = l.grant(P1, "b", "loot", &[gold(1)]).await?;
    tokio::time::sleep(Duration::from_millis(3)).await;
    let c = l.grant(P1, "c", "loot", &[gold(1)]).await?;
    assert!(c.receipt.at_ms > b.receipt.at_ms);

    let r = pass(&l, P1, b.receipt.at_ms, 100).await;
    assert_counts(&r, 2, 3);
    assert!(r.oldest_receipt_age_ms <= now_ms() - c.receipt.at_ms, "{r:?}");
    assert_eq!(receipts(&l, P1).await?, 1);

    // After its window a key is new; inside it, a retry is a duplicate.
    assert!(!l.grant(P1, "a", "loot", &[gold(1)]).await?.duplicate);
    assert!(l.grant(P1, "c", "loot", &[gold(1)]).await?.duplicate);
    assert_eq!(bal(&l.balances(P1).await?, Asset::currency("gold")), 4);
    // Events are the audit trail: all four stay.
    let page = l.history(P1, HistoryQuery::default()).await?;
    assert_eq!(page.events.len(), 4);

    // The next pass starts after the cursor: it reads the one kept event.
    let r = pass(&l, P1, b.receipt.at_ms, 100).await;
    assert_counts(&r, 0, 1);
    assert_eq!(receipts(&l, P1).await?, 2, "c's and the new a's");
    Ok(())
}

#[tokio::test]
async fn a_pass_reads_what_expired_not_everything_the_player_holds() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    let before = now_ms() - 1;
    for i in 0..300 {
        l.grant(P1, &format!("k{i}"), "loot", &[gold(1)]).await?;
    }
    // Nothing old: one event read, not 300 receipts.
    let r = pass(&l, P1, before, 50).await;
    assert_counts(&r, 0, 1);
    assert_eq!(receipts(&l, P1).await?, 300);
    // All old: collected in one pass (pages of 1, then 50); then nothing is left to read.
    let r = pass(&l, P1, now_ms(), 50).await;
    assert_counts(&r, 300, 300);
    assert_eq!(receipts(&l, P1).await?, 0);
    let r = pass(&l, P1, now_ms(), 50).await;
    assert_counts(&r, 0, 0);
    Ok(())
}

#[tokio::test]
async fn a_backlog_is_worked_off_over_passes() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    let n = MAX_EVENT_PAGES_PER_PLAYER + 6;
    let start = now_ms();
    for i in 0..n {
        l.grant(P1, &format!("k{i}"), "loot", &[gold(1)]).await?;
    }
    let first = pass(&l, P1, now_ms(), 1).await;
    assert_counts(&first, MAX_EVENT_PAGES_PER_PLAYER, MAX_EVENT_PAGES_PER_PLAYER);
    assert!(first.oldest_receipt_age_ms <= now_ms() - start, "{first:?}");
    let left = receipts(&l, P1).await?;
    // One page per event: 64 pages leave 6 (fewer in fault mode, where a
    // rerun after an applied commit goes on with the next event).
    assert!(left <= 6 && (left == 6 || faults_enabled()), "{left} left");
    let second = pass(&l, P1, now_ms(), 1).await;
    assert_counts(&second, left, left);
    assert_eq!(receipts(&l, P1).await?, 0);
    Ok(())
}

/// A trade's receipt is the initiator's; the counterparty's event has none,
/// and its pass deletes only its own receipts.
#[tokio::test]
async fn a_trade_leaves_one_receipt_and_both_passes_work() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    l.grant(P2, "g", "loot", &[gold(5)]).await?;
    l.trade(&side(P1, vec![]), &side(P2, vec![gold(2)]), "t").await?;
    assert_eq!((receipts(&l, P1).await?, receipts(&l, P2).await?), (1, 1));
    let r2 = pass(&l, P2, now_ms(), 100).await;
    assert_counts(&r2, 1, 2);
    assert_eq!((receipts(&l, P1).await?, receipts(&l, P2).await?), (1, 0));
    let r1 = pass(&l, P1, now_ms(), 100).await;
    assert_counts(&r1, 1, 1);
    assert_eq!((receipts(&l, P1).await?, receipts(&l, P2).await?), (0, 0));
    Ok(())
}

#[tokio::test]
async fn a_fenced_player_is_skipped() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    l.grant(P1, "g", "loot", &[gold(5)]).await?;
    l.store()
        .run(|tx| async move {
            let f = Fence::Outgoing {
                transfer: "t1".into(),
                to: "us".into(),
            };
            fence::set::<_, LedgerError>(&tx, &eu(), P1, &f)
        })
        .await?;
    assert_eq!(l.collect_player(P1, now_ms(), 100, now_ms()).await?, None);
    assert_eq!(receipts(&l, P1).await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_region_pass_stops_at_its_budget_and_the_next_goes_on_after_it() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    // Player ids are 32 hex digits; these sort in this order.
    let players = [
        "0a000000000000000000000000000000",
        "0b000000000000000000000000000000",
        "0c000000000000000000000000000000",
        "0d000000000000000000000000000000",
    ];
    for p in players {
        l.grant(p, "g", "loot", &[gold(1)]).await?;
    }
    let cutoff = now_ms();
    let (mut cursor, mut left) = (None, players.len());
    // A spent budget still visits one player, then stops: one player a pass,
    // in key order, each pass after the last.
    for (i, p) in players.iter().take(2).enumerate() {
        let r = l
            .collect_region(cutoff, 100, 10, Some(Duration::ZERO), &mut cursor, now_ms())
            .await?;
        assert_eq!(
            (r.players, r.out_of_time, r.wrapped),
            (1, true, false),
            "pass {i}: {r:?}"
        );
        assert_eq!(cursor.as_deref(), Some(*p));
        assert_eq!(receipts(&l, p).await?, 0, "{p} visited");
        left -= 1;
        for q in &players[i + 1..] {
            assert_eq!(receipts(&l, q).await?, 1, "{q} not visited yet");
        }
    }
    // A budget far from spent: the cap decides.
    let r = l
        .collect_region(
            cutoff,
            100,
            1,
            Some(Duration::from_secs(600)),
            &mut cursor,
            now_ms(),
        )
        .await?;
    assert_eq!((r.players, r.out_of_time, r.wrapped), (1, false, false), "{r:?}");
    left -= 1;
    // No budget: the rest, then the end of the region.
    let r = l
        .collect_region(cutoff, 100, 10, None, &mut cursor, now_ms())
        .await?;
    assert_eq!(
        (r.players, r.out_of_time, r.wrapped),
        (left, false, true),
        "{r:?}"
    );
    assert_eq!(cursor, None, "the next pass starts over");
    for p in players {
        assert_eq!(receipts(&l, p).await?, 0, "{p}");
    }
    Ok(())
}

#[test]
fn the_cursor_round_trips_and_a_bad_one_is_corrupt() {
    let id = EventId {
        gen: 7,
        stamp: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    };
    assert_eq!(decode_cursor(&encode_cursor(&id)).unwrap(), id);
    for bad in [&[][..], &[2; 15][..], &encode_cursor(&id)[..14]] {
        assert!(
            matches!(decode_cursor(bad), Err(LedgerError::Corrupt(_))),
            "{bad:?}"
        );
    }
}

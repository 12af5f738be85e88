//! Ledger tests against the real embedded store, continued: admin corrections,
//! input validation, fences, watches, concurrency at the limit, the region audit
//! and store errors (split from `tests.rs` to keep files small).

use std::time::Duration;

use super::tests::{bal, eu, gold, open, side, Delayed, CATALOG, P1, P2};
use super::*;
use crate::store::StoreError;

#[tokio::test]
async fn admin_corrections_follow_the_same_rules() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    l.grant(P1, "g", "loot", &[gold(10)]).await?;
    let fix = |delta: i64| {
        vec![Change {
            asset: Asset::currency("gold"),
            delta,
        }]
    };
    assert!(matches!(
        l.admin_correction(P1, "a0", "refund", &fix(-11)).await,
        Err(LedgerError::Insufficient { .. })
    ));
    assert!(matches!(
        l.admin_correction(P1, "a1", "", &fix(1)).await,
        Err(LedgerError::InvalidReason)
    ));
    let out = l
        .admin_correction(P1, "a2", "ticket 123: double charge", &fix(-4))
        .await?;
    assert_eq!(out.receipt.kind, EventKind::AdminCorrection);
    let last = l
        .history(
            P1,
            HistoryQuery {
                reverse: true,
                ..Default::default()
            },
        )
        .await?
        .events;
    assert_eq!(last[0].reason.as_deref(), Some("ticket 123: double charge"));
    assert_eq!(last[0].source, "admin");
    assert!(matches!(
        l.admin_correction(P1, "a2", "another reason", &fix(-4)).await,
        Err(LedgerError::IdempotencyKeyReused(_))
    ));
    assert_eq!(bal(&l.balances(P1).await?, Asset::currency("gold")), 6);
    Ok(())
}

#[tokio::test]
async fn input_is_validated() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    let cases = [
        l.grant("nothex", "k", "loot", &[gold(1)]).await,
        l.grant(P1, "", "loot", &[gold(1)]).await,
        l.grant(P1, &"k".repeat(129), "loot", &[gold(1)]).await,
        l.grant(P1, "k", "Loot!", &[gold(1)]).await,
        l.grant(P1, "k", "loot", &[]).await,
        l.grant(P1, "k", "loot", &[gold(0)]).await,
        l.grant(P1, "k", "loot", &[gold(MAX_AMOUNT), gold(1)]).await,
        l.grant(P1, "k", "loot", &[Quantity::item("unknown", 1)]).await,
        l.grant(P1, "k", "loot", &[Quantity::currency("sword", 1)]).await,
    ];
    let codes: Vec<_> = cases
        .iter()
        .map(|r| r.as_ref().map_err(|e| e.code()).err())
        .collect();
    assert_eq!(
        codes,
        [
            "invalid_player_id",
            "invalid_idempotency_key",
            "invalid_idempotency_key",
            "invalid_id",
            "invalid_quantity",
            "invalid_quantity",
            "invalid_quantity",
            "unknown_asset",
            "unknown_asset",
        ]
        .map(Some)
    );
    assert!(Ledger::new(l.store().clone(), "EU", Catalog::default()).is_err());
    assert!(l.balances(P1).await?.is_empty(), "nothing was written");
    Ok(())
}

#[tokio::test]
async fn fences_refuse_writes() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    l.grant(P1, "g", "loot", &[gold(5)]).await?;
    let set_fence = |f: Fence| {
        l.store().run(move |tx| {
            let f = f.clone();
            async move { fence::set::<_, LedgerError>(&tx, &eu(), P1, &f) }
        })
    };
    set_fence(Fence::Outgoing {
        transfer: "t1".into(),
        to: "us".into(),
    })
    .await?;
    assert!(matches!(
        l.grant(P1, "g2", "loot", &[gold(1)]).await,
        Err(LedgerError::TransferInProgress { transfer }) if transfer == "t1"
    ));
    assert_eq!(
        bal(&l.balances(P1).await?, Asset::currency("gold")),
        5,
        "outgoing allows reads"
    );
    set_fence(Fence::Moved {
        transfer: "t1".into(),
        to: "us".into(),
    })
    .await?;
    assert!(
        matches!(l.consume(P1, "c", "x", &[gold(1)]).await, Err(LedgerError::PlayerMoved { to }) if to == "us")
    );
    assert!(matches!(
        l.balances(P1).await,
        Err(LedgerError::PlayerMoved { .. })
    ));
    assert!(matches!(
        l.trade(&side(P2, vec![]), &side(P1, vec![gold(1)]), "t").await,
        Err(LedgerError::PlayerMoved { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn watch_fires_on_a_change_from_another_handle() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    let other = Ledger::new(l.store().clone(), "eu", Catalog::from_toml_str(CATALOG)?)?;
    let (b, mut w) = l.balances_and_watch(P1).await?;
    assert!(b.is_empty());
    other.grant(P2, "g", "loot", &[gold(1)]).await?;
    assert!(tokio::time::timeout(Duration::from_millis(200), &mut w)
        .await
        .is_err());
    other.grant(P1, "g", "loot", &[gold(1)]).await?;
    tokio::time::timeout(Duration::from_secs(5), w).await??;
    assert_eq!(l.watch_changes(P1).await?.seq, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_grants_near_the_limit_never_pass_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let inner = crate::store::testing::open_store(dir.path()).await?;
    let store = Delayed {
        inner,
        delay: Duration::from_millis(3),
    };
    let mut catalog = Catalog::default();
    catalog.items.insert(
        "gem_shard".into(),
        ItemDef {
            max_stack: Some(1000),
            escrow_shards: Some(8),
        },
    );
    let l = Ledger::new(store, "eu", catalog)?;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let l = l.clone();
        tasks.push(tokio::spawn(async move {
            l.grant(P1, &format!("g{i}"), "loot", &[Quantity::item("gem_shard", 50)])
                .await
        }));
    }
    let (mut ok, mut full) = (0, 0);
    for t in tasks {
        match t.await? {
            Ok(_) => ok += 1,
            Err(LedgerError::LimitExceeded { .. }) => full += 1,
            Err(e) => return Err(e.into()),
        }
    }
    assert_eq!((ok, full), (20, 20));
    assert_eq!(bal(&l.balances(P1).await?, Asset::item("gem_shard")), 1000);
    assert!(l.audit_player(P1).await?.is_clean());
    assert!(
        l.stats().retries() > 0,
        "the grants overlapped (else this proves nothing)"
    );
    Ok(())
}

#[tokio::test]
async fn audit_reports_every_mismatch_and_streams_the_region() -> anyhow::Result<()> {
    let (_dir, l) = open("eu").await?;
    let players: Vec<String> = (0..5).map(|i| format!("{i:032x}")).collect();
    for p in &players {
        l.grant(p, "g", "loot", &[gold(10), Quantity::item("dust", 2)])
            .await?;
        l.consume(p, "c", "use", &[Quantity::item("dust", 1)]).await?;
    }
    let clean = l.audit_region(10, |_| {}).await?;
    assert_eq!((clean.players, clean.events, clean.mismatches), (5, 10, 0));
    // Tamper with two players' projections behind the ledger's back.
    let (p1, p3) = (players[1].clone(), players[3].clone());
    l.store()
        .run(|tx| {
            let (p1, p3) = (p1.clone(), p3.clone());
            async move {
                // Once, also when the fault mode reruns this transaction after
                // its commit applied with an unknown result.
                let done = crate::keyspace::global_family("test").pack(&("tampered",));
                if tx.get(&done).await?.is_some() {
                    return Ok(());
                }
                tx.set(&done, &[1])?;
                tx.atomic_add(&keys::shard(&eu(), &p1, &Asset::currency("gold"), 3), 5)?;
                tx.atomic_add(&keys::shard(&eu(), &p3, &Asset::item("dust"), 1), -2)?;
                tx.atomic_add(&keys::shard(&eu(), &p3, &Asset::item("sword"), 0), 2)?;
                Ok::<_, TxError<LedgerError>>(())
            }
        })
        .await?;
    let a1 = l.audit_player(&players[1]).await?;
    assert_eq!(
        a1.mismatches,
        vec![
            // The shard written without its total (kept since the first write).
            Mismatch::Total {
                asset: Asset::currency("gold"),
                total: 10,
                shards: 15
            },
            Mismatch::Balance {
                asset: Asset::currency("gold"),
                projected: 15,
                folded: 10
            }
        ]
    );
    let a3 = l.audit_player(&players[3]).await?;
    // dust: total + negative shard + balance; sword: total + balance + over limit
    assert_eq!(a3.mismatches.len(), 6, "{a3:?}");
    assert!(a3.mismatches.contains(&Mismatch::OverLimit {
        asset: Asset::item("sword"),
        balance: 2,
        limit: 1
    }));
    let mut seen = Vec::new();
    let summary = l.audit_region(1, |a| seen.push(a.player.clone())).await?;
    assert_eq!(seen, players, "every player, in key order, once");
    assert_eq!(
        (summary.players, summary.clean_players, summary.mismatches),
        (5, 3, 8)
    );
    assert_eq!(summary.reported.len(), 1);
    assert_eq!(summary.reported[0].player, players[1]);
    Ok(())
}

#[tokio::test]
async fn store_errors_are_not_hidden() -> anyhow::Result<()> {
    // A retry limit of one attempt with an injected retryable failure surfaces
    // as a store error, and nothing is applied.
    let (_dir, l) = open("eu").await?;
    l.fail_next_attempts_after_writes(1000);
    let res = l.grant(P1, "k", "loot", &[gold(1)]).await;
    l.fail_next_attempts_after_writes(0);
    assert!(
        matches!(res, Err(LedgerError::Store(StoreError::RetryLimitReached { .. }))),
        "{res:?}"
    );
    assert!(l.balances(P1).await?.is_empty());
    Ok(())
}

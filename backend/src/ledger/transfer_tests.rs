//! A cross-region transfer carries the ledger along (real embedded stores: one
//! global, one per region, so the regions' versionstamps are unrelated).

use super::tests::CATALOG;
use super::*;
use crate::identity::Identity;
use crate::store::embedded::EmbeddedStore;
use crate::transfer::Transfer;

const SECRET: &[u8] = b"ledger-transfer-secret-0123456789";

async fn open_store() -> anyhow::Result<(tempfile::TempDir, EmbeddedStore)> {
    let dir = tempfile::tempdir()?;
    let store = crate::store::testing::open_store(dir.path()).await?;
    Ok((dir, store))
}

#[tokio::test]
async fn transfer_moves_the_ledger_and_it_audits_clean_in_the_destination() -> anyhow::Result<()> {
    let (_d1, global) = open_store().await?;
    let (_d2, eu_store) = open_store().await?;
    let (_d3, us_store) = open_store().await?;
    let identity = Identity::open(global).await?;
    let mut transfer = Transfer::new(
        identity.clone(),
        [
            ("eu".to_string(), eu_store.clone()),
            ("us".to_string(), us_store.clone()),
        ],
    );
    transfer.register_family(Arc::new(LedgerFamily));
    let eu = Ledger::new(eu_store, "eu", Catalog::from_toml_str(CATALOG)?)?;
    let us = Ledger::new(us_store, "us", Catalog::from_toml_str(CATALOG)?)?;

    let player = identity
        .login_device("dev-ledger", SECRET, "eu")
        .await?
        .account
        .player;
    let friend = identity
        .login_device("dev-friend", SECRET, "eu")
        .await?
        .account
        .player;
    let first = eu
        .grant(
            &player,
            "g1",
            "match_reward",
            &[Quantity::currency("gold", 500), Quantity::item("ore", 7000)],
        )
        .await?;
    eu.grant(&player, "g2", "store_topup", &[Quantity::currency("gems", 30)])
        .await?;
    eu.purchase(&player, "b1", "potion_pack").await?;
    eu.consume(&player, "c1", "crafting", &[Quantity::item("ore", 1234)])
        .await?;
    eu.grant(&friend, "f1", "match_reward", &[Quantity::item("sword", 1)])
        .await?;
    let side = |p: &str, gives| TradeSide {
        player: p.to_owned(),
        home_region: "eu".into(),
        gives,
    };
    eu.trade(
        &side(&player, vec![Quantity::currency("gold", 120)]),
        &side(&friend, vec![Quantity::item("sword", 1)]),
        "t1",
    )
    .await?;
    eu.grant(
        &player,
        "g1",
        "match_reward",
        &[Quantity::currency("gold", 500), Quantity::item("ore", 7000)],
    )
    .await?; // a duplicate: recorded
    let balances = eu.balances(&player).await?;
    let history = eu.history(&player, HistoryQuery::default()).await?.events;
    assert_eq!(history.len(), 5);

    let id = transfer.start(&player, "us").await?;
    transfer.resume(&id).await?;
    assert_eq!(identity.home_region(&player).await?, "us");

    // Everything arrived, byte for byte, and audits clean.
    assert_eq!(us.balances(&player).await?, balances);
    assert_eq!(
        us.history(&player, HistoryQuery::default()).await?.events,
        history
    );
    assert_eq!(us.duplicates(&player).await?.len(), 1);
    let audit = us.audit_player(&player).await?;
    assert!(audit.is_clean() && audit.events == 5, "{audit:?}");
    // The source refuses the player and holds nothing; the friend is untouched.
    assert!(matches!(eu.balances(&player).await, Err(LedgerError::PlayerMoved { to }) if to == "us"));
    assert!(matches!(
        eu.grant(&player, "late", "quest", &[Quantity::currency("gold", 1)])
            .await,
        Err(LedgerError::PlayerMoved { .. })
    ));
    assert_eq!(
        eu.audit_region(10, |_| {}).await?.players,
        1,
        "only the friend is left in eu"
    );
    assert_eq!(
        eu.balances(&friend).await?.get(&Asset::currency("gold")),
        Some(&120)
    );

    // Idempotency keys travel: a late retry of an eu request is a duplicate in us.
    let dup = us
        .grant(
            &player,
            "g1",
            "match_reward",
            &[Quantity::currency("gold", 500), Quantity::item("ore", 7000)],
        )
        .await?;
    assert!(dup.duplicate && dup.receipt == first.receipt);

    // New events sort after the copied ones even though this store's
    // versionstamps are smaller (the generation was bumped).
    let new = us
        .grant(&player, "u1", "quest", &[Quantity::currency("gold", 1)])
        .await?;
    // (The fault mode changes how many commits each store makes, so there the
    // premise may not hold; the ordering below is checked either way.)
    assert!(
        crate::store::testing::faults_enabled() || new.receipt.event.stamp < history.last().unwrap().id.stamp,
        "us stamps are smaller"
    );
    assert_eq!(new.receipt.event.gen, history[0].id.gen + 1);
    let now = us
        .history(
            &player,
            HistoryQuery {
                reverse: true,
                limit: 1,
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(now.events[0].id, new.receipt.event);
    let summary = us.audit_region(10, |_| {}).await?;
    assert!(
        summary.is_clean() && summary.players == 1 && summary.events == 6,
        "{summary:?}"
    );
    Ok(())
}

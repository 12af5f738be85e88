//! Churn: a compressed hour (60 "minutes" of 50 ms) of logins, queues,
//! matches, grants and retried grants through gateway incarnations that crash
//! every 15 minutes, with the sweeper running. Stored keys per family stay
//! bounded by the population and the retention windows, not by total traffic;
//! the ledger audit is clean after GC.

use std::time::Duration;

use foundationdb_tuple::Subspace;

use super::*;
use crate::keyspace::{global_family, region_family};
use crate::ledger::{Catalog, Ledger, Quantity};
use crate::matchmaker::*;
use crate::presence::{Claim, Presence};
use crate::store::embedded::{EmbeddedStore, PersistMode};
use crate::store::Transaction;
use crate::time::now_ms;

const MINUTE_MS: u64 = 50;
const POPULATION: u64 = 40;

/// Keys under `sub`, counted by the first tuple element after it (or after a
/// player id when `skip_player`).
async fn count(
    store: &EmbeddedStore,
    sub: &Subspace,
    skip_player: bool,
) -> anyhow::Result<std::collections::BTreeMap<String, usize>> {
    let (b, e) = sub.range();
    let kvs = store
        .run(|tx| {
            let (b, e) = (b.clone(), e.clone());
            async move {
                Ok::<_, crate::store::TxError<LivenessError>>(
                    tx.get_range_snapshot(&b, &e, None, false).await?,
                )
            }
        })
        .await?;
    let mut out = std::collections::BTreeMap::new();
    for kv in kvs {
        // The first (or, after a player id, second) tuple element: a string
        // is 0x02 ... 0x00 (no escaped NULs in these names).
        let mut rest = &kv.key[sub.bytes().len()..];
        let mut string = || -> Option<String> {
            let (&t, tail) = rest.split_first()?;
            if t != 0x02 {
                return None;
            }
            let end = tail.iter().position(|&b| b == 0)?;
            let s = String::from_utf8_lossy(&tail[..end]).into_owned();
            rest = &tail[end + 1..];
            Some(s)
        };
        if skip_player {
            string();
        }
        let name = string().unwrap_or_else(|| "(other)".to_string());
        *out.entry(name).or_default() += 1;
    }
    Ok(out)
}

#[tokio::test]
async fn a_compressed_hour_of_churn_keeps_stored_keys_bounded() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = crate::store::testing::config(dir.path());
    cfg.persist = PersistMode::Buffered;
    let store = EmbeddedStore::open(cfg).await?;
    let pool: MatchmakerConfig = serde_json::from_str(
        r#"{"regions": [{"name": "eu"}], "queues": [
        {"name": "duel", "teams": 2, "team_size": 1, "expansions": [{"after_ms": 0, "max_skill_diff": 5000.0}]}]}"#,
    )?;
    let live = Liveness::new(store.clone(), "eu")?;
    let plain = Matchmaker::new(store.clone(), "eu", pool)?;
    let ledger = Ledger::new(
        store.clone(),
        "eu",
        Catalog::from_toml_str("[currencies.gold]\n")?,
    )?;
    let windows = 4 * MINUTE_MS;
    let sweeper = Sweeper::new(
        live.clone(),
        plain.clone(),
        Presence::new(store.clone()),
        "sweeper",
        SweepConfig {
            interval_ms: MINUTE_MS,
            lease_ttl_ms: 10 * MINUTE_MS,
            resume_window_ms: 2 * MINUTE_MS,
            finished_retention_ms: windows,
            receipt_retention_ms: windows,
            ledger_players_per_pass: POPULATION as usize,
            // Every player in each pass, however slow the machine: this test
            // is about what the passes collect, not how long they take.
            ledger_pass_budget_ms: 5 * MINUTE_MS,
            ..SweepConfig::default()
        },
    )?
    .with_ledger(ledger.clone());
    let servers = std::sync::Arc::new(StaticAllocator::new([(
        "eu".to_string(),
        vec!["gs:1".to_string()],
    )]));
    let mut worker = Worker::new(plain.clone(), WorkerConfig::new("w"), servers)?;
    let player = |n: u64| format!("{n:032x}");

    let (mut inc, mut grants, mut created, mut mid) = (0u64, 0u64, 0u64, None);
    for minute in 0..60u64 {
        let now = now_ms();
        if minute % 15 == 0 {
            // The previous incarnation crashes: it simply stops heartbeating.
            inc = live.register(&format!("gw-{minute}"), MINUTE_MS, now).await?;
        }
        // A generous expiry: a slow machine must not make the live one look dead.
        live.heartbeat(inc, now + 10 * MINUTE_MS).await?;
        let (presence, mm) = (
            Presence::new(store.clone()).with_incarnation(inc),
            plain.clone().with_incarnation(inc),
        );
        for i in 0..POPULATION / 2 {
            let p = player((minute * 7 + i) % POPULATION);
            presence.claim(&p, &Claim::new(now, rand::random(), "gw")).await?;
            let req = TicketRequest {
                players: vec![p.clone()],
                queue: "duel".into(),
                skill: Skill {
                    rating: 1500.0,
                    uncertainty: 10.0,
                },
                home_region: "eu".into(),
                latencies: vec![],
                max_latency_ms: None,
            };
            mm.create_ticket(req).await?;
            created += 1;
            let key = format!("grant-{minute}-{i}");
            ledger
                .grant(&p, &key, "churn", &[Quantity::currency("gold", 1)])
                .await?;
            grants += 1;
            if i % 5 == 0 {
                let again = ledger
                    .grant(&p, &key, "churn", &[Quantity::currency("gold", 1)])
                    .await?;
                assert!(again.duplicate);
            }
        }
        worker.maintain_leases(now).await?;
        worker.round(now).await?;
        // The live gateway heartbeats on its own timer: a minute that ran
        // long on a loaded machine (the fault mode's delays) must not make it
        // look dead to the sweep.
        live.heartbeat(inc, now_ms() + 10 * MINUTE_MS).await?;
        sweeper.sweep_once(now_ms()).await?;
        if minute == 30 {
            mid = Some(count(&store, &region_family(&RegionName::new("eu")?, "mm"), false).await?);
        }
        tokio::time::sleep(Duration::from_millis(MINUTE_MS)).await;
    }
    let eu = RegionName::new("eu")?;
    let late = count(&store, &region_family(&eu, "mm"), false).await?;
    // Bounded mid-run: tickets kept ≈ 20 per minute × the retention (4) plus
    // slack for a slow machine; never the 1,200 created.
    for family in ["tk", "pl", "fin"] {
        let (m, l) = (
            mid.as_ref().unwrap().get(family).copied().unwrap_or(0),
            late.get(family).copied().unwrap_or(0),
        );
        assert!(
            l < created as usize / 3,
            "{family}: {l} keys of {created} tickets"
        );
        assert!(
            l <= 2 * m + 2 * POPULATION as usize,
            "{family} grows with traffic: {m} -> {l}"
        );
    }

    // Once every window has passed, only live state remains.
    tokio::time::sleep(Duration::from_millis(windows + 4 * MINUTE_MS)).await;
    live.heartbeat(inc, now_ms() + 100 * MINUTE_MS).await?;
    for _ in 0..3 {
        sweeper.sweep_once(now_ms()).await?;
    }
    let mm_keys = count(&store, &region_family(&eu, "mm"), false).await?;
    let waiting = mm_keys.get("q").copied().unwrap_or(0);
    assert!(
        waiting <= 1,
        "a duel pool leaves at most one waiting: {mm_keys:?}"
    );
    assert_eq!(mm_keys.get("tk").copied().unwrap_or(0), waiting, "{mm_keys:?}");
    assert_eq!(mm_keys.get("fin").copied().unwrap_or(0), 0, "{mm_keys:?}");
    assert_eq!(mm_keys.get("m").copied().unwrap_or(0), 0, "{mm_keys:?}");
    assert_eq!(live.list().await?.len(), 1, "dead incarnations forgotten");
    let inv = count(&store, &region_family(&eu, "inv"), true).await?;
    assert_eq!(inv.get("idem"), None, "receipts collected: {inv:?}");
    assert_eq!(inv.get("dup"), None, "duplicate records collected: {inv:?}");
    assert_eq!(
        inv.get("ev").copied().unwrap_or(0) as u64,
        grants,
        "events are the audit trail and stay"
    );
    let presence_keys = count(&store, &global_family("presence"), false).await?;
    assert!(presence_keys.values().sum::<usize>() <= POPULATION as usize);
    eprintln!("keys at minute 30: {mid:?}\nat minute 59: {late:?}\nafter the windows: mm {mm_keys:?}, inv {inv:?}, presence {presence_keys:?} ({created} tickets, {grants} grants)");
    let audit = ledger.audit_region(10, |_| {}).await?;
    assert!(audit.is_clean() && audit.players == POPULATION, "{audit:?}");
    Ok(())
}

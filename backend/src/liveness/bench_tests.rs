//! The store cost of liveness, measured (ignored by default; run with
//! `OUTPOST_BENCH_SESSIONS=10000 cargo test -p outpost-backend --lib
//! liveness::bench_tests -- --ignored --nocapture`): heartbeats, and a sweep of
//! a dead incarnation holding N sessions (a presence claim and a waiting
//! ticket each), counting transactions and the bytes written.

use std::time::Instant;

use super::*;
use crate::matchmaker::*;
use crate::presence::{Claim, Presence};
use crate::store::embedded::{EmbeddedConfig, EmbeddedStore, PersistMode};
use crate::time::now_ms;

#[tokio::test]
#[ignore = "benchmark"]
async fn bench_heartbeats_and_sweep() -> anyhow::Result<()> {
    let n: u64 = std::env::var("OUTPOST_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir()?;
    let mut cfg = EmbeddedConfig::new(dir.path());
    cfg.persist = PersistMode::Buffered;
    let store = EmbeddedStore::open(cfg).await?;
    let pool: MatchmakerConfig = serde_json::from_str(
        r#"{"regions": [{"name": "eu"}], "queues": [
        {"name": "squad", "teams": 2, "team_size": 5, "expansions": [{"after_ms": 0, "max_skill_diff": 50.0}]}]}"#,
    )?;
    let live = Liveness::new(store.clone(), "eu")?;
    let now = now_ms();
    let inc = live.register("gw-a", 1_000, now - 10_000).await?;

    let t = Instant::now();
    for i in 0..1_000u64 {
        live.heartbeat(inc, now - 10_000 + i).await?;
    }
    let hb = t.elapsed();

    let presence = Presence::new(store.clone()).with_incarnation(inc);
    let mm = Matchmaker::new(store.clone(), "eu", pool.clone())?.with_incarnation(inc);
    let t = Instant::now();
    for i in 0..n {
        let p = format!("{i:032x}");
        presence
            .claim(&p, &Claim::new(now - 9_000, i + 1, "10.0.0.1:4433"))
            .await?;
        mm.create_ticket(TicketRequest {
            players: vec![p],
            queue: "squad".into(),
            // Spread so nothing would match (and no worker runs anyway).
            skill: Skill {
                rating: i as f64 * 1_000.0,
                uncertainty: 1.0,
            },
            home_region: "eu".into(),
            latencies: vec![],
            max_latency_ms: None,
        })
        .await?;
    }
    let setup = t.elapsed();

    let sweeper = Sweeper::new(
        live.clone(),
        Matchmaker::new(store.clone(), "eu", pool)?,
        Presence::new(store.clone()),
        "bench",
        SweepConfig {
            resume_window_ms: 1_000,
            finished_retention_ms: 0,
            ..SweepConfig::default()
        },
    )?;
    let t = Instant::now();
    let r = sweeper.sweep_once(now).await?;
    let sweep = t.elapsed();
    assert_eq!((r.tickets_removed, r.claims_cleared), (n as usize, n as usize));
    let pages = n.div_ceil(100);
    // Transactions: lease 1 + list 1 + mark 1 + forget 1; tickets: a page read
    // per 100, then per ticket a record read, a presence read (global store)
    // and the removal; claims: a page read per 100, then one per claim.
    let txs = 4 + pages + 3 * n + pages + n;
    eprintln!(
        "heartbeat: {:.1} µs each (1,000)\nsetup ({n} claims + tickets): {:.2} s\nsweep of {n} sessions: {:.2} s = {:.0} sessions/s, {txs} transactions ({:.2} per session)",
        hb.as_secs_f64() * 1e3,
        setup.as_secs_f64(),
        sweep.as_secs_f64(),
        n as f64 / sweep.as_secs_f64(),
        txs as f64 / n as f64,
    );
    Ok(())
}

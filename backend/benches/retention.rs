//! Receipt retention benchmark (embedded backend): what a sweep pass costs per
//! player it visits, the figure behind the sweep's defaults
//! (`ledger_players_per_pass`, `ledger_pass_budget_ms`).
//!
//! ```text
//! cargo bench -p outpost-backend --bench retention -- [--players 10000] [--runs 5]
//! ```
//!
//! `--players` players get one grant each (64 writers, durable commits). Then,
//! per run: one region pass over all of them with nothing to collect (the
//! cutoff is before every grant: a caught-up player, the steady state), timed
//! per player. Last, one pass with every receipt expired (one receipt deleted
//! per player: a player's first pass after its grants leave the window). Passes
//! run without a time budget, one player after the other as the sweep runs
//! them, so µs per player × players is a pass's duration on this store. Data
//! lives under `$OUTPOST_BENCH_DIR` (default: the system temp dir).

use std::time::Instant;

use anyhow::Context;
use outpost_backend::ledger::{Catalog, Ledger, Quantity};
use outpost_backend::store::embedded::{EmbeddedConfig, EmbeddedStore};
use outpost_backend::time::now_ms;

const WRITERS: usize = 64;

fn player(i: usize) -> String {
    format!("{:032x}", i + 1)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One region pass from the start over `players`: µs per visited player.
async fn pass(ledger: &Ledger<EmbeddedStore>, cutoff_ms: u64, players: usize) -> anyhow::Result<f64> {
    let mut cursor = None;
    let t0 = Instant::now();
    let r = ledger
        .collect_region(cutoff_ms, 100, players, None, &mut cursor, now_ms())
        .await?;
    anyhow::ensure!(r.players == players, "visited {} of {players}", r.players);
    Ok(t0.elapsed().as_secs_f64() * 1e6 / players as f64)
}

async fn run(players: usize, runs: usize) -> anyhow::Result<()> {
    let base = std::env::var_os("OUTPOST_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(&base).context("bench dir")?;
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).await?;
    let ledger = Ledger::new(store, "bench", Catalog::from_toml_str("[currencies.gems]\n")?)?;
    let before = now_ms().saturating_sub(1);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..players).step_by(WRITERS) {
                ledger
                    .grant(&player(i), "g", "bench", &[Quantity::currency("gems", 1)])
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!(
        "{players} players with one grant each in {:.1} s; load {}",
        t0.elapsed().as_secs_f64(),
        load_average()
    );
    let mut caught_up = Vec::new();
    for _ in 0..runs {
        caught_up.push(pass(&ledger, before, players).await?);
    }
    let expired = pass(&ledger, now_ms(), players).await?;
    let med = median(caught_up.clone());
    println!("| pass over {players} players | µs per player | runs |");
    println!("|---|---:|---|");
    let per_run: Vec<String> = caught_up.iter().map(|u| format!("{u:.1}")).collect();
    println!(
        "| caught up (nothing to collect) | {med:.1} (median) | {} |",
        per_run.join(", ")
    );
    println!("| one expired receipt each (deleted) | {expired:.1} | 1 |");
    println!(
        "a pass of 1,000 caught-up players takes {:.0} ms here; load at the end {}",
        med * 1_000.0 / 1e3,
        load_average()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let (mut players, mut runs) = (10_000usize, 5usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--players" => players = args.next().context("--players N")?.parse()?,
            "--runs" => runs = args.next().context("--runs N")?.parse()?,
            "--bench" => {} // passed by `cargo bench`
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    anyhow::ensure!(players > 0 && runs > 0, "--players and --runs must be > 0");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(players, runs))
}

/// `/proc/loadavg`'s first three fields (empty where there is none).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

//! Inventory ledger benchmark (embedded backend, durable commits): grants per
//! second, latency percentiles and conflict retries, for 64 concurrent writers on
//! distinct players and on one hot player (unlimited asset, limited asset with
//! escrow shards, and limited asset with a single shard as the naive baseline).
//!
//! ```text
//! cargo bench -p outpost-backend --bench ledger -- [--secs 3] [--runs 3] [--writers 64]
//! ```
//!
//! Each cell runs `--runs` times (fresh store each time) for `--secs` seconds,
//! in interleaved rounds (every workload once per round, so drift in machine
//! load favours none); the table reports the median of the runs for each
//! figure, and the last lines the hot/many ratios (each hot workload's median
//! rate against the many-player rate; the target is ≥ 80%). Every grant is a
//! full ledger write (fence, idempotency lookup with a fresh key, balance,
//! versionstamped event and receipt, change counter) committed durably
//! (`fdatasync`, group commit). Data lives under `$OUTPOST_BENCH_DIR` (default:
//! the system temp dir; use a real disk).

use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use outpost_backend::ledger::{Catalog, Ledger, Quantity};
use outpost_backend::store::embedded::{EmbeddedConfig, EmbeddedStore};

const CATALOG: &str = r#"
    [currencies.gems]                      # unlimited: atomic add, no conflict
    [currencies.gold]                      # limited, 32 escrow shards
    max_balance = 1000000000000
    escrow_shards = 32
    [currencies.gold_one_shard]            # limited, one key read with a conflict
    max_balance = 1000000000000
    escrow_shards = 1
"#;

#[derive(Clone, Copy)]
struct Workload {
    name: &'static str,
    hot: bool,
    currency: &'static str,
}

const WORKLOADS: [Workload; 4] = [
    Workload {
        name: "distinct players, limited currency (32 shards)",
        hot: false,
        currency: "gold",
    },
    Workload {
        name: "one hot player, unlimited currency",
        hot: true,
        currency: "gems",
    },
    Workload {
        name: "one hot player, limited currency (32 escrow shards)",
        hot: true,
        currency: "gold",
    },
    Workload {
        name: "one hot player, limited currency (1 shard: naive baseline)",
        hot: true,
        currency: "gold_one_shard",
    },
];

struct Cell {
    gps: f64,
    p50_ms: f64,
    p99_ms: f64,
    retries_per_grant: f64,
    errors: u64,
}

fn player(i: usize) -> String {
    format!("{:032x}", i + 1)
}

async fn run_cell(w: Workload, writers: usize, secs: f64, base: &std::path::Path) -> anyhow::Result<Cell> {
    let dir = tempfile::tempdir_in(base).context("bench dir")?;
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).await?;
    let ledger = Ledger::new(store, "bench", Catalog::from_toml_str(CATALOG)?)?;
    // Seed every player once (their first write creates the generation record).
    for i in 0..if w.hot { 1 } else { writers } {
        ledger
            .grant(&player(i), "seed", "bench", &[Quantity::currency(w.currency, 1)])
            .await?;
    }
    let before = ledger.stats();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..writers {
        let ledger = ledger.clone();
        let p = player(if w.hot { 0 } else { t });
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3)?;
            let mut errors = 0u64;
            let mut n = 0u64;
            while Instant::now() < deadline {
                let key = format!("w{t}-{n}");
                n += 1;
                let t0 = Instant::now();
                match ledger
                    .grant(&p, &key, "match_reward", &[Quantity::currency(w.currency, 1)])
                    .await
                {
                    Ok(_) => hist.record(t0.elapsed().as_micros() as u64)?,
                    Err(_) => errors += 1,
                }
            }
            anyhow::Ok((hist, errors))
        }));
    }
    let mut all = Histogram::<u64>::new(3)?;
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t.await??;
        all.add(h)?;
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let stats = ledger.stats();
    let attempts = stats.attempts - before.attempts;
    let writes = stats.writes - before.writes;
    Ok(Cell {
        gps: all.len() as f64 / elapsed,
        p50_ms: all.value_at_quantile(0.50) as f64 / 1e3,
        p99_ms: all.value_at_quantile(0.99) as f64 / 1e3,
        retries_per_grant: attempts.saturating_sub(writes) as f64 / writes.max(1) as f64,
        errors,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let (mut secs, mut runs, mut writers) = (3.0, 3usize, 64usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--secs" => secs = args.next().context("--secs N")?.parse()?,
            "--runs" => runs = args.next().context("--runs N")?.parse()?,
            "--writers" => writers = args.next().context("--writers N")?.parse()?,
            "--bench" => {} // passed by `cargo bench`
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let base = std::env::var_os("OUTPOST_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!(
        "ledger bench: {writers} writers, {runs} runs x {secs} s per cell, medians; durable; dir {}; load {}",
        base.display(),
        load_average()
    );
    println!("| workload | grants/s | p50 (ms) | p99 (ms) | conflict retries per grant | failed grants |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut cells: Vec<Vec<Cell>> = WORKLOADS.iter().map(|_| Vec::new()).collect();
    for _ in 0..runs {
        for (w, cells) in WORKLOADS.iter().zip(cells.iter_mut()) {
            cells.push(rt.block_on(run_cell(*w, writers, secs, &base))?);
        }
    }
    let mut rates = Vec::new();
    for (w, cells) in WORKLOADS.iter().zip(&cells) {
        let gps = median(cells.iter().map(|c| c.gps).collect());
        rates.push(gps);
        println!(
            "| {} | {:.0} | {:.1} | {:.1} | {:.2} | {} |",
            w.name,
            gps,
            median(cells.iter().map(|c| c.p50_ms).collect()),
            median(cells.iter().map(|c| c.p99_ms).collect()),
            median(cells.iter().map(|c| c.retries_per_grant).collect()),
            cells.iter().map(|c| c.errors).sum::<u64>(),
        );
    }
    println!();
    for (w, rate) in WORKLOADS.iter().zip(&rates).filter(|(w, _)| w.hot) {
        println!(
            "hot/many: {}: {:.0}% of the many-player rate (target >= 80%)",
            w.name,
            100.0 * rate / rates[0]
        );
    }
    println!("load average at the end: {}", load_average());
    Ok(())
}

/// `/proc/loadavg`'s first three fields (empty where there is none).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

//! Store benchmark (embedded backend): transactions per second and latency
//! percentiles for read-modify-write (durable and buffered), 1,000-key range reads
//! and versionstamped appends, with 1, 16 and 64 concurrent writers. Durable
//! read-modify-write runs with three group-commit settings side by side: the
//! default (adaptive linger, at most 1 ms), the fixed 1 ms linger (the behaviour
//! before it adapted) and no linger.
//!
//! ```text
//! cargo bench -p outpost-backend --bench store -- [--secs 2] [--runs 3]
//! ```
//!
//! Each cell runs `--runs` times (fresh store each time) for `--secs` seconds, in
//! interleaved rounds (every workload once per round at each writer count, so
//! drift in machine load favours none); the table reports the median of the runs
//! for each figure. Data lives in a temporary
//! directory under `$OUTPOST_BENCH_DIR` (default: the system temp dir; it must be a
//! real disk, not tmpfs, for durable figures to mean anything).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use foundationdb_tuple::{Subspace, Versionstamp};
use hdrhistogram::Histogram;
use outpost_backend::store::embedded::{EmbeddedConfig, EmbeddedStore, PersistMode};
use outpost_backend::store::{Store, Transaction, TxError};

#[derive(Clone, Copy, Debug)]
enum Workload {
    RmwDurable,
    RmwDurableFixedLinger,
    RmwDurableNoLinger,
    RmwBuffered,
    Range1000,
    VersionstampAppend,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::RmwDurable => "read-modify-write, durable, distinct keys (adaptive linger, default)",
            Workload::RmwDurableFixedLinger => {
                "read-modify-write, durable, distinct keys (fixed 1 ms linger: before)"
            }
            Workload::RmwDurableNoLinger => "read-modify-write, durable, distinct keys (no linger)",
            Workload::RmwBuffered => "read-modify-write, buffered, distinct keys",
            Workload::Range1000 => "range read, 1,000 keys x 100 B",
            Workload::VersionstampAppend => "versionstamped append, durable",
        }
    }
    fn persist(self) -> PersistMode {
        match self {
            Workload::RmwBuffered => PersistMode::Buffered,
            _ => PersistMode::Durable,
        }
    }
}

struct Cell {
    tps: f64,
    p50_us: f64,
    p99_us: f64,
}

async fn run_cell(
    workload: Workload,
    writers: usize,
    secs: f64,
    base: &std::path::Path,
) -> anyhow::Result<Cell> {
    let dir = tempfile::tempdir_in(base).context("bench dir")?;
    let mut config = EmbeddedConfig::new(dir.path());
    config.persist = workload.persist();
    match workload {
        Workload::RmwDurableFixedLinger => config.group_commit_adaptive = false,
        Workload::RmwDurableNoLinger => config.group_commit_linger_us = 0,
        _ => {}
    }
    let store = EmbeddedStore::open(config).await?;
    let space = Subspace::from_bytes(b"bench".to_vec());

    if let Workload::Range1000 = workload {
        store
            .run(|tx| {
                let space = space.clone();
                async move {
                    for i in 0..1000u32 {
                        tx.set(&space.pack(&("range", i)), &[7u8; 100])?;
                    }
                    Ok::<_, TxError>(())
                }
            })
            .await?;
    }

    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, space) = (store.clone(), space.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3)?;
            let key = space.pack(&("rmw", w as u64));
            let (rb, re) = space.subspace(&("range",)).range();
            let log = space.subspace(&("log",));
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match workload {
                    Workload::RmwDurable
                    | Workload::RmwDurableFixedLinger
                    | Workload::RmwDurableNoLinger
                    | Workload::RmwBuffered => {
                        store
                            .run(|tx| {
                                let key = key.clone();
                                async move {
                                    let n = tx
                                        .get(&key)
                                        .await?
                                        .map(|v| u64::from_le_bytes(v.try_into().unwrap_or([0; 8])))
                                        .unwrap_or(0);
                                    tx.set(&key, &(n + 1).to_le_bytes())?;
                                    Ok::<_, TxError>(())
                                }
                            })
                            .await?;
                    }
                    Workload::Range1000 => {
                        let n =
                            store
                                .run(|tx| {
                                    let (rb, re) = (rb.clone(), re.clone());
                                    async move {
                                        Ok::<_, TxError>(tx.get_range(&rb, &re, None, false).await?.len())
                                    }
                                })
                                .await?;
                        anyhow::ensure!(n == 1000, "range read returned {n} rows");
                    }
                    Workload::VersionstampAppend => {
                        store
                            .run(|tx| {
                                let log = log.clone();
                                async move {
                                    tx.set_versionstamped_key(
                                        &log.pack_with_versionstamp(&(Versionstamp::incomplete(0),)),
                                        b"event payload of a few dozen bytes ........",
                                    )?;
                                    Ok::<_, TxError>(())
                                }
                            })
                            .await?;
                    }
                }
                hist.record(t0.elapsed().as_nanos() as u64)?;
            }
            anyhow::Ok(hist)
        }));
    }
    let mut all = Histogram::<u64>::new(3)?;
    for t in tasks {
        all.add(t.await??)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(Cell {
        tps: all.len() as f64 / elapsed,
        p50_us: all.value_at_quantile(0.50) as f64 / 1e3,
        p99_us: all.value_at_quantile(0.99) as f64 / 1e3,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let mut secs = 2.0;
    let mut runs = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--secs" => secs = args.next().context("--secs N")?.parse()?,
            "--runs" => runs = args.next().context("--runs N")?.parse()?,
            "--bench" => {} // passed by `cargo bench`
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let base = std::env::var_os("OUTPOST_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let rt = Arc::new(rt);
    println!(
        "store bench: {runs} runs x {secs} s per cell, medians; dir {}; load {}",
        base.display(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim_end()
    );
    println!("| workload | writers | tx/s | p50 (µs) | p99 (µs) |");
    println!("|---|---:|---:|---:|---:|");
    let workloads = [
        Workload::RmwDurable,
        Workload::RmwDurableFixedLinger,
        Workload::RmwDurableNoLinger,
        Workload::RmwBuffered,
        Workload::Range1000,
        Workload::VersionstampAppend,
    ];
    let writer_counts = [1usize, 16, 64];
    let mut cells: Vec<Vec<Vec<Cell>>> = workloads
        .iter()
        .map(|_| writer_counts.iter().map(|_| Vec::new()).collect())
        .collect();
    for (wi, &writers) in writer_counts.iter().enumerate() {
        for _ in 0..runs {
            for (k, &workload) in workloads.iter().enumerate() {
                cells[k][wi].push(rt.block_on(run_cell(workload, writers, secs, &base))?);
            }
        }
    }
    for (k, workload) in workloads.iter().enumerate() {
        for (wi, writers) in writer_counts.iter().enumerate() {
            let c = &cells[k][wi];
            println!(
                "| {} | {writers} | {:.0} | {:.0} | {:.0} |",
                workload.name(),
                median(c.iter().map(|c| c.tps).collect()),
                median(c.iter().map(|c| c.p50_us).collect()),
                median(c.iter().map(|c| c.p99_us).collect()),
            );
        }
    }
    println!(
        "load average at the end: {}",
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    );
    Ok(())
}

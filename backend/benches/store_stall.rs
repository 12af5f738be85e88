//! Store-maintenance stall benchmark (embedded backend): how long the runtime's
//! worker threads stop while fjall flushes memtables and compacts.
//!
//! A gateway runs its QUIC endpoint, its sessions and the store's transactions on
//! the same two runtime workers. If a store call blocks a worker inside fjall
//! (a lock a flush holds through an fsync, a write stall), everything else
//! scheduled on it stops too. This bench reproduces that on the gateway's shape
//! of runtime (2 workers) without a network:
//!
//! - `--writers` tasks run durable read-modify-write transactions on distinct
//!   keys with `--value-bytes` values, as fast as they can, or together at
//!   `--rate` commits per second (open loop: the same data, so the same
//!   flushes, whatever the commit path's speed; use it to compare two builds);
//!   the memtable fills and flushes every few seconds instead of every few
//!   minutes;
//! - `--readers` tasks run read-only transactions of 4 point reads each, as
//!   fast as they can, or together at `--read-rate` per second;
//! - one **ticker** task wakes every 1 ms and records how late it woke: it does
//!   not touch the store, so its lateness is how long no worker was free to run
//!   it — what a session's heartbeat or the QUIC endpoint would have waited.
//!
//! ```text
//! cargo bench -p outpost-backend --bench store_stall -- [--secs 60] [--writers 32] [--readers 4] [--value-bytes 1024] [--rate N] [--read-rate N]
//! ```
//!
//! It prints commits per second, commit and read latency percentiles, the
//! ticker's lateness (p99, p99.9, max, and the time spent more than 50 ms late),
//! and each flush it saw (a new table file in the data directory) with the worst
//! lateness in the second after it. Data lives under `$OUTPOST_BENCH_DIR`
//! (default: the system temp dir; it must be a real disk). It runs on
//! mimalloc, as the gateway binary does.

/// The gateway binary's allocator (`gateway/src/main.rs`): the stalls
/// measured here are the gateway's, and glibc's malloc adds waits of its own
/// (its arena locks, seen in the session-12 profile of the sim's gateway).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use outpost_backend::store::embedded::{EmbeddedConfig, EmbeddedStore};
use outpost_backend::store::{Durability, Store, TransactOptions, Transaction, TxError};
use rand::Rng;

struct Args {
    secs: u64,
    writers: usize,
    readers: usize,
    value_bytes: usize,
    keys: u64,
    /// Commits per second, all writers together; 0: as fast as they can.
    rate: u64,
    /// Read transactions per second, all readers together; 0: as fast as they can.
    read_rate: u64,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        secs: 60,
        writers: 32,
        readers: 4,
        value_bytes: 1024,
        keys: 100_000,
        rate: 0,
        read_rate: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut num = |name: &str| -> anyhow::Result<u64> {
            Ok(args.next().with_context(|| format!("{name} N"))?.parse()?)
        };
        match arg.as_str() {
            "--secs" => a.secs = num("--secs")?,
            "--writers" => a.writers = num("--writers")? as usize,
            "--readers" => a.readers = num("--readers")? as usize,
            "--value-bytes" => a.value_bytes = num("--value-bytes")? as usize,
            "--keys" => a.keys = num("--keys")?,
            "--rate" => a.rate = num("--rate")?,
            "--read-rate" => a.read_rate = num("--read-rate")?,
            "--bench" => {} // passed by `cargo bench`
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

fn key(i: u64) -> Vec<u8> {
    format!("stall/{i:012}").into_bytes()
}

/// Table files under `dir` (fjall writes one per flushed memtable and per
/// compaction output).
fn table_files(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .parent()
                .and_then(|p| p.file_name())
                .is_some_and(|n| n == "tables")
            {
                n += 1;
            }
        }
    }
    n
}

fn rate_name(rate: u64) -> String {
    if rate == 0 {
        "unpaced".into()
    } else {
        format!("{rate}/s")
    }
}

/// A pacer for one of `tasks` tasks sharing `rate` per second (none: unpaced).
/// Ticks missed during a stall are caught up at once, as clients that keep
/// sending would.
fn pacer(rate: u64, tasks: usize) -> Option<tokio::time::Interval> {
    (rate > 0).then(|| tokio::time::interval(Duration::from_secs_f64(tasks as f64 / rate as f64)))
}

fn ms(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let base = std::env::var_os("OUTPOST_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(&base).context("bench dir")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "store stall bench: {} s, {} writers (rate {}), {} readers (rate {}), {} B values, {} keys; dir {}; load {}",
        args.secs,
        args.writers,
        rate_name(args.rate),
        args.readers,
        rate_name(args.read_rate),
        args.value_bytes,
        args.keys,
        base.display(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim_end()
    );
    rt.block_on(run(&args, dir.path()))
}

async fn run(args: &Args, dir: &Path) -> anyhow::Result<()> {
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir)).await?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.secs);
    let stop = Arc::new(AtomicBool::new(false));

    // Flushes: a thread polls the table count every 100 ms.
    let flushes = Arc::new(Mutex::new(Vec::<f64>::new()));
    let watcher = {
        let (dir, stop, flushes) = (dir.to_path_buf(), stop.clone(), flushes.clone());
        std::thread::spawn(move || {
            let mut seen = table_files(&dir);
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let now = table_files(&dir);
                if now > seen {
                    flushes.lock().unwrap().push(start.elapsed().as_secs_f64());
                }
                seen = now;
            }
        })
    };

    // The ticker: lateness of a 1 ms timer, per wake, with its time.
    let ticker = tokio::spawn(async move {
        let mut late = Vec::<(f64, u64)>::with_capacity(1 << 20);
        let mut next = tokio::time::Instant::now() + Duration::from_millis(1);
        while Instant::now() < deadline {
            tokio::time::sleep_until(next).await;
            let now = tokio::time::Instant::now();
            late.push((start.elapsed().as_secs_f64(), (now - next).as_nanos() as u64));
            next = now + Duration::from_millis(1);
        }
        late
    });

    let durable = TransactOptions::default();
    let read_only = TransactOptions {
        durability: Durability::Relaxed,
        ..TransactOptions::default()
    };
    let mut writers = Vec::new();
    for w in 0..args.writers as u64 {
        let (store, value) = (store.clone(), vec![w as u8; args.value_bytes]);
        let keys = args.keys;
        let mut pace = pacer(args.rate, args.writers);
        writers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3)?;
            let mut i = w;
            while Instant::now() < deadline {
                if let Some(p) = pace.as_mut() {
                    p.tick().await;
                }
                let k = key(i % keys);
                i += 7919 * 64;
                let t0 = Instant::now();
                store
                    .transact(durable, |tx| {
                        let (k, value) = (k.clone(), value.clone());
                        async move {
                            let _ = tx.get(&k).await?;
                            tx.set(&k, &value)?;
                            Ok::<_, TxError>(())
                        }
                    })
                    .await?;
                hist.record(t0.elapsed().as_nanos() as u64)?;
            }
            anyhow::Ok(hist)
        }));
    }
    let mut readers = Vec::new();
    for _ in 0..args.readers {
        let (store, keys, read_only) = (store.clone(), args.keys, read_only);
        let mut pace = pacer(args.read_rate, args.readers);
        readers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3)?;
            while Instant::now() < deadline {
                if let Some(p) = pace.as_mut() {
                    p.tick().await;
                }
                let base = rand::thread_rng().gen_range(0..keys);
                let t0 = Instant::now();
                store
                    .transact(read_only, |tx| async move {
                        for j in 0..4 {
                            let _ = tx.get(&key((base + j * 101) % keys)).await?;
                        }
                        Ok::<_, TxError>(())
                    })
                    .await?;
                hist.record(t0.elapsed().as_nanos() as u64)?;
                tokio::task::yield_now().await;
            }
            anyhow::Ok(hist)
        }));
    }

    let mut commits = Histogram::<u64>::new(3)?;
    for t in writers {
        commits.add(t.await??)?;
    }
    let mut reads = Histogram::<u64>::new(3)?;
    for t in readers {
        reads.add(t.await??)?;
    }
    let late = ticker.await?;
    stop.store(true, Ordering::Relaxed);
    watcher.join().ok();
    let flushes = flushes.lock().unwrap().clone();
    report(start.elapsed(), &commits, &reads, &late, &flushes)
}

fn report(
    elapsed: Duration,
    commits: &Histogram<u64>,
    reads: &Histogram<u64>,
    late: &[(f64, u64)],
    flushes: &[f64],
) -> anyhow::Result<()> {
    let mut lateness = Histogram::<u64>::new(3)?;
    let mut over_50ms = Duration::ZERO;
    for &(_, l) in late {
        lateness.record(l.max(1))?;
        if l > 50_000_000 {
            over_50ms += Duration::from_nanos(l);
        }
    }
    let q = |h: &Histogram<u64>, q: f64| ms(h.value_at_quantile(q));
    println!(
        "commits: {:.0}/s, latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.1} ms",
        commits.len() as f64 / elapsed.as_secs_f64(),
        q(commits, 0.5),
        q(commits, 0.99),
        q(commits, 0.999),
        ms(commits.max())
    );
    println!(
        "reads (4 gets each): {:.0}/s, latency p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
        reads.len() as f64 / elapsed.as_secs_f64(),
        q(reads, 0.5),
        q(reads, 0.99),
        ms(reads.max())
    );
    println!(
        "ticker lateness: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.1} ms, max {:.1} ms; {:.2} s in wakes more than 50 ms late ({:.2}% of the run)",
        q(&lateness, 0.5),
        q(&lateness, 0.99),
        q(&lateness, 0.999),
        ms(lateness.max()),
        over_50ms.as_secs_f64(),
        100.0 * over_50ms.as_secs_f64() / elapsed.as_secs_f64()
    );
    println!("table files written: {} (flushes and compactions)", flushes.len());
    for &f in flushes {
        let worst = late
            .iter()
            .filter(|(t, _)| *t >= f - 1.0 && *t <= f + 1.0)
            .map(|&(_, l)| l)
            .max()
            .unwrap_or(0);
        println!(
            "  new table at {f:.1} s: worst ticker lateness within 1 s of it {:.1} ms",
            ms(worst)
        );
    }
    Ok(())
}

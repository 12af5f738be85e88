//! Login-queue benchmark (embedded store): how many queued players a region
//! can hold and update, the store transactions per queued player per update
//! interval, and the admissions/s achieved against the budget's rate with one
//! and with three concurrent admitters.
//!
//! ```text
//! cargo bench -p outpost-backend --bench queue -- [--runs 5] [--sizes 10000,100000] [--secs 10]
//! ```
//!
//! Transactions are counted by a wrapper around the store that counts every
//! `transact` call and every attempt (retries after conflicts included), so the
//! figures are the store's, not derived from reading the code. Durable
//! persistence (the default of `EmbeddedConfig`) unless `--buffered`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_backend::keyspace::RegionName;
use outpost_backend::queue::{Budget, Entry, Place, Queue, QueueKeys, QueueSettings};
use outpost_backend::store::embedded::{EmbeddedConfig, EmbeddedStore, PersistMode};
use outpost_backend::store::{Store, TransactOptions, TxError};

/// The embedded store, counting transactions.
#[derive(Clone)]
struct Counting {
    inner: EmbeddedStore,
    calls: Arc<AtomicU64>,
    attempts: Arc<AtomicU64>,
}

impl Counting {
    fn counts(&self) -> (u64, u64) {
        (
            self.calls.load(Ordering::Relaxed),
            self.attempts.load(Ordering::Relaxed),
        )
    }
}

impl Store for Counting {
    type Tx = <EmbeddedStore as Store>::Tx;

    fn transact<T, E, F, Fut>(
        &self,
        options: TransactOptions,
        mut f: F,
    ) -> impl Future<Output = Result<T, TxError<E>>> + Send
    where
        F: FnMut(Self::Tx) -> Fut + Send,
        Fut: Future<Output = Result<T, TxError<E>>> + Send,
        T: Send,
        E: Send,
    {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let attempts = self.attempts.clone();
        self.inner.transact(options, move |tx| {
            attempts.fetch_add(1, Ordering::Relaxed);
            f(tx)
        })
    }
}

struct Args {
    runs: usize,
    sizes: Vec<usize>,
    secs: u64,
    persist: PersistMode,
}

fn args() -> Args {
    let mut a = Args {
        runs: 5,
        sizes: vec![10_000, 100_000],
        secs: 10,
        persist: PersistMode::Durable,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let next = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--runs" => a.runs = next.parse().expect("--runs N"),
            "--secs" => a.secs = next.parse().expect("--secs N"),
            "--sizes" => a.sizes = next.split(',').map(|s| s.parse().expect("--sizes N,M")).collect(),
            "--buffered" => {
                a.persist = PersistMode::Buffered;
                i -= 1;
            }
            _ => {
                i -= 1; // cargo bench passes `--bench`
            }
        }
        i += 2;
    }
    a
}

async fn open(dir: &std::path::Path, persist: PersistMode) -> anyhow::Result<Counting> {
    let mut cfg = EmbeddedConfig::new(dir);
    cfg.persist = persist;
    Ok(Counting {
        inner: EmbeddedStore::open(cfg).await?,
        calls: Arc::default(),
        attempts: Arc::default(),
    })
}

fn queue(s: &Counting) -> Queue<Counting> {
    let keys = QueueKeys::new("k1", [("k1", &[7u8; 32])]).expect("keys");
    Queue::new(
        s.clone(),
        RegionName::new("eu").expect("region"),
        QueueSettings::default(),
        keys,
    )
    .expect("queue")
}

fn budget(max_sessions: u32, per_sec: u32) -> Budget {
    Budget {
        max_sessions,
        max_admissions_per_sec: per_sec,
        paused: false,
        updated_ms: 0,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Enqueues `n` players (64 logins in flight, like a login burst) and returns
/// their places.
async fn enqueue(q: &Queue<Counting>, n: usize, tag: &str, now_ms: u64) -> anyhow::Result<Vec<Place>> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (q, next, tag) = (q.clone(), next.clone(), tag.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    return Ok::<_, anyhow::Error>(out);
                }
                match q
                    .enter(&format!("{tag}-{i:08}"), "gw-bench", None, now_ms)
                    .await?
                {
                    Entry::Queued(p) => out.push(p),
                    other => anyhow::bail!("expected a place, got {other:?}"),
                }
            }
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

/// Hold and update: N waiting places; one gateway's update is one `view` plus
/// a position for every place it holds (here: all of them).
async fn hold_and_update(a: &Args, n: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = open(dir.path(), a.persist).await?;
    let q = queue(&s);
    q.set_budget(budget(0, 500), 1).await?;
    let t = Instant::now();
    let (c0, _) = s.counts();
    let places = enqueue(&q, n, "hold", 1_000).await?;
    let (c1, a1) = s.counts();
    let setup = t.elapsed().as_secs_f64();
    println!(
        "  enqueue {n}: {:.1} s = {:.0} logins/s queued, {:.2} transactions per enqueue",
        setup,
        n as f64 / setup,
        (c1 - c0) as f64 / n as f64
    );
    let _ = a1;
    // Baseline: the same range read, keys and values, with no decoding.
    let mut raw = Vec::new();
    let mut view = Vec::new();
    let mut positions = Vec::new();
    for _ in 0..a.runs {
        let t = Instant::now();
        let kvs = s
            .inner
            .run(|tx| async move {
                let (b, e) =
                    outpost_backend::queue::keys::waiting(&RegionName::new("eu").expect("region")).range();
                Ok::<_, TxError<std::convert::Infallible>>(
                    outpost_backend::store::Transaction::get_range_snapshot(&tx, &b, &e, None, false)
                        .await?
                        .len(),
                )
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        assert_eq!(kvs, n);
        raw.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let v = q.view().await?;
        view.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let mut sum = 0u64;
        for p in &places {
            sum += u64::from(v.position(p.stamp).expect("waiting"));
        }
        positions.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(sum, (n as u64 * (n as u64 - 1)) / 2, "positions 0..n");
    }
    let (raw, view, pos) = (median(raw), median(view), median(positions));
    println!(
        "  N={n}: range read (baseline) {raw:.1} ms, view {view:.1} ms, {n} positions {pos:.2} ms → \
         one gateway updates {:.0} places/s; view at 5 s interval = {:.1}% of one core per gateway",
        n as f64 / ((view + pos) / 1e3),
        view / 5_000.0 * 100.0
    );
    Ok(())
}

/// Transactions per queued player per update interval: one gateway's
/// interval with the default settings (5 s update, 250 ms admission ticks):
/// 20 ticks, one sweep, one view, then a poll for each place admitted.
async fn transactions_per_interval(a: &Args, n: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = open(dir.path(), a.persist).await?;
    let q = queue(&s);
    q.set_budget(budget(0, 100), 1).await?;
    let places = enqueue(&q, n, "tx", 1_000).await?;
    // Open the budget: 100 admissions/s, so 500 of the N are admitted this interval.
    q.set_budget(budget(u32::MAX, 100), 2_000).await?;
    let (c0, a0) = s.counts();
    let start = 10_000u64;
    let mut admitted = 0;
    for i in 0..20u64 {
        admitted += q.admit_tick(start + i * 250).await?.len();
    }
    q.sweep(start + 5_000).await?;
    let v = q.view().await?;
    let (c1, a1) = s.counts();
    let mut polls = 0;
    for p in &places {
        if v.position(p.stamp).is_none() {
            q.poll(p, "gw-bench", start + 5_000).await?;
            polls += 1;
        }
    }
    let (c2, a2) = s.counts();
    println!(
        "  N={n} waiting, one gateway, one 5 s interval: {} transactions ({} attempts) for ticks + sweep + view, \
         {} for {polls} polls of the {admitted} admitted → {:.5} transactions per queued player per interval \
         (0 per waiting place; 1 per admitted place)",
        c1 - c0,
        a1 - a0,
        c2 - c1,
        (c2 - c0) as f64 / n as f64
    );
    let _ = a2;
    Ok(())
}

/// Admissions/s against the budget: `admitters` tasks each run an admission
/// tick every 250 ms (the gateway default) for `secs`, on one store.
async fn admission_rate(
    a: &Args,
    admitters: usize,
    per_sec: u32,
    tick_ms: u64,
) -> anyhow::Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let s = open(dir.path(), a.persist).await?;
    let q = queue(&s);
    q.set_budget(budget(0, per_sec), 1).await?;
    let backlog = if tick_ms == 0 {
        30_000
    } else {
        (f64::from(per_sec) * a.secs as f64 * 1.2) as usize
    };
    enqueue(&q, backlog, "adm", 1_000).await?;
    q.set_budget(budget(u32::MAX, per_sec), 2_000).await?;
    let (c0, a0) = s.counts();
    let total = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(a.secs);
    let mut tasks = Vec::new();
    for _ in 0..admitters {
        let (q, total) = (q.clone(), total.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(tick_ms.max(1)));
            while Instant::now() < end {
                if tick_ms > 0 {
                    tick.tick().await;
                }
                let n = q.admit_tick(outpost_backend::time::now_ms()).await?.len();
                if total.fetch_add(n as u64, Ordering::Relaxed) + n as u64 >= backlog as u64 {
                    break; // drained (the unthrottled cells)
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let (c1, a1) = s.counts();
    assert!(
        (total.load(Ordering::Relaxed) as f64) <= f64::from(per_sec) * (secs + 1.0),
        "budget overshot"
    );
    let rate = total.load(Ordering::Relaxed) as f64 / secs;
    let retries = (a1 - a0).saturating_sub(c1 - c0) as f64 / (c1 - c0).max(1) as f64;
    Ok((rate, retries))
}

fn main() -> anyhow::Result<()> {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        println!(
            "login queue bench: runs {}, sizes {:?}, {} s per admission cell, {:?}",
            a.runs, a.sizes, a.secs, a.persist
        );
        println!("hold and update (medians of {} runs):", a.runs);
        for &n in &a.sizes {
            hold_and_update(&a, n).await?;
        }
        println!("store transactions per update interval:");
        transactions_per_interval(&a, *a.sizes.first().unwrap_or(&10_000)).await?;
        println!("admissions/s against the budget (median of {} runs each):", a.runs.min(3));
        for (admitters, per_sec, tick) in [(1, 500, 250), (3, 500, 250), (1, 1_000_000, 0), (3, 1_000_000, 0)] {
            let mut rates = Vec::new();
            let mut retries = Vec::new();
            for _ in 0..a.runs.min(3) {
                let (r, x) = admission_rate(&a, admitters, per_sec, tick).await?;
                rates.push(r);
                retries.push(x);
            }
            let budget = if per_sec >= 1_000_000 {
                "unthrottled, ticks back to back".to_owned()
            } else {
                format!("budget {per_sec}/s, ticks every {tick} ms")
            };
            println!(
                "  {admitters} admitter(s), {budget}: {:.0} admissions/s (runs: {}), {:.2} retries per tick transaction",
                median(rates.clone()),
                rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", "),
                median(retries)
            );
        }
        Ok(())
    })
}

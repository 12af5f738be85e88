//! Store-backed matchmaker benchmark (issue 19): matches committed per second
//! with 1, 4 and 16 partitions (one worker per partition, each holding a real
//! lease and committing under its fencing token), and the time to drain a
//! launch burst through the store (tickets created as fast as 32 concurrent
//! callers can while 16 workers run rounds); and what one partition's round
//! costs as the tickets matched in it accumulate (`--churn`: the partition
//! floor's figure, `matchmaker::floor`).
//!
//! ```text
//! cargo bench -p outpost-backend --bench matchmaker_store -- [--runs 3] [--tickets 20000] [--burst 2000000] [--churn 100000] [--only churn]
//! ```
//!
//! One region, queue `ranked-5v5` (2 × 5), one expansion step of 400 rating
//! points (so nearly every ticket matches in the first round it is seen and
//! the figure is commit throughput, not waiting for windows to widen), solo
//! tickets with ratings normal (mean 1500, sd 300), split into P skill bands
//! of equal population (band edges at the normal's quantiles). Embedded store,
//! buffered persistence, in `OUTPOST_BENCH_DIR` (default the temp dir).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use outpost_backend::matchmaker::{
    ExpansionStep, Matchmaker, MatchmakerConfig, QueueConfig, RegionConfig, RegionLatency, Skill,
    StaticAllocator, TicketRequest, Worker, WorkerConfig,
};
use outpost_backend::store::embedded::{EmbeddedConfig, EmbeddedStore, PersistMode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Mm = Matchmaker<EmbeddedStore>;

fn normal(rng: &mut StdRng, mean: f64, sd: f64) -> f64 {
    let (u1, u2): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.gen());
    mean + sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Band edges splitting N(1500, 300) into `p` equal-population bands
/// (quantiles by bisection on the normal CDF via erf's series-free
/// approximation, Abramowitz-Stegun 7.1.26).
fn band_edges(p: usize) -> Vec<f64> {
    let cdf = |x: f64| {
        let z = (x - 1500.0) / (300.0 * std::f64::consts::SQRT_2);
        let t = 1.0 / (1.0 + 0.3275911 * z.abs());
        let y = 1.0
            - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592)
                * t
                * (-z * z).exp();
        0.5 * (1.0 + y.copysign(z))
    };
    (1..p)
        .map(|k| {
            let target = k as f64 / p as f64;
            let (mut lo, mut hi) = (0.0, 3000.0);
            for _ in 0..60 {
                let mid = (lo + hi) / 2.0;
                if cdf(mid) < target {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            lo
        })
        .collect()
}

fn config(partitions: usize) -> MatchmakerConfig {
    config_with_deadline(partitions, None)
}

fn config_with_deadline(partitions: usize, deadline_ms: Option<u64>) -> MatchmakerConfig {
    MatchmakerConfig {
        regions: vec![RegionConfig {
            name: "eu".into(),
            neighbours: vec![],
        }],
        queues: vec![QueueConfig {
            name: "ranked-5v5".into(),
            teams: 2,
            team_size: 5,
            expansions: vec![ExpansionStep {
                after_ms: 0,
                max_skill_diff: 400.0,
            }],
            uncertainty_widening: 0.0,
            cross_region: None,
            skill_bands: band_edges(partitions),
            band_borrow_after_ms: None,
            deadline_ms,
            target_wait: None,
        }],
    }
}

async fn open(partitions: usize, base: &std::path::Path) -> anyhow::Result<(tempfile::TempDir, Mm)> {
    open_with(config(partitions), base).await
}

async fn open_with(
    config: MatchmakerConfig,
    base: &std::path::Path,
) -> anyhow::Result<(tempfile::TempDir, Mm)> {
    let dir = tempfile::tempdir_in(base)?;
    let mut cfg = EmbeddedConfig::new(dir.path());
    cfg.persist = PersistMode::Buffered;
    let store = EmbeddedStore::open(cfg).await?;
    Ok((dir, Matchmaker::new(store, "eu", config)?))
}

fn request(id: u64, rating: f64) -> TicketRequest {
    TicketRequest {
        players: vec![format!("{id:032x}")],
        queue: "ranked-5v5".into(),
        skill: Skill {
            rating,
            uncertainty: 50.0,
        },
        home_region: "eu".into(),
        latencies: vec![RegionLatency {
            region: "eu".into(),
            rtt_ms: 20,
        }],
        max_latency_ms: None,
    }
}

/// Creates `n` solo tickets with 32 concurrent callers; returns the seconds it took.
async fn create(mm: &Mm, n: u64, seed: u64, created: Arc<AtomicU64>) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut tasks = Vec::new();
    let per = n.div_ceil(32);
    for c in 0..32u64 {
        let (mm, created) = (mm.clone(), created.clone());
        let mut rng = StdRng::seed_from_u64(seed * 1000 + c);
        let ids = (c * per)..((c + 1) * per).min(n);
        tasks.push(tokio::spawn(async move {
            for id in ids {
                mm.create_ticket(request(id, normal(&mut rng, 1500.0, 300.0)))
                    .await?;
                created.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(t.elapsed().as_secs_f64())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One worker per partition, each with a real lease, running rounds until
/// `done` says every ticket exists and a round of its partition commits
/// nothing; returns matches committed.
async fn drain(mm: &Mm, done: Arc<AtomicBool>) -> anyhow::Result<u64> {
    let alloc = Arc::new(StaticAllocator::new([(
        "eu".to_string(),
        vec!["gs:7777".to_string()],
    )]));
    let mut tasks = Vec::new();
    for (i, p) in mm.partitions().into_iter().enumerate() {
        let owner = format!("bench-{i}");
        let mut wc = WorkerConfig::new(owner.clone());
        wc.commit_concurrency = 64;
        wc.lease_ttl_ms = 600_000;
        wc.heartbeat_ms = 60_000;
        let w = Worker::new(mm.clone(), wc, alloc.clone())?;
        let lease = mm
            .try_acquire(&p, &owner, 600_000, now_ms())
            .await?
            .context("lease")?;
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut committed = 0u64;
            loop {
                let finished = done.load(Ordering::Acquire);
                let r = w.run_partition(&lease, now_ms()).await?;
                committed += r.committed as u64;
                // Once every ticket exists, a round that commits nothing
                // means what is left cannot match (tails of the rating
                // distribution beyond the window).
                if finished && r.committed == 0 {
                    return anyhow::Ok(committed);
                }
                if r.committed == 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total)
}

struct Throughput {
    create_s: f64,
    drain_s: f64,
    matches: u64,
}

/// `tickets` pre-loaded, then one worker per partition drains them.
async fn throughput(
    partitions: usize,
    tickets: u64,
    seed: u64,
    base: &std::path::Path,
) -> anyhow::Result<Throughput> {
    let (_dir, mm) = open(partitions, base).await?;
    let create_s = create(&mm, tickets, seed, Arc::default()).await?;
    let t = Instant::now();
    let matches = drain(&mm, Arc::new(AtomicBool::new(true))).await?;
    Ok(Throughput {
        create_s,
        drain_s: t.elapsed().as_secs_f64(),
        matches,
    })
}

struct Burst {
    created_s: f64,
    drained_s: f64,
    matches: u64,
}

/// `players` solo tickets released at once (32 callers as fast as the store
/// takes them) while one worker per partition runs rounds.
async fn burst(partitions: usize, players: u64, base: &std::path::Path) -> anyhow::Result<Burst> {
    let (_dir, mm) = open(partitions, base).await?;
    let done = Arc::new(AtomicBool::new(false));
    let t = Instant::now();
    let workers = {
        let (mm, done) = (mm.clone(), done.clone());
        tokio::spawn(async move { drain(&mm, done).await })
    };
    create(&mm, players, 7, Arc::default()).await?;
    let created_s = t.elapsed().as_secs_f64();
    done.store(true, Ordering::Release);
    let matches = workers.await??;
    Ok(Burst {
        created_s,
        drained_s: t.elapsed().as_secs_f64(),
        matches,
    })
}

/// One window of the churn phase: medians over its rounds.
struct ChurnRow {
    churned: u64,
    waiting: f64,
    load_ms: f64,
    round_ms: f64,
}

/// Tickets per round in the churn phase: what a busy partition gets between
/// two rounds (250 ms) at 800 queue entries per second.
const CHURN_BATCH: u64 = 200;

/// One partition, one worker: batches of `CHURN_BATCH` tickets, each followed
/// by a timed partition load (what a round reads) and a timed round, until
/// `total` tickets went through; medians per fifth of the run. Time is
/// virtual (250 ms per round, tickets created at the round's time), so waits
/// and the deadline are those of a live partition, however fast the machine
/// runs the rounds.
async fn churn(
    total: u64,
    deadline_ms: Option<u64>,
    base: &std::path::Path,
) -> anyhow::Result<Vec<ChurnRow>> {
    let (_dir, mm) = open_with(config_with_deadline(1, deadline_ms), base).await?;
    let alloc = Arc::new(StaticAllocator::new([(
        "eu".to_string(),
        vec!["gs:7777".to_string()],
    )]));
    let mut wc = WorkerConfig::new("bench-churn");
    wc.commit_concurrency = 64;
    let w = Worker::new(mm.clone(), wc, alloc)?;
    let p = mm.partitions().remove(0);
    let lease = mm
        .try_acquire(&p, "bench-churn", 600_000, now_ms())
        .await?
        .context("lease")?;
    let mut rng = StdRng::seed_from_u64(11);
    let window = (total / 5).max(CHURN_BATCH);
    let (mut rows, mut cur) = (Vec::new(), (Vec::new(), Vec::new(), Vec::new()));
    let (mut created, mut now) = (0u64, now_ms());
    while created < total {
        for id in created..created + CHURN_BATCH {
            mm.create_ticket_at(request(id, normal(&mut rng, 1500.0, 300.0)), now)
                .await?;
        }
        created += CHURN_BATCH;
        let t = Instant::now();
        let waiting = mm.load_partition(&p, None).await?.len();
        cur.1.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        w.run_partition(&lease, now).await?;
        cur.2.push(t.elapsed().as_secs_f64() * 1e3);
        now += 250;
        cur.0.push(waiting as f64);
        if created % window == 0 || created >= total {
            let (waiting, load, round) = std::mem::take(&mut cur);
            rows.push(ChurnRow {
                churned: created,
                waiting: median(waiting),
                load_ms: median(load),
                round_ms: median(round),
            });
        }
    }
    Ok(rows)
}

fn print_churn(total: u64, deadline_ms: Option<u64>, rows: &[ChurnRow]) {
    let deadline = match deadline_ms {
        Some(ms) => format!("queue deadline {ms} ms"),
        None => "no queue deadline".to_string(),
    };
    println!();
    println!(
        "### Round cost against churn: {total} tickets through one partition, {CHURN_BATCH} per round, {deadline}"
    );
    println!();
    println!("| tickets through (end of window) | waiting (median) | partition load ms (median) | round ms (median) |");
    println!("|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} |",
            r.churned, r.waiting, r.load_ms, r.round_ms
        );
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let (mut runs, mut tickets, mut players) = (3usize, 20_000u64, 2_000_000u64);
    let (mut churned, mut only_churn) = (100_000u64, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().context("--runs N")?.parse()?,
            "--tickets" => tickets = args.next().context("--tickets N")?.parse()?,
            "--burst" => players = args.next().context("--burst N")?.parse()?,
            "--churn" => churned = args.next().context("--churn N")?.parse()?,
            "--only" => {
                anyhow::ensure!(args.next().as_deref() == Some("churn"), "--only churn");
                only_churn = true;
            }
            "--bench" => {}
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let base = std::env::var_os("OUTPOST_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!(
        "matchmaker store bench: {runs} runs, medians; dir {}",
        base.display()
    );
    // The churn phase first: a fresh store each time, deadline and none.
    for deadline_ms in [Some(3_000), None] {
        let rows = rt.block_on(churn(churned, deadline_ms, &base))?;
        print_churn(churned, deadline_ms, &rows);
    }
    if only_churn {
        return Ok(());
    }
    println!();
    println!("### Matches committed per second: {tickets} solo tickets pre-loaded, one worker per partition");
    println!();
    println!("| partitions | ticket creates/s | drain (s) | matches committed | matches/s |");
    println!("|---:|---:|---:|---:|---:|");
    // Interleaved rounds: each run measures 1, 4 and 16 in turn.
    let counts = [1usize, 4, 16];
    let mut res: Vec<Vec<Throughput>> = counts.iter().map(|_| Vec::new()).collect();
    for r in 0..runs {
        for (i, &p) in counts.iter().enumerate() {
            res[i].push(rt.block_on(throughput(p, tickets, r as u64 + 1, &base))?);
        }
    }
    for (i, p) in counts.iter().enumerate() {
        let v = &res[i];
        println!(
            "| {p} | {:.0} | {:.2} | {:.0} | {:.0} |",
            median(v.iter().map(|t| tickets as f64 / t.create_s).collect()),
            median(v.iter().map(|t| t.drain_s).collect()),
            median(v.iter().map(|t| t.matches as f64).collect()),
            median(v.iter().map(|t| t.matches as f64 / t.drain_s).collect()),
        );
    }
    println!();
    println!("### Burst: {players} players released at once, 16 partitions, 16 workers (one run)");
    println!();
    let b = rt.block_on(burst(16, players, &base))?;
    println!("| figure | value |");
    println!("|---|---:|");
    println!("| all tickets created after (s) | {:.1} |", b.created_s);
    println!("| last match committed after (s) | {:.1} |", b.drained_s);
    println!(
        "| matches committed | {} ({} players) |",
        b.matches,
        b.matches * 10
    );
    println!(
        "| players matched per second (burst) | {:.0} |",
        b.matches as f64 * 10.0 / b.drained_s
    );
    Ok(())
}

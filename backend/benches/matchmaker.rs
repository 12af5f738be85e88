//! Matchmaker benchmark: the core's throughput with 1,000,000 tickets in a 5v5
//! pool, match waits (p50/p95/p99) on virtual time for a range of arrival rates
//! and a 2,000,000-ticket launch burst, and the store-backed path's matches/s
//! for one partition.
//!
//! ```text
//! cargo bench -p outpost-backend --bench matchmaker -- [--runs 3] [--quick]
//! ```
//!
//! Skill ratings are normal (mean 1500, sd 300); parties: 75% solo, 15% duo,
//! 7% trio, 3% five-stack. Virtual time advances per round by
//! `max(round interval, wall time the round took)`, so a worker too slow for
//! its load shows up as longer waits, not as free time.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use hdrhistogram::Histogram;
use outpost_backend::matchmaker::{
    ExpansionStep, MatchCore, Matchmaker, MatchmakerConfig, QueueConfig, RegionConfig, RegionLatency, Skill,
    StaticAllocator, Ticket, TicketId, TicketRequest, Worker, WorkerConfig,
};
use outpost_backend::store::embedded::{EmbeddedConfig, EmbeddedStore, PersistMode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn normal(rng: &mut StdRng, mean: f64, sd: f64) -> f64 {
    // Box-Muller.
    let (u1, u2): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.gen());
    mean + sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn party_size(rng: &mut StdRng) -> usize {
    match rng.gen_range(0..100) {
        0..75 => 1,
        75..90 => 2,
        90..97 => 3,
        _ => 5,
    }
}

fn config() -> MatchmakerConfig {
    let step = |after_ms, max_skill_diff| ExpansionStep {
        after_ms,
        max_skill_diff,
    };
    MatchmakerConfig {
        regions: vec![RegionConfig {
            name: "eu".into(),
            neighbours: vec![],
        }],
        queues: vec![QueueConfig {
            name: "ranked-5v5".into(),
            teams: 2,
            team_size: 5,
            expansions: vec![
                step(0, 50.0),
                step(5_000, 100.0),
                step(10_000, 200.0),
                step(20_000, 400.0),
                step(30_000, 800.0),
            ],
            uncertainty_widening: 0.0,
            cross_region: None,
            skill_bands: vec![],
            band_borrow_after_ms: None,
            deadline_ms: None,
            target_wait: None,
        }],
    }
}

fn ticket(rng: &mut StdRng, id: u64, created_ms: u64) -> Ticket {
    let n = party_size(rng);
    Ticket {
        id: TicketId(id),
        players: (0..n).map(|i| format!("{id:016x}{i:016x}")).collect(),
        queue: "ranked-5v5".into(),
        skill: Skill {
            rating: normal(rng, 1500.0, 300.0),
            uncertainty: 50.0,
        },
        home_region: "eu".into(),
        latencies: vec![],
        max_latency_ms: None,
        created_ms,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Throughput {
    insert_s: f64,
    round_s: f64,
    matched_tickets: usize,
    matched_players: usize,
}

/// 1,000,000 tickets inserted into a core, then one round at t = 0 (first
/// expansion step, window 50).
fn throughput(n: usize, seed: u64) -> anyhow::Result<Throughput> {
    let mut rng = StdRng::seed_from_u64(seed);
    let tickets: Vec<Ticket> = (0..n as u64).map(|i| ticket(&mut rng, i, 0)).collect();
    let mut core = MatchCore::new(&config())?;
    let t = Instant::now();
    for tk in tickets {
        core.insert(tk)?;
    }
    let insert_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let matches = core.run_round(0);
    let round_s = t.elapsed().as_secs_f64();
    Ok(Throughput {
        insert_s,
        round_s,
        matched_tickets: matches.iter().map(|m| m.tickets.len()).sum(),
        matched_players: matches.iter().map(|m| m.players().count()).sum(),
    })
}

struct WaitResult {
    p50_ms: u64,
    p95_ms: u64,
    p99_ms: u64,
    matched_share: f64,
    mean_spread: f64,
    max_round_ms: f64,
}

/// Arrivals at `rate` tickets/s for `secs` virtual seconds, a round every
/// 500 ms (or the round's wall time, if longer); waits of tickets created in
/// the middle 80% of the run. `burst`: that many tickets at t = 0 instead.
fn waits(rate: f64, secs: u64, burst: usize, seed: u64) -> anyhow::Result<WaitResult> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut core = MatchCore::new(&config())?;
    let interval = 500u64;
    let (lo, hi) = (secs * 100, secs * 900);
    let mut hist = Histogram::<u64>::new(3)?;
    let (mut id, mut now, mut carry) = (0u64, 0u64, 0.0f64);
    let (mut spread_sum, mut matches_n, mut max_round_ms) = (0.0, 0u64, 0.0f64);
    let mut created_in_window = 0u64;
    if burst > 0 {
        for _ in 0..burst {
            id += 1;
            core.insert(ticket(&mut rng, id, 0))?;
        }
        created_in_window = burst as u64;
    }
    let end = secs * 1000 + 60_000; // drain time after the last arrival
    while now < end {
        let step_ms = {
            let t = Instant::now();
            let matches = core.run_round(now);
            let wall = t.elapsed().as_secs_f64() * 1000.0;
            // A match is out when its round ends: count the round's wall time.
            let publish = wall.ceil() as u64;
            for m in matches {
                spread_sum += m.skill_spread;
                matches_n += 1;
                for tk in &m.tickets {
                    let created = now - tk.wait_ms;
                    if burst > 0 || (lo..hi).contains(&created) {
                        hist.record((tk.wait_ms + publish).max(1))?;
                    }
                }
            }
            max_round_ms = max_round_ms.max(wall);
            interval.max(wall.ceil() as u64)
        };
        // Arrivals during the step, spread evenly.
        if burst == 0 && now < secs * 1000 {
            carry += rate * step_ms as f64 / 1000.0;
            let k = carry.floor() as u64;
            carry -= k as f64;
            for i in 0..k {
                id += 1;
                let created = now + i * step_ms / k.max(1);
                if (lo..hi).contains(&created) {
                    created_in_window += 1;
                }
                core.insert(ticket(&mut rng, id, created))?;
            }
        }
        now += step_ms;
    }
    Ok(WaitResult {
        p50_ms: hist.value_at_quantile(0.5),
        p95_ms: hist.value_at_quantile(0.95),
        p99_ms: hist.value_at_quantile(0.99),
        matched_share: hist.len() as f64 / created_in_window.max(1) as f64,
        mean_spread: spread_sum / matches_n.max(1) as f64,
        max_round_ms,
    })
}

/// Store-backed: `n` solo tickets in one partition, then one worker round on
/// it; returns committed matches per second of the round.
async fn store_round(n: usize, persist: PersistMode, base: &std::path::Path) -> anyhow::Result<(f64, usize)> {
    let dir = tempfile::tempdir_in(base)?;
    let mut cfg = EmbeddedConfig::new(dir.path());
    cfg.persist = persist;
    let store = EmbeddedStore::open(cfg).await?;
    let mm = Matchmaker::new(store, "eu", config())?;
    let mut rng = StdRng::seed_from_u64(n as u64);
    let mut tasks = Vec::new();
    let per = n / 32;
    for t in 0..32u64 {
        let mm = mm.clone();
        let ratings: Vec<f64> = (0..per).map(|_| normal(&mut rng, 1500.0, 300.0)).collect();
        tasks.push(tokio::spawn(async move {
            for (i, r) in ratings.into_iter().enumerate() {
                mm.create_ticket(TicketRequest {
                    players: vec![format!("{t:016x}{i:016x}")],
                    queue: "ranked-5v5".into(),
                    skill: Skill {
                        rating: r,
                        uncertainty: 50.0,
                    },
                    home_region: "eu".into(),
                    latencies: vec![RegionLatency {
                        region: "eu".into(),
                        rtt_ms: 20,
                    }],
                    max_latency_ms: None,
                })
                .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let alloc = Arc::new(StaticAllocator::new([(
        "eu".to_string(),
        vec!["gs:7777".to_string()],
    )]));
    let mut wc = WorkerConfig::new("bench");
    wc.commit_concurrency = 64;
    wc.lease_ttl_ms = 60_000;
    wc.heartbeat_ms = 10_000;
    let mut w = Worker::new(mm.clone(), wc, alloc)?;
    let now = outpost_backend_now();
    w.maintain_leases(now).await?;
    let lease = w.leases().next().context("lease")?.clone();
    let t = Instant::now();
    let r = w.run_partition(&lease, now).await?;
    let secs = t.elapsed().as_secs_f64();
    Ok((r.committed as f64 / secs, r.committed))
}

fn outpost_backend_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let mut runs = 3usize;
    let mut quick = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().context("--runs N")?.parse()?,
            "--quick" => quick = true,
            "--bench" => {}
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let pool = if quick { 100_000 } else { 1_000_000 };
    println!("matchmaker bench: {runs} runs, medians");
    println!();
    println!("### Core throughput: 5v5, {pool} tickets in the pool, one worker (one thread)");
    println!();
    println!("| figure | median |");
    println!("|---|---:|");
    let res: Vec<Throughput> = (0..runs)
        .map(|r| throughput(pool, r as u64 + 1))
        .collect::<Result<_, _>>()?;
    let ins = median(res.iter().map(|r| r.insert_s).collect());
    let rnd = median(res.iter().map(|r| r.round_s).collect());
    let mt = median(res.iter().map(|r| r.matched_tickets as f64).collect());
    let mp = median(res.iter().map(|r| r.matched_players as f64).collect());
    println!("| insert {pool} tickets (s) | {ins:.3} |");
    println!("| one round over the pool (s) | {rnd:.3} |");
    println!("| tickets matched in that round | {mt:.0} ({mp:.0} players) |");
    println!(
        "| pool tickets scanned per second (round) | {:.0} |",
        pool as f64 / rnd
    );
    println!("| tickets matched per second (round) | {:.0} |", mt / rnd);
    println!(
        "| tickets processed per second (insert + round) | {:.0} |",
        pool as f64 / (ins + rnd)
    );
    println!();
    println!("### Waits on virtual time (round every 500 ms or its wall time if longer)");
    println!();
    println!("| arrivals | p50 wait (s) | p95 wait (s) | p99 wait (s) | matched | mean skill spread | slowest round (ms) |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let secs = if quick { 30 } else { 120 };
    let mut cases: Vec<(String, f64, u64, usize)> = [100.0, 1_000.0, 10_000.0, 50_000.0]
        .iter()
        .map(|&r| (format!("{r:.0} tickets/s for {secs} s"), r, secs, 0))
        .collect();
    let (ramp_secs, burst) = if quick { (60, 200_000) } else { (600, 2_000_000) };
    cases.push((
        format!("launch ramp: {burst} tickets over {ramp_secs} s"),
        burst as f64 / ramp_secs as f64,
        ramp_secs,
        0,
    ));
    cases.push((
        format!("launch burst: {burst} tickets at t = 0"),
        0.0,
        secs,
        burst,
    ));
    for (name, rate, secs, burst) in cases {
        let res: Vec<WaitResult> = (0..runs)
            .map(|r| waits(rate, secs, burst, r as u64 + 10))
            .collect::<Result<_, _>>()?;
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.1}% | {:.1} | {:.0} |",
            median(res.iter().map(|r| r.p50_ms as f64 / 1000.0).collect()),
            median(res.iter().map(|r| r.p95_ms as f64 / 1000.0).collect()),
            median(res.iter().map(|r| r.p99_ms as f64 / 1000.0).collect()),
            median(res.iter().map(|r| r.matched_share * 100.0).collect()),
            median(res.iter().map(|r| r.mean_spread).collect()),
            median(res.iter().map(|r| r.max_round_ms).collect()),
        );
    }
    println!();
    let base = std::env::var_os("OUTPOST_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let n = if quick { 2_000 } else { 10_000 };
    println!(
        "### Store-backed round: one partition, {n} solo tickets, commit concurrency 64 (dir {})",
        base.display()
    );
    println!();
    println!("| persist | matches committed | matches/s (median) |");
    println!("|---|---:|---:|");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    for (name, mode) in [
        ("buffered", PersistMode::Buffered),
        ("durable", PersistMode::Durable),
    ] {
        let mut rates = Vec::new();
        let mut committed = 0;
        for _ in 0..runs {
            let (r, c) = rt.block_on(store_round(n, mode, &base))?;
            rates.push(r);
            committed = c;
        }
        println!("| {name} | {committed} | {:.0} |", median(rates));
    }
    Ok(())
}

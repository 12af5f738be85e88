//! The region login queue with real SDK clients over real QUIC (PROTOCOL.md
//! 3.7, the acceptance of the launch-queue issue): gateways in-process sharing
//! one store, SDK clients that wait in the queue through `Client::connect`,
//! report position and ETA as events, and keep their place with the queue
//! token across their own reconnects, to another gateway, including when the
//! gateway holding their connection is killed.
//!
//! The FIFO order and the budget are checked in the store itself: a sampler
//! reads the region's queue view every few milliseconds; between two reads,
//! the places that left the queue must be a prefix of the earlier read (FIFO,
//! ties within a tick included), no place may expire (`abandoned_total`), and
//! the slots in use may exceed the budget by at most one admission tick.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use common::*;
use outpost_backend::keyspace::RegionName;
use outpost_backend::queue::{Budget, Queue, QueueKeys, QueueView, Stamp};
use outpost_backend::store::AnyStore;
use outpost_backend::time::now_ms;
use outpost_client::{Client, ClientConfig, Event};
use outpost_gateway::GatewayConfig;

/// Most places one admission transaction admits (one tick's worth).
const MAX_BATCH: u32 = 50;
/// How long 1,000 clients may take to hold a place. 13-20 s on two quiet
/// cores in a debug build; the bound is generous because a loaded machine
/// (a load average of 16 was seen) slows handshakes several-fold, and this is
/// a correctness test, not a timing one.
const QUEUE_ALL: Duration = Duration::from_secs(240);

fn queue_on(c: &mut GatewayConfig, budget: u32, rate: u32) {
    c.queue.enabled = true;
    c.queue.max_sessions = budget;
    c.queue.max_admissions_per_sec = rate;
    c.queue.update_interval_ms = 500;
    c.queue.admit_tick_ms = 50;
    c.queue.max_batch = MAX_BATCH;
    // Every test client comes from 127.0.0.1.
    c.queue.max_places_per_address = 0;
}

fn sdk_config(gateways: Vec<SocketAddr>, ca_pem: &[u8]) -> ClientConfig {
    let mut c = client_config(gateways, ca_pem, device());
    c.queue.ping_interval = Duration::from_millis(500);
    c.request_timeout = Duration::from_secs(30);
    c
}

/// The region's queue, read straight from the store.
fn region_queue(world: &World, cfg: &GatewayConfig) -> Result<Queue<AnyStore>> {
    let keys = QueueKeys::new("test", [("test", &[7u8; 32])])?;
    Ok(Queue::new(
        world.store.clone(),
        RegionName::new(cfg.region.as_str())?,
        cfg.queue.settings(),
        keys,
    )?)
}

/// What one client saw.
#[derive(Debug, Default)]
struct Seen {
    positions: Vec<u32>,
    /// The gateway of each `Queued`.
    via: Vec<SocketAddr>,
    admitted: u32,
    fresh_logins: u32,
    welcome_gateway: Option<SocketAddr>,
    error: Option<String>,
}

/// Connects (waiting in the queue), holds the session for `hold`, logs out.
/// A failed first connect is tried again twice, as a game would (the SDK does
/// not retry a first `connect`; in a debug build under a 1,000-login storm a
/// login can outlast the gateway's hello timeout), after the error's
/// `retry_after` if it has one (a busy or refusing gateway), else 200 ms.
async fn run_client(config: ClientConfig, seen: Arc<Mutex<Seen>>, hold: Duration, live: Arc<AtomicU64>) {
    for attempt in 1..=3 {
        let (mut events, connect) = match Client::connect_with_events(config.clone()) {
            Ok(v) => v,
            Err(e) => {
                seen.lock().unwrap().error = Some(e.to_string());
                return;
            }
        };
        let watcher = {
            let seen = seen.clone();
            tokio::spawn(async move {
                while let Some(ev) = events.recv().await {
                    let mut s = seen.lock().unwrap();
                    match ev {
                        Event::Queued {
                            position, gateway, ..
                        } => {
                            s.positions.push(position);
                            s.via.push(gateway);
                        }
                        Event::Admitted { .. } => s.admitted += 1,
                        Event::Connected { resumed: false } => s.fresh_logins += 1,
                        _ => {}
                    }
                }
            })
        };
        let result = connect.await;
        let ok = result.is_ok();
        let pause = match &result {
            Err(e) => e.retry_after().unwrap_or(Duration::from_millis(200)),
            Ok(_) => Duration::ZERO,
        };
        match result {
            Ok(client) => {
                seen.lock().unwrap().welcome_gateway = Some(client.welcome().gateway);
                live.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(hold).await;
                live.fetch_sub(1, Ordering::SeqCst);
                client.close().await;
            }
            Err(e) if attempt == 3 || !seen.lock().unwrap().positions.is_empty() => {
                seen.lock().unwrap().error = Some(e.to_string())
            }
            Err(_) => {}
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), watcher).await;
        if ok || seen.lock().unwrap().error.is_some() {
            return;
        }
        tokio::time::sleep(pause).await;
    }
}

/// What the sampler found in the store.
#[derive(Debug, Default)]
struct Samples {
    reads: u64,
    max_used: u64,
    stamps: HashSet<Stamp>,
    violations: Vec<String>,
    last: Option<QueueView>,
}

/// Places that left the queue between `prev` and `cur` must be a prefix of `prev`.
fn check_prefix(prev: &QueueView, cur: &QueueView) -> Option<String> {
    let gone: Vec<bool> = prev
        .stamps
        .iter()
        .map(|s| cur.stamps.binary_search(s).is_err())
        .collect();
    let k = gone.iter().take_while(|g| **g).count();
    gone[k..].iter().any(|g| *g).then(|| {
        format!(
            "FIFO violated: {} places left, not all from the head (first {k} did)",
            gone.iter().filter(|g| **g).count()
        )
    })
}

async fn sample(q: Queue<AnyStore>, budget: Arc<AtomicU64>, stop: Arc<AtomicBool>, out: Arc<Mutex<Samples>>) {
    while !stop.load(Ordering::SeqCst) {
        if let Ok(view) = q.view().await {
            let mut s = out.lock().unwrap();
            s.reads += 1;
            s.max_used = s.max_used.max(view.used);
            let allowed = budget.load(Ordering::SeqCst) + u64::from(MAX_BATCH);
            if view.used > allowed {
                s.violations
                    .push(format!("{} slots used, budget + one tick = {allowed}", view.used));
            }
            s.stamps.extend(view.stamps.iter().copied());
            if let Some(prev) = &s.last {
                if let Some(v) = check_prefix(prev, &view) {
                    s.violations.push(v);
                }
            }
            s.last = Some(view);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The acceptance scenario with `n` clients, `droppers` of which drop their
/// queued connection once, a region budget of `budget` sessions admitting
/// `rate` per second.
async fn launch(n: usize, droppers: usize, budget: u32, rate: u32) -> Result<()> {
    let started = Instant::now();
    let world = World::new().await?;
    // Everybody queues first (budget 0), then the operators open the budget.
    let g0 = world.gateway(|c| queue_on(c, 0, rate)).await?;
    let g1 = world.gateway(|c| queue_on(c, 0, rate)).await?;
    let mut c2 = world.config();
    queue_on(&mut c2, 0, rate);
    let g2 = Crashable::start(c2.clone(), world.store.clone())?;
    let (killed_addr, gateways) = (g2.addr, vec![g0.addr, g1.addr, g2.addr]);
    let q = region_queue(&world, &c2)?;

    // A few shared endpoints: one socket per client would be 1,000 sockets.
    let endpoints = (0..8)
        .map(|_| quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()))
        .collect::<std::io::Result<Vec<_>>>()?;
    let live = Arc::new(AtomicU64::new(0));
    let seen: Vec<Arc<Mutex<Seen>>> = (0..n).map(|_| Arc::default()).collect();
    let every = n / droppers.max(1);
    let is_dropper = |i: usize| droppers > 0 && i % every == 0 && i / every < droppers;
    let mut tasks = Vec::new();
    for (i, s) in seen.iter().enumerate() {
        let mut cfg = sdk_config(gateways.clone(), &g0.ca_pem);
        cfg.endpoint = Some(endpoints[i % endpoints.len()].clone());
        if is_dropper(i) {
            cfg.debug_queue_drop_after = Some(2);
        }
        tasks.push(tokio::spawn(run_client(
            cfg,
            s.clone(),
            Duration::from_millis(200),
            live.clone(),
        )));
    }
    let all_queued = eventually(QUEUE_ALL, || {
        seen.iter().all(|s| !s.lock().unwrap().positions.is_empty())
    })
    .await;
    let queued_in = started.elapsed();
    if !all_queued {
        let errors: Vec<String> = seen
            .iter()
            .filter_map(|s| s.lock().unwrap().error.clone())
            .collect();
        bail!(
            "{} of {n} clients queued within {QUEUE_ALL:?}; {} failed to connect, e.g. {:?}",
            seen.iter()
                .filter(|s| !s.lock().unwrap().positions.is_empty())
                .count(),
            errors.len(),
            &errors[..errors.len().min(3)]
        );
    }
    // The droppers come back through another gateway, with their place.
    let moved = |s: &Seen| {
        s.via
            .first()
            .is_some_and(|first| s.via.iter().any(|g| g != first))
    };
    let dropped_ok = eventually(Duration::from_secs(90), || {
        (0..n)
            .filter(|&i| is_dropper(i))
            .all(|i| moved(&seen[i].lock().unwrap()))
    })
    .await;
    if !dropped_ok {
        let stuck: Vec<String> = (0..n)
            .filter(|&i| is_dropper(i) && !moved(&seen[i].lock().unwrap()))
            .map(|i| format!("{i}: {:?}", seen[i].lock().unwrap()))
            .collect();
        bail!(
            "{} droppers not back through another gateway: {:?}",
            stuck.len(),
            &stuck[..stuck.len().min(2)]
        );
    }

    // Sample the store from now on, then open the budget.
    let budget_now = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Samples::default()));
    let sampler = tokio::spawn(sample(
        q.clone(),
        budget_now.clone(),
        stop.clone(),
        samples.clone(),
    ));
    eventually(Duration::from_secs(5), || samples.lock().unwrap().reads > 0).await;
    let first_len = samples.lock().unwrap().last.as_ref().map_or(0, |v| v.len());
    ensure!(
        first_len == n,
        "all {n} places in the store before admission: {first_len}"
    );
    budget_now.store(u64::from(budget), Ordering::SeqCst);
    let open = Budget {
        max_sessions: budget,
        max_admissions_per_sec: rate,
        paused: false,
        updated_ms: 0,
    };
    q.set_budget(open, now_ms()).await?;
    let opened = Instant::now();

    // Kill the third gateway once a third of the queue is through.
    let third = (n / 3) as u64;
    let killed_at = eventually(Duration::from_secs(180), || {
        samples
            .lock()
            .unwrap()
            .last
            .as_ref()
            .is_some_and(|v| v.admissions_total >= third)
    })
    .await;
    ensure!(killed_at, "a third admitted within 180 s");
    tokio::task::spawn_blocking(move || g2.kill()).await?;
    // Who was still waiting on the killed gateway once it was dead: taken
    // after the kill (a client the gateway admitted while being killed is not
    // one of them) and after any Welcome it sent has crossed loopback, but
    // long before a client notices the silence (three 500 ms pings).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let on_killed: Vec<usize> = (0..n)
        .filter(|&i| {
            let s = seen[i].lock().unwrap();
            s.admitted == 0 && s.via.last() == Some(&killed_addr)
        })
        .collect();
    ensure!(
        !on_killed.is_empty(),
        "some clients were waiting on the killed gateway"
    );

    for t in tasks {
        tokio::time::timeout(Duration::from_secs(300), t)
            .await
            .context("a client did not finish within 300 s")??;
    }
    let drained_in = opened.elapsed();
    stop.store(true, Ordering::SeqCst);
    sampler.await?;
    let final_view = q.view().await?;

    let s = samples.lock().unwrap();
    eprintln!(
        "launch queue: {n} clients ({droppers} droppers, {} queued on the killed gateway), budget {budget}, \
         {rate}/s: all queued after {queued_in:?}, drained {drained_in:?} after the budget opened, \
         {} store reads, max slots used {}, total {:?}",
        on_killed.len(),
        s.reads,
        s.max_used,
        started.elapsed()
    );
    ensure!(
        s.violations.is_empty(),
        "{:?}",
        &s.violations[..s.violations.len().min(5)]
    );
    ensure!(
        s.stamps.len() == n,
        "one place per client, none replaced: {} places seen",
        s.stamps.len()
    );
    ensure!(final_view.is_empty(), "the queue drained");
    ensure!(
        final_view.abandoned_total == 0,
        "no place expired: {}",
        final_view.abandoned_total
    );
    ensure!(
        final_view.admissions_total >= n as u64,
        "{} admissions",
        final_view.admissions_total
    );
    ensure!(!on_killed.is_empty(), "the killed gateway held queued clients");
    for (i, s) in seen.iter().enumerate() {
        let s = s.lock().unwrap();
        if let Some(e) = &s.error {
            bail!("client {i}: {e}");
        }
        ensure!(
            s.admitted == 1 && s.fresh_logins == 1,
            "client {i} admitted exactly once: {s:?}"
        );
        ensure!(
            s.positions.windows(2).all(|w| w[1] <= w[0]),
            "client {i}: position went up: {:?}",
            s.positions
        );
        if is_dropper(i) {
            ensure!(moved(&s), "dropper {i} came back through another gateway");
        }
    }
    // A Welcome the killed gateway sent before it died can reach its client
    // after the 200 ms above when the machine is loaded (seen at a load
    // average of 9: a client at position 22 that the gateway admitted as it
    // was killed): that client was admitted there, not stranded; at most
    // one admission tick's worth can be. Every other client waiting on it
    // must have been admitted elsewhere, and there must be such clients.
    let mut stranded = 0;
    for &i in &on_killed {
        let s = seen[i].lock().unwrap();
        ensure!(
            s.welcome_gateway.is_some(),
            "client {i} queued on the killed gateway was admitted: {s:?}"
        );
        if s.welcome_gateway != Some(killed_addr) {
            stranded += 1;
        } else {
            eprintln!("client {i}: admitted by the killed gateway, its Welcome read after the kill");
        }
    }
    let late = on_killed.len() - stranded;
    ensure!(
        stranded > 0 && late <= MAX_BATCH as usize,
        "clients waiting on the killed gateway: {stranded} admitted elsewhere, {late} by it"
    );
    Ok(())
}

/// The acceptance test in full: 3 gateways, budget 200, 1,000 clients
/// arriving together, 100 of them dropping mid-queue, one gateway killed.
/// 13-34 s in a debug build on this 2-core machine at load average 4-5
/// (all 1,000 queued after 9.5-14 s, drained 10.6-19.4 s after the budget
/// opened); at load average 16-18 (five other builds) 831-999 clients had
/// queued after 60-120 s and it failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_queue_of_1000_clients_over_3_gateways_loses_no_place() -> Result<()> {
    launch(1_000, 100, 200, 400).await
}

/// One SDK client waiting in the queue, with events while `connect` waits,
/// a dropped connection (back through the other gateway with its place), and
/// the blocking facade doing the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_waits_in_the_queue_and_keeps_its_place_across_a_drop() -> Result<()> {
    let world = World::new().await?;
    let g0 = world.gateway(|c| queue_on(c, 1, 100)).await?;
    let g1 = world.gateway(|c| queue_on(c, 1, 100)).await?;
    let gateways = vec![g0.addr, g1.addr];
    let holder = Client::connect(sdk_config(gateways.clone(), &g0.ca_pem)).await?;

    let mut cfg = sdk_config(gateways.clone(), &g0.ca_pem);
    cfg.debug_queue_drop_after = Some(2);
    let (mut events, connect) = Client::connect_with_events(cfg)?;
    let waiter = tokio::spawn(connect);
    let mut via = Vec::new();
    while via.len() < 4 {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await? {
            Some(Event::Queued {
                position, gateway, ..
            }) => {
                assert_eq!(position, 0);
                via.push(gateway);
            }
            Some(Event::Reconnecting { .. }) => {}
            other => bail!("unexpected while queued: {other:?}"),
        }
    }
    assert!(
        via[0] == via[1] && via[2] != via[1],
        "moved after the drop: {via:?}"
    );
    assert!(!waiter.is_finished(), "connect waits in the queue");

    // A blocking client queues behind.
    let blocking_cfg = sdk_config(gateways.clone(), &g0.ca_pem);
    let blocking = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let c = outpost_client::blocking::Client::connect_with_events(blocking_cfg, |ev| seen.push(ev));
        (c.map(|c| c.player_id()), seen)
    });
    tokio::time::sleep(Duration::from_millis(800)).await;

    holder.close().await;
    let client = tokio::time::timeout(Duration::from_secs(10), waiter).await???;
    let mut rest = Vec::new();
    while let Some(ev) = events.try_recv() {
        rest.push(ev);
    }
    assert!(
        matches!(
            rest.as_slice(),
            [.., Event::Admitted { .. }, Event::Connected { resumed: false }]
        ),
        "{rest:?}"
    );
    client.close().await;
    let (player, seen) = tokio::task::spawn_blocking(move || blocking.join().expect("thread")).await?;
    assert!(!player?.is_empty());
    assert!(matches!(seen.first(), Some(Event::Queued { .. })), "{seen:?}");
    assert!(
        matches!(
            seen.as_slice(),
            [.., Event::Admitted { .. }, Event::Connected { .. }]
        ),
        "{seen:?}"
    );
    Ok(())
}

/// `QueuePolicy::max_wait` bounds the wait: `connect` fails with `Timeout`,
/// and a client without queue support gets `ServerBusy` as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_wait_is_bounded_and_can_be_declined() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|c| queue_on(c, 0, 100)).await?;
    let mut cfg = sdk_config(vec![gw.addr], &gw.ca_pem);
    cfg.queue.max_wait = Duration::from_millis(1_200);
    let start = Instant::now();
    let err = Client::connect(cfg).await.unwrap_err();
    assert_eq!(err, outpost_client::ClientError::Timeout);
    assert!(start.elapsed() >= Duration::from_millis(1_200));
    let mut cfg = sdk_config(vec![gw.addr], &gw.ca_pem);
    cfg.queue.enabled = false;
    match Client::connect(cfg).await {
        Err(outpost_client::ClientError::Rejected { code, .. }) => {
            assert_eq!(code, outpost_client::ErrorCode::ServerBusy)
        }
        other => bail!("expected ServerBusy, got {other:?}"),
    }
    Ok(())
}

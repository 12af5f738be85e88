//! Live mode: virtual players as tokio tasks, each a real game client that
//! talks to real gateways over QUIC through `outpost-client` (nothing else:
//! no backend, no gateway internals).
//!
//! A controller compares, every `live.control_interval_ms`, each region's
//! players with its curve: below the target it starts new players (each a new
//! device account), at most `live.max_arrivals_per_sec` per second over all
//! regions; above it, it tells the surplus to log out. Players also leave when
//! their session length is reached, and the controller replaces them while the
//! curve still wants them, so session length creates churn. The total never
//! exceeds `live.max_players` (targets are scaled down proportionally when
//! they would). At a retry storm the chosen players drop their connection
//! without a goodbye and log in again as the storm's `mode` says.
//!
//! Every wait is bounded: the run stops at the end of the curve (or
//! `--duration`), players get `live.shutdown_grace_ms` to log out, and the
//! stragglers are aborted.
//!
//! Sockets: with `live.endpoints = 0` every player's SDK client binds its own
//! UDP socket (as a game does; a storm's dropped connection goes silent).
//! With `live.endpoints = N` players share a pool of N QUIC endpoints
//! (`ClientConfig::endpoint`), player `n` on endpoint `n mod N`, which is how
//! one process holds tens of thousands of players: N sockets instead of one
//! per player. The players themselves are in `player.rs`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinSet;

use crate::curve::Storm;
use crate::player::{player, PlayerCtl, StormOrder};
use crate::record::{inc, Op, Recorder, Totals};
use crate::results::{summarise, RegionSample, Results, Sample, FORMAT};
use crate::scenario::Scenario;
use crate::RunOptions;

/// Where live mode sends its players.
#[derive(Debug, Clone)]
pub struct LiveTarget {
    /// Gateway addresses per region, in the scenario's region order.
    pub gateways: Vec<Vec<SocketAddr>>,
    /// PEM of the CA that signed the gateways' certificates.
    pub ca_pem: Vec<u8>,
    /// Name the gateway certificates are valid for. `localhost` for dev certificates.
    pub server_name: String,
}

/// What every player of a run shares.
pub(crate) struct Ctx {
    pub scenario: Scenario,
    pub target: LiveTarget,
    pub rec: Arc<Recorder>,
    pub run_start: Instant,
    pub run_id: String,
    pub request_timeout: Duration,
    /// Shared QUIC endpoints (`live.endpoints`); empty: a socket per player.
    pub endpoints: Vec<quinn::Endpoint>,
}

impl Ctx {
    /// A run's context; binds the shared endpoints, if the run shares them.
    fn new(scenario: &Scenario, target: &LiveTarget, rec: Arc<Recorder>) -> anyhow::Result<Self> {
        Ok(Ctx {
            scenario: scenario.clone(),
            target: target.clone(),
            rec,
            run_start: Instant::now(),
            run_id: format!("{:08x}", rand::random::<u32>()),
            request_timeout: Duration::from_millis(scenario.live.request_timeout_ms),
            endpoints: bind_endpoints(
                scenario.live.endpoints,
                target.gateways[0][0],
                scenario.live.endpoint_buffer_bytes,
            )?,
        })
    }

    /// The shared endpoint of player `n`, if the run shares endpoints.
    pub fn endpoint_for(&self, n: u64) -> Option<quinn::Endpoint> {
        (!self.endpoints.is_empty())
            .then(|| self.endpoints[(n % self.endpoints.len() as u64) as usize].clone())
    }
}

/// Binds `n` client endpoints on the wildcard address of `family_of`'s family,
/// each with `buffer_bytes` of socket receive and send buffer (the kernel
/// caps them at `net.core.rmem_max` / `wmem_max`): a burst of handshake
/// replies for thousands of players must not overflow the socket.
pub fn bind_endpoints(
    n: usize,
    family_of: SocketAddr,
    buffer_bytes: usize,
) -> anyhow::Result<Vec<quinn::Endpoint>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let bind: SocketAddr = if family_of.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let runtime = quinn::default_runtime().context("no tokio runtime for the client endpoints")?;
    (0..n)
        .map(|_| {
            let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
            // Best effort: a smaller buffer than asked still works, with more loss in bursts.
            let _ = socket.set_recv_buffer_size(buffer_bytes);
            let _ = socket.set_send_buffer_size(buffer_bytes);
            socket.bind(&bind.into())?;
            let endpoint = quinn::Endpoint::new(
                quinn::EndpointConfig::default(),
                None,
                socket.into(),
                runtime.clone(),
            )?;
            Ok(endpoint)
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .context("binding the shared client endpoints")
}

/// Runs `scenario` against `target` and returns the results (not yet written).
pub async fn run(scenario: &Scenario, target: LiveTarget, opts: &RunOptions) -> anyhow::Result<Results> {
    anyhow::ensure!(
        target.gateways.len() == scenario.regions.len() && target.gateways.iter().all(|g| !g.is_empty()),
        "every region needs at least one gateway address"
    );
    let nreg = scenario.regions.len();
    let rec = Arc::new(Recorder::with_accounting(nreg, scenario.accounting.clone()));
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let ctx = Arc::new(Ctx::new(scenario, &target, rec.clone())?);
    let curves = scenario.curves(opts.scale);
    let forecast = scenario
        .rehearsal
        .changes_curves()
        .then(|| scenario.forecast_curves(opts.scale));
    let mut duration = scenario.duration_s();
    if let Some(d) = opts.max_duration {
        duration = duration.min(d.as_secs_f64());
    }
    let max_players = opts.max_players.unwrap_or(scenario.live.max_players).max(1);
    let mut storms = Storms::new(&curves, scenario.seed);
    let mut arrivals = Arrivals::new(scenario.live.max_arrivals_per_sec, max_players, ctx.run_start);

    let mut players: Vec<Vec<Arc<PlayerCtl>>> = vec![Vec::new(); nreg];
    let mut tasks = JoinSet::new();
    let control = Duration::from_millis(scenario.live.control_interval_ms);
    let sample_every = Duration::from_millis(scenario.sample_interval_ms);
    let mut tick = tokio::time::interval(control);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sampler = Sampler::new(ctx.run_start, nreg);
    let mut prober = opts.gateway_probe.clone().map(crate::gateway_probe::Prober::new);
    if let Some(p) = &mut prober {
        // The first reading is the base of the first interval's CPU rate.
        let _ = p.sample().await;
    }
    let gateway_inside = matches!(
        opts.gateway_probe,
        Some(crate::gateway_probe::GatewayProbe::Threads(_))
    );
    let mut own = crate::self_probe::SelfProbe::start(gateway_inside).await;
    let mut timeline = Vec::new();
    let mut next_sample = ctx.run_start + sample_every;
    let pause = opts
        .gateway_pause
        .map(|(pid, p)| crate::pause::Paused::schedule(pid, p, ctx.run_start));

    loop {
        tick.tick().await;
        let now = Instant::now();
        let t = now.duration_since(ctx.run_start).as_secs_f64();
        while tasks.try_join_next().is_some() {}
        for list in &mut players {
            list.retain(|p| !p.done.load(Ordering::Relaxed));
        }
        if now >= next_sample {
            let mut s = sampler.sample(&rec, &curves, forecast.as_deref(), t, &players);
            if let Some(p) = &mut prober {
                s.gateway = p.sample().await;
            }
            let gateway_cores = s.gateway.as_ref().and_then(|g| g.cpu_cores);
            s.sim = Some(own.sample(gateway_cores).await);
            opts.report_progress(progress_line(&s, scenario, &rec));
            timeline.push(s);
            next_sample += sample_every;
        }
        if t >= duration {
            break;
        }
        storms.release(now, t, ctx.run_start, &players);
        arrivals.steer(now, t, &curves, &mut players, &mut tasks, &ctx);
    }

    let aborted = stop_players(
        &players,
        tasks,
        Duration::from_millis(scenario.live.shutdown_grace_ms),
    )
    .await;
    // Let the shared endpoints send the last CONNECTION_CLOSEs.
    for e in &ctx.endpoints {
        let _ = tokio::time::timeout(Duration::from_secs(1), e.wait_idle()).await;
    }
    let sim_s = ctx.run_start.elapsed().as_secs_f64();
    // The final counts, after every player has ended: the summary's figures.
    let mut last = sampler.sample(&rec, &curves, forecast.as_deref(), sim_s, &players);
    last.t_s = sim_s;
    opts.report_progress(format!("{} (final)", progress_line(&last, scenario, &rec)));

    let peak: f64 = curves.iter().map(|c| c.peak()).sum();
    let totals = rec.totals();
    let mut notes = run_notes(scenario, &totals, ctx.endpoints.len(), aborted, peak, max_players);
    let lateness = timeline
        .iter()
        .filter_map(|s: &Sample| Some((s.t_s, s.sim.as_ref()?.lag_max_ms?)));
    notes.extend(crate::self_probe::lag_note(lateness));
    if let Some(pause) = pause {
        notes.push(pause.finish().await);
    }
    let mut results = Results {
        totals,
        timeline,
        notes,
        ..live_results(scenario, opts, &target, &rec, started_unix_ms, sim_s)
    };
    results.evaluate_slos(scenario);
    Ok(results)
}

/// The curves' retry storms in time order, and which players each one hits.
struct Storms {
    /// (region, storm), by start time.
    due: Vec<(usize, Storm)>,
    /// The first storm not yet released.
    next: usize,
    /// Picks each storm's share of the players (seeded: `scenario.seed`).
    rng: StdRng,
}

impl Storms {
    fn new(curves: &[crate::curve::Curve], seed: u64) -> Self {
        let mut due: Vec<(usize, Storm)> = curves
            .iter()
            .enumerate()
            .flat_map(|(r, c)| c.storms().iter().map(move |s| (r, *s)))
            .collect();
        due.sort_by(|a, b| a.1.at_s.total_cmp(&b.1.at_s));
        Storms {
            due,
            next: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Orders the storms due by `t` (seconds into the run) on their share of
    /// each region's connected players.
    fn release(&mut self, now: Instant, t: f64, run_start: Instant, players: &[Vec<Arc<PlayerCtl>>]) {
        while let Some((r, storm)) = self.due.get(self.next).copied().filter(|(_, s)| s.at_s <= t) {
            self.next += 1;
            let order = StormOrder {
                started: now,
                until: run_start + Duration::from_secs_f64(storm.until_s),
                mode: storm.mode,
                interval: Duration::from_millis(storm.interval_ms),
                moved: storm.moved,
            };
            for p in &players[r] {
                if p.connected.load(Ordering::Relaxed) && !p.stopping() && self.rng.gen_bool(storm.share) {
                    *p.storm.lock().unwrap_or_else(|e| e.into_inner()) = Some(order);
                    p.notify.notify_one();
                }
            }
        }
    }
}

/// The controller's arrivals: a token bucket of `live.max_arrivals_per_sec`
/// over all regions, and the player cap.
struct Arrivals {
    /// Arrivals per second over all regions.
    rate: f64,
    /// Players that may start now.
    tokens: f64,
    /// The most players at once (`live.max_players` / `--max-players`).
    max_players: usize,
    /// The number of the next player (its account and endpoint).
    next_player: u64,
    /// When the bucket was last filled.
    last_tick: Instant,
}

impl Arrivals {
    fn new(rate: f64, max_players: usize, run_start: Instant) -> Self {
        Arrivals {
            rate,
            tokens: rate.min(1.0),
            max_players,
            next_player: 0,
            last_tick: run_start,
        }
    }

    /// Compares each region's players with its curve at `t`: the oldest of a
    /// surplus log out, a deficit gets new players as the tokens allow,
    /// shared between the regions in proportion to their deficits.
    fn steer(
        &mut self,
        now: Instant,
        t: f64,
        curves: &[crate::curve::Curve],
        players: &mut [Vec<Arc<PlayerCtl>>],
        tasks: &mut JoinSet<()>,
        ctx: &Arc<Ctx>,
    ) {
        let dt = now.duration_since(self.last_tick).as_secs_f64();
        self.last_tick = now;
        self.tokens = (self.tokens + self.rate * dt).min(self.rate.max(1.0));
        // Targets, scaled down together if they exceed the player cap.
        let wanted: Vec<f64> = curves.iter().map(|c| c.target_at(t).round()).collect();
        let sum: f64 = wanted.iter().sum();
        let factor = if sum > self.max_players as f64 {
            self.max_players as f64 / sum
        } else {
            1.0
        };
        let active: Vec<usize> = players
            .iter()
            .map(|l| l.iter().filter(|p| !p.stopping()).count())
            .collect();
        let goals: Vec<usize> = wanted.iter().map(|w| (w * factor).floor() as usize).collect();
        let deficits: Vec<usize> = goals
            .iter()
            .zip(&active)
            .map(|(g, a)| g.saturating_sub(*a))
            .collect();
        let total_deficit: usize = deficits.iter().sum();
        let allowed = (self.tokens.floor() as usize).min(total_deficit);
        let mut left = allowed;
        for r in 0..players.len() {
            // Surplus: the oldest players log out.
            let surplus = active[r].saturating_sub(goals[r]);
            for p in players[r].iter().filter(|p| !p.stopping()).take(surplus) {
                p.stop.store(true, Ordering::Relaxed);
                p.notify.notify_one();
            }
            if total_deficit == 0 {
                continue;
            }
            let share = (allowed * deficits[r])
                .div_ceil(total_deficit)
                .min(left)
                .min(deficits[r]);
            for _ in 0..share {
                let ctl = Arc::new(PlayerCtl::default());
                players[r].push(ctl.clone());
                ctx.rec.alive[r].fetch_add(1, Ordering::Relaxed);
                inc(&ctx.rec.counters.players_started);
                tasks.spawn(crate::record::REGION.scope(r, player(ctx.clone(), r, self.next_player, ctl)));
                self.next_player += 1;
            }
            left -= share;
            self.tokens -= share as f64;
        }
    }
}

/// The results of a live run but its totals, timeline, notes and SLO
/// verdicts.
fn live_results(
    scenario: &Scenario,
    opts: &RunOptions,
    target: &LiveTarget,
    rec: &Recorder,
    started_unix_ms: u64,
    sim_s: f64,
) -> Results {
    Results {
        format: FORMAT.into(),
        mode: "live".into(),
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        scale: opts.scale,
        regions: scenario.regions.iter().map(|r| r.name.clone()).collect(),
        started_unix_ms,
        wall_s: sim_s,
        sim_s,
        target: target_addrs(target, scenario),
        totals: Totals::default(),
        operations: summarise(Op::ALL.iter().map(|&op| (op, rec.histogram(op)))),
        errors: rec.errors(),
        errors_by_op: rec.errors_by_op(),
        accounting: rec.ledger(),
        expected_outcomes: scenario.accounting.expected.clone(),
        timeline: Vec::new(),
        slo: Vec::new(),
        notes: Vec::new(),
        login_queue: None,
        phases: crate::annotations::phases(scenario),
        gateway_source: opts.gateway_probe.as_ref().map(|p| p.source()),
        model_tail: None,
        model_store: None,
    }
}

/// The curve is over: everyone logs out, within `grace`; the number of
/// players aborted after it.
async fn stop_players(players: &[Vec<Arc<PlayerCtl>>], mut tasks: JoinSet<()>, grace: Duration) -> usize {
    for p in players.iter().flatten() {
        p.stop.store(true, Ordering::Relaxed);
        p.notify.notify_one();
    }
    let _ = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    let aborted = tasks.len();
    tasks.shutdown().await;
    aborted
}

/// The run's notes for the report.
fn run_notes(
    scenario: &Scenario,
    t: &Totals,
    endpoints: usize,
    aborted: usize,
    peak: f64,
    max_players: usize,
) -> Vec<String> {
    let mut notes = Vec::new();
    if t.skipped_actions > 0 {
        notes.push(format!("{} matchmaking actions were skipped.", t.skipped_actions));
    }
    if aborted > 0 {
        notes.push(format!(
            "{aborted} players had not logged out {} ms after the end and were aborted.",
            scenario.live.shutdown_grace_ms
        ));
    }
    if endpoints > 0 {
        notes.push(format!(
            "Players shared {endpoints} QUIC endpoints (live.endpoints); a storm's dropped connections were closed with a CONNECTION_CLOSE instead of going silent."
        ));
    }
    if peak > max_players as f64 {
        notes.push(format!(
            "The curves peak at {peak:.0} players; this run was capped at {max_players} (live.max_players / --max-players)."
        ));
    }
    notes
}

/// The gateways a run targeted, as `region=addr,addr region=...`.
fn target_addrs(target: &LiveTarget, scenario: &Scenario) -> String {
    let addrs: Vec<String> = target
        .gateways
        .iter()
        .zip(&scenario.regions)
        .map(|(g, r)| {
            format!(
                "{}={}",
                r.name,
                g.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    addrs.join(" ")
}

/// Turns counters into per-interval rates for the timeline.
struct Sampler {
    last: Instant,
    requests: u64,
    errors: u64,
    logins: u64,
    /// Per region: logins and errors at the last sample.
    region_logins: Vec<u64>,
    region_errors: Vec<u64>,
}

impl Sampler {
    fn new(start: Instant, regions: usize) -> Self {
        Sampler {
            last: start,
            requests: 0,
            errors: 0,
            logins: 0,
            region_logins: vec![0; regions],
            region_errors: vec![0; regions],
        }
    }

    fn sample(
        &mut self,
        rec: &Recorder,
        curves: &[crate::curve::Curve],
        forecast: Option<&[crate::curve::Curve]>,
        t: f64,
        players: &[Vec<Arc<PlayerCtl>>],
    ) -> Sample {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64().max(1e-3);
        self.last = now;
        let tot = rec.totals();
        let errors = rec.error_total();
        let rate = |now: u64, before: &mut u64| {
            let r = now.saturating_sub(*before) as f64 / dt;
            *before = now;
            r
        };
        let h = rec.take_interval();
        let pct = |q: f64| (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0);
        Sample {
            t_s: t,
            regions: curves
                .iter()
                .enumerate()
                .map(|(r, c)| {
                    let connected = players[r]
                        .iter()
                        .filter(|p| p.connected.load(Ordering::Relaxed))
                        .count() as u64;
                    let rh = rec.take_region_interval(r);
                    let rpct = |q: f64| (!rh.is_empty()).then(|| rh.value_at_quantile(q) as f64 / 1000.0);
                    let logins = rec.region_logins[r].load(Ordering::Relaxed);
                    let errors = rec.region_errors[r].load(Ordering::Relaxed);
                    RegionSample {
                        target: c.target_at(t).round() as u64,
                        players: connected,
                        waiting: (players[r].len() as u64).saturating_sub(connected),
                        forecast: forecast.map(|f| f[r].target_at(t).round() as u64),
                        logins_per_s: Some(rate(logins, &mut self.region_logins[r])),
                        errors_per_s: Some(rate(errors, &mut self.region_errors[r])),
                        p50_ms: rpct(0.5),
                        p99_ms: rpct(0.99),
                    }
                })
                .collect(),
            requests_per_s: rate(tot.requests, &mut self.requests),
            errors_per_s: rate(errors, &mut self.errors),
            logins_per_s: rate(tot.logins_ok, &mut self.logins),
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
            ..Sample::default()
        }
    }
}

/// One progress line. Its error count is the accounting's (errors only,
/// expected outcomes apart), the same figure as the summary and `result.json`.
fn progress_line(s: &Sample, scenario: &Scenario, rec: &Recorder) -> String {
    let regions: Vec<String> = s
        .regions
        .iter()
        .zip(&scenario.regions)
        .map(|(r, spec)| format!("{} {}/{}", spec.name, r.players, r.target))
        .collect();
    let t = rec.totals();
    let ledger = rec.ledger();
    let mut line = format!(
        "[{:>7.1}s] players {} | {:.0} req/s p99 {} | logins {} ({:.0}/s) | errors {} ({:.0}/s)",
        s.t_s,
        regions.join(" "),
        s.requests_per_s,
        s.p99_ms.map_or("-".into(), crate::units::fmt_ms),
        t.logins_ok,
        s.logins_per_s,
        t.errors,
        s.errors_per_s,
    );
    if t.errors > 0 {
        line += &format!(" [{}]", crate::accounting::top(&ledger, false, 3));
    }
    if let Some(late) = s.sim.as_ref().and_then(|m| m.lag_max_ms) {
        // The sim's own delay, beside the latencies it recorded.
        line += &format!(" | sim late ≤ {}", crate::units::fmt_ms(late));
    }
    if t.outcomes > 0 {
        line += &format!(
            " | outcomes {} [{}]",
            t.outcomes,
            crate::accounting::top(&ledger, true, 3)
        );
    }
    line
}

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

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use outpost_client::{Client, ClientConfig, ClientError, Credentials, Event, StateClient, Trust};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::curve::{Storm, StormMode};
use crate::record::{inc, Op, Recorder};
use crate::results::{summarise, RegionSample, Results, Sample, FORMAT};
use crate::retry::{retry_delay, Attempt};
use crate::scenario::Scenario;
use crate::RunOptions;

/// How long a live player waits for a match before cancelling its ticket.
const MATCH_WAIT_LIMIT: Duration = Duration::from_secs(30);

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

/// A storm order for one player: log in again following this.
#[derive(Debug, Clone, Copy)]
struct StormOrder {
    started: Instant,
    until: Instant,
    mode: StormMode,
    interval: Duration,
}

/// The controller's handle on one player.
#[derive(Debug, Default)]
struct PlayerCtl {
    stop: AtomicBool,
    done: AtomicBool,
    connected: AtomicBool,
    storm: Mutex<Option<StormOrder>>,
    notify: Notify,
}

impl PlayerCtl {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn take_storm(&self) -> Option<StormOrder> {
        self.storm.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

struct Ctx {
    scenario: Scenario,
    target: LiveTarget,
    rec: Arc<Recorder>,
    run_start: Instant,
    run_id: String,
    request_timeout: Duration,
}

/// Runs `scenario` against `target` and returns the results (not yet written).
pub async fn run(scenario: &Scenario, target: LiveTarget, opts: &RunOptions) -> anyhow::Result<Results> {
    anyhow::ensure!(
        target.gateways.len() == scenario.regions.len() && target.gateways.iter().all(|g| !g.is_empty()),
        "every region needs at least one gateway address"
    );
    let nreg = scenario.regions.len();
    let rec = Arc::new(Recorder::new(nreg));
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let ctx = Arc::new(Ctx {
        scenario: scenario.clone(),
        target: target.clone(),
        rec: rec.clone(),
        run_start: Instant::now(),
        run_id: format!("{:08x}", rand::random::<u32>()),
        request_timeout: Duration::from_millis(scenario.live.request_timeout_ms),
    });
    let curves = scenario.curves(opts.scale);
    let mut duration = scenario.duration_s();
    if let Some(d) = opts.max_duration {
        duration = duration.min(d.as_secs_f64());
    }
    let max_players = opts.max_players.unwrap_or(scenario.live.max_players).max(1);
    let rate = scenario.live.max_arrivals_per_sec;
    let mut storms: Vec<(usize, Storm)> = curves
        .iter()
        .enumerate()
        .flat_map(|(r, c)| c.storms().iter().map(move |s| (r, *s)))
        .collect();
    storms.sort_by(|a, b| a.1.at_s.total_cmp(&b.1.at_s));
    let mut next_storm = 0;
    let mut rng = StdRng::seed_from_u64(scenario.seed);

    let mut players: Vec<Vec<Arc<PlayerCtl>>> = vec![Vec::new(); nreg];
    let mut tasks = JoinSet::new();
    let mut next_player: u64 = 0;
    let mut tokens = rate.min(1.0);
    let control = Duration::from_millis(scenario.live.control_interval_ms);
    let sample_every = Duration::from_millis(scenario.sample_interval_ms);
    let mut tick = tokio::time::interval(control);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sampler = Sampler::new(ctx.run_start);
    let mut timeline = Vec::new();
    let mut last_tick = ctx.run_start;
    let mut next_sample = ctx.run_start + sample_every;

    loop {
        tick.tick().await;
        let now = Instant::now();
        let t = now.duration_since(ctx.run_start).as_secs_f64();
        while tasks.try_join_next().is_some() {}
        for list in &mut players {
            list.retain(|p| !p.done.load(Ordering::Relaxed));
        }
        if now >= next_sample {
            let s = sampler.sample(&rec, &curves, t, &players);
            if opts.progress {
                eprintln!("{}", progress_line(&s, scenario, &rec));
            }
            timeline.push(s);
            next_sample += sample_every;
        }
        if t >= duration {
            break;
        }
        while let Some((r, storm)) = storms.get(next_storm).copied().filter(|(_, s)| s.at_s <= t) {
            next_storm += 1;
            let order = StormOrder {
                started: now,
                until: ctx.run_start + Duration::from_secs_f64(storm.until_s),
                mode: storm.mode,
                interval: Duration::from_millis(storm.interval_ms),
            };
            for p in &players[r] {
                if p.connected.load(Ordering::Relaxed) && !p.stopping() && rng.gen_bool(storm.share) {
                    *p.storm.lock().unwrap_or_else(|e| e.into_inner()) = Some(order);
                    p.notify.notify_one();
                }
            }
        }
        let dt = now.duration_since(last_tick).as_secs_f64();
        last_tick = now;
        tokens = (tokens + rate * dt).min(rate.max(1.0));
        // Targets, scaled down together if they exceed the player cap.
        let wanted: Vec<f64> = curves.iter().map(|c| c.target_at(t).round()).collect();
        let sum: f64 = wanted.iter().sum();
        let factor = if sum > max_players as f64 {
            max_players as f64 / sum
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
        let allowed = (tokens.floor() as usize).min(total_deficit);
        let mut left = allowed;
        for r in 0..nreg {
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
                rec.alive[r].fetch_add(1, Ordering::Relaxed);
                inc(&rec.counters.players_started);
                tasks.spawn(player(ctx.clone(), r, next_player, ctl));
                next_player += 1;
            }
            left -= share;
            tokens -= share as f64;
        }
    }

    // The curve is over: everyone logs out, within the grace period.
    for p in players.iter().flatten() {
        p.stop.store(true, Ordering::Relaxed);
        p.notify.notify_one();
    }
    let grace = Duration::from_millis(scenario.live.shutdown_grace_ms);
    let _ = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    let aborted = tasks.len();
    tasks.shutdown().await;
    let sim_s = ctx.run_start.elapsed().as_secs_f64();

    let mut notes = Vec::new();
    let t = rec.totals();
    if t.skipped_actions > 0 {
        notes.push(format!("{} matchmaking actions were skipped.", t.skipped_actions));
    }
    if aborted > 0 {
        notes.push(format!(
            "{aborted} players had not logged out {} ms after the end and were aborted.",
            scenario.live.shutdown_grace_ms
        ));
    }
    let peak: f64 = curves.iter().map(|c| c.peak()).sum();
    if peak > max_players as f64 {
        notes.push(format!(
            "The curves peak at {peak:.0} players; this run was capped at {max_players} (live.max_players / --max-players)."
        ));
    }
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
    let mut results = Results {
        format: FORMAT.into(),
        mode: "live".into(),
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        scale: opts.scale,
        regions: scenario.regions.iter().map(|r| r.name.clone()).collect(),
        started_unix_ms,
        wall_s: sim_s,
        sim_s,
        target: addrs.join(" "),
        totals: t,
        operations: summarise(Op::ALL.iter().map(|&op| (op, rec.histogram(op)))),
        errors: rec.errors(),
        errors_by_op: rec.errors_by_op(),
        timeline,
        slo: Vec::new(),
        notes,
    };
    results.evaluate_slos(scenario);
    Ok(results)
}

/// Turns counters into per-interval rates for the timeline.
struct Sampler {
    last: Instant,
    requests: u64,
    errors: u64,
    logins: u64,
}

impl Sampler {
    fn new(start: Instant) -> Self {
        Sampler {
            last: start,
            requests: 0,
            errors: 0,
            logins: 0,
        }
    }

    fn sample(
        &mut self,
        rec: &Recorder,
        curves: &[crate::curve::Curve],
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
                    RegionSample {
                        target: c.target_at(t).round() as u64,
                        players: connected,
                        waiting: (players[r].len() as u64).saturating_sub(connected),
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

fn progress_line(s: &Sample, scenario: &Scenario, rec: &Recorder) -> String {
    let regions: Vec<String> = s
        .regions
        .iter()
        .zip(&scenario.regions)
        .map(|(r, spec)| format!("{} {}/{}", spec.name, r.players, r.target))
        .collect();
    let t = rec.totals();
    format!(
        "[{:>7.1}s] players {} | {:.0} req/s p99 {} | logins {} ({:.0}/s) | errors {} ({:.0}/s)",
        s.t_s,
        regions.join(" "),
        s.requests_per_s,
        s.p99_ms.map_or("-".into(), |v| format!("{v:.1} ms")),
        t.logins_ok,
        s.logins_per_s,
        rec.error_total(),
        s.errors_per_s,
    )
}

/// Sleeps `d`, waking early when the controller signals; false when told to stop.
async fn pause(ctl: &PlayerCtl, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = ctl.notify.notified() => {}
    }
    !ctl.stopping()
}

/// Logs in, retrying as the scenario (or a storm) says. `None`: gave up or stopped.
async fn login(
    ctx: &Ctx,
    ctl: &PlayerCtl,
    region: usize,
    creds: &Credentials,
    rng: &mut StdRng,
    storm: Option<StormOrder>,
) -> Option<Client> {
    let rec = &ctx.rec;
    let retry = &ctx.scenario.retry;
    let impatient = rng.gen_bool(retry.impatient_share);
    let mut config = ClientConfig::new(
        ctx.target.gateways[region].clone(),
        Trust::DevCa {
            pem: ctx.target.ca_pem.clone(),
        },
        creds.clone(),
    );
    config.server_name = ctx.target.server_name.clone();
    config.request_timeout = ctx.request_timeout;
    config.event_capacity = 16;
    let mut attempt = 0u32;
    if let Some(s) = storm {
        // The first attempt after a storm: all at once (lockstep) or spread (jitter).
        let first = match s.mode {
            StormMode::Lockstep => s.interval,
            StormMode::Jitter => s.interval.mul_f64(rng.gen::<f64>()),
        };
        if !pause(ctl, (s.started + first).saturating_duration_since(Instant::now())).await {
            return None;
        }
    }
    loop {
        attempt += 1;
        inc(&rec.counters.login_attempts);
        let t0 = Instant::now();
        let err = match Client::connect(config.clone()).await {
            Ok(c) => {
                rec.ok(Op::Login, t0.elapsed());
                inc(&rec.counters.logins_ok);
                return Some(c);
            }
            Err(e) => e,
        };
        inc(&rec.counters.login_failures);
        rec.err(Op::Login, &err);
        let now = Instant::now();
        let delay = match storm {
            Some(s) => {
                if now >= s.until {
                    return give_up(rec);
                }
                match s.mode {
                    StormMode::Lockstep => {
                        let since = now.duration_since(s.started).as_nanos();
                        let step = s.interval.as_nanos().max(1);
                        Duration::from_nanos(((since / step + 1) * step - since) as u64)
                    }
                    StormMode::Jitter => s.interval.mul_f64(rng.gen::<f64>()),
                }
            }
            None => {
                if attempt >= retry.max_attempts || !err.is_retryable() {
                    return give_up(rec);
                }
                retry_delay(
                    retry,
                    Attempt {
                        number: attempt,
                        impatient,
                        retry_after: err.retry_after(),
                        since_start: now.duration_since(ctx.run_start),
                    },
                    rng,
                )
            }
        };
        if !pause(ctl, delay).await {
            return None;
        }
    }
}

fn give_up(rec: &Recorder) -> Option<Client> {
    inc(&rec.counters.players_gave_up);
    None
}

/// What a logged-in player does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Ping,
    Echo,
    StateLoad,
    StateSave,
    Matchmaking,
}

fn pick(weights: &[f64; 5], rng: &mut StdRng) -> Option<Action> {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let mut x = rng.gen::<f64>() * total;
    let actions = [
        Action::Ping,
        Action::Echo,
        Action::StateLoad,
        Action::StateSave,
        Action::Matchmaking,
    ];
    for (a, w) in actions.iter().zip(weights) {
        if x < *w {
            return Some(*a);
        }
        x -= w;
    }
    actions
        .iter()
        .zip(weights)
        .rev()
        .find(|(_, w)| **w > 0.0)
        .map(|(a, _)| *a)
}

/// One logged-in session's per-player state.
struct Session {
    client: Client,
    events: outpost_client::Events,
    first_connect_seen: bool,
    state: Option<StateClient>,
}

impl Session {
    fn new(client: Client) -> Self {
        let events = client.events();
        Session {
            client,
            events,
            first_connect_seen: false,
            state: None,
        }
    }

    /// Counts reconnects from the SDK's events; false if the session ended.
    fn drain_events(&mut self, rec: &Recorder) -> bool {
        while let Some(ev) = self.events.try_recv() {
            match ev {
                Event::Connected { resumed } => {
                    if self.first_connect_seen {
                        inc(&rec.counters.reconnects);
                        if resumed {
                            inc(&rec.counters.resumed);
                        }
                    }
                    self.first_connect_seen = true;
                }
                Event::Closed { reason } => {
                    rec.err_code(
                        Op::Login,
                        format!("SessionEnded:{}", crate::record::error_code(&reason)),
                    );
                    return false;
                }
                _ => {}
            }
        }
        true
    }

    async fn state(&mut self) -> Result<StateClient, ClientError> {
        if let Some(s) = &self.state {
            return Ok(s.clone());
        }
        let s = self.client.state().await?;
        self.state = Some(s.clone());
        Ok(s)
    }
}

async fn player(ctx: Arc<Ctx>, region: usize, n: u64, ctl: Arc<PlayerCtl>) {
    run_player(&ctx, region, n, &ctl).await;
    ctl.connected.store(false, Ordering::Relaxed);
    ctl.done.store(true, Ordering::Relaxed);
    ctx.rec.alive[region].fetch_sub(1, Ordering::Relaxed);
}

async fn run_player(ctx: &Ctx, region: usize, n: u64, ctl: &PlayerCtl) {
    let rec = &ctx.rec;
    let sc = &ctx.scenario;
    let mut rng = StdRng::seed_from_u64(sc.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let length = Duration::from_secs_f64(sc.session.length_s.sample(&mut rng).min(1e7));
    let session_end = Instant::now() + length;
    let creds = Credentials::Device {
        device_id: format!("sim-{}-{}-{n}", ctx.run_id, sc.regions[region].name),
        secret: format!("outpost-sim-secret-{n:08}"),
    };
    let Some(client) = login(ctx, ctl, region, &creds, &mut rng, None).await else {
        return;
    };
    inc(&rec.counters.players_logged_in);
    let mut s = Session::new(client);
    let set_connected = |on: bool| {
        ctl.connected.store(on, Ordering::Relaxed);
        let d = if on { 1 } else { -1 };
        rec.connected[region].fetch_add(d, Ordering::Relaxed);
    };
    set_connected(true);
    let weights = sc.behaviour.weights();
    let mut version = 0u64;
    loop {
        if !s.drain_events(rec) {
            set_connected(false);
            return;
        }
        if ctl.stopping() || Instant::now() >= session_end {
            break;
        }
        if let Some(order) = ctl.take_storm() {
            inc(&rec.counters.storm_drops);
            set_connected(false);
            // Gone without a goodbye: the gateway only notices through the idle
            // timeout or the replacing login.
            s.client.debug_kill_connection();
            drop(s);
            let Some(client) = login(ctx, ctl, region, &creds, &mut rng, Some(order)).await else {
                return;
            };
            s = Session::new(client);
            set_connected(true);
            continue;
        }
        let think = Duration::from_secs_f64(sc.session.think_ms.sample(&mut rng) / 1000.0);
        let wake = (Instant::now() + think).min(session_end);
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = ctl.notify.notified() => continue,
        }
        let Some(action) = pick(&weights, &mut rng) else {
            continue;
        };
        let t0 = Instant::now();
        let (op, res) = match action {
            Action::Ping => (Op::Ping, s.client.ping().await.map(|_| ())),
            Action::Echo => (
                Op::Echo,
                s.client
                    .echo(vec![0x5a; sc.behaviour.echo_bytes], 0)
                    .await
                    .map(|_| ()),
            ),
            Action::StateLoad => (
                Op::StateLoad,
                async { s.state().await?.list().await }.await.map(|_| ()),
            ),
            Action::StateSave => {
                let value = vec![b'x'; sc.behaviour.state_bytes];
                let res = async { s.state().await?.set("sim", version, value).await }.await;
                match res {
                    Ok(v) => {
                        version = v;
                        (Op::StateSave, Ok(()))
                    }
                    Err(e) => {
                        if outpost_client::is_conflict(&e) {
                            // Someone else (a replaced session) wrote: re-read the version.
                            if let Ok(Some(doc)) = async { s.state().await?.get("sim").await }.await {
                                version = doc.version;
                            }
                        }
                        (Op::StateSave, Err(e))
                    }
                }
            }
            Action::Matchmaking => {
                // Queue, then wait for the MatchFound push (bounded), as a game
                // would; the recorded time is the match wait.
                let queue = sc.matchmaking.as_ref().map_or("duel", |m| m.queue.as_str());
                let res = async {
                    let mm = s.client.matchmaking().await?;
                    let mut events = s.client.events();
                    mm.queue_here(queue).await?;
                    let found = tokio::time::timeout(MATCH_WAIT_LIMIT, async {
                        while let Some(ev) = events.recv().await {
                            if let Event::Push {
                                body: outpost_client::PushBody::MatchFound { .. },
                                ..
                            } = ev
                            {
                                return true;
                            }
                        }
                        false
                    })
                    .await;
                    if matches!(found, Ok(true)) {
                        Ok(())
                    } else {
                        let _ = mm.cancel().await;
                        Err(ClientError::Timeout)
                    }
                }
                .await;
                (Op::MatchWait, res)
            }
        };
        match res {
            Ok(()) => rec.ok(op, t0.elapsed()),
            Err(e) => rec.err(op, &e),
        }
    }
    set_connected(false);
    inc(&rec.counters.sessions_completed);
    let _ = tokio::time::timeout(Duration::from_secs(2), s.client.close()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_follows_weights() {
        let mut rng = StdRng::seed_from_u64(3);
        assert_eq!(pick(&[0.0; 5], &mut rng), None);
        let mut counts = [0usize; 5];
        for _ in 0..10_000 {
            let a = pick(&[1.0, 0.0, 3.0, 0.0, 0.0], &mut rng).unwrap();
            counts[a as usize] += 1;
        }
        assert_eq!(counts[1] + counts[3] + counts[4], 0);
        let share = counts[2] as f64 / 10_000.0;
        assert!((share - 0.75).abs() < 0.03, "{share}");
    }
}

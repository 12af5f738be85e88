//! Model mode: the backend's matchmaker core ([`MatchCore`]) on virtual time,
//! no sockets, to check launches of millions of concurrent players.
//!
//! Time advances in steps of `matchmaking.round_interval_ms` (1 s without a
//! `[matchmaking]` section). Each step:
//!
//! 1. due events fire: a player in the lobby queues (a ticket is inserted into
//!    the core), a match ends (its players return to the lobby), a session ends
//!    (the player leaves; a waiting ticket is removed);
//! 2. retry storms knock `share` of a region's online players out: their ticket
//!    or match is lost and they come back and queue again after `interval_ms`
//!    (lockstep: all at once) or a uniform delay within it (jitter);
//! 3. each region's online players are brought to the curve's target: new
//!    players arrive (no arrival cap: a queue release arrives in one step), or
//!    random players leave;
//! 4. one matching round runs; matched players play for `match_duration_s`;
//!    with `deadline_s`, tickets whose deadline falls before the next round
//!    end without a match (their wait is recorded; the player goes back to
//!    the lobby and queues again later).
//!
//! What is modelled and what not: logins, requests and the network are not
//! (that is live mode). A player in the lobby queues after an exponential wait
//! with mean `session.think_ms` mean ÷ the matchmaking share of the behaviour
//! mix (exact when think times are exponential: it is the wait until the first
//! think period that ends in a matchmaking action). Ticket latencies come from
//! the region's `rtt_ms` and its neighbours' distributions.
//!
//! With `[matchmaking.store]` (`model --store --partitions N`) the real
//! store-backed pool replaces the core, its work on real time charged to the
//! virtual clock ([`crate::model_store`]: how the clocks combine, what waits mean).

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hdrhistogram::Histogram;
use outpost_backend::matchmaker::{MatchCore, RegionLatency, Skill, Ticket, TicketId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::annotations::{ModelTail, WorstTicket};
use crate::curve::{Curve, Storm, StormMode};
use crate::model_engine::Engine;
use crate::model_store::StorePool;
use crate::record::{new_histogram, Op, Totals};
use crate::results::{summarise, RegionSample, Results, Sample, FORMAT};
use crate::scenario::{MatchmakingSpec, Scenario};
use crate::spread::SpreadByWait;
use crate::RunOptions;

pub use crate::matchmaking_spec::matchmaker_config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Offline,
    Lobby,
    Queued,
    Playing,
}

/// One virtual player (a slot reused after the player leaves).
#[derive(Debug, Clone, Copy)]
struct Player {
    region: u16,
    state: State,
    /// Bumped whenever the player's plans change; stale events are ignored.
    gen: u32,
    /// Bumped when a new player takes the slot (session-end events check it).
    life: u32,
    /// Tickets this slot created (the low half of the ticket id).
    tickets: u32,
    /// Position in its region's online list.
    pos: u32,
    rating: f32,
    uncertainty: f32,
}

#[derive(Debug, Clone, Copy)]
enum Ev {
    Queue,
    MatchOver,
    SessionEnd,
}

fn ticket_id(slot: u32, n: u32) -> TicketId {
    TicketId((u64::from(slot) << 32) | u64::from(n))
}

fn slot_of(id: TicketId) -> u32 {
    (id.0 >> 32) as u32
}

struct World<'a> {
    s: &'a Scenario,
    mm: Option<&'a MatchmakingSpec>,
    core: Option<Engine>,
    players: Vec<Player>,
    free: Vec<u32>,
    online: Vec<Vec<u32>>,
    /// Events by step index, with their exact due time (ms).
    wheel: BTreeMap<u64, Vec<(u32, u32, Ev, u64)>>,
    /// The step whose events fired last: an event due by then goes to the next step.
    fired: u64,
    step_ms: u64,
    /// Mean lobby time before queueing, ms (`None`: players never queue).
    lobby_mean_ms: Option<f64>,
    rng: StdRng,
    totals: Totals,
}

/// What a run measures as it goes.
struct Measure {
    waits: Histogram<u64>,
    spread: SpreadByWait,
    interval_waits: Histogram<u64>,
    interval_matches: u64,
    tail: ModelTail,
    timeline: Vec<Sample>,
    next_sample: u64,
    last_sample: u64,
    last_progress: Instant,
}

impl Measure {
    fn wait(&mut self, wait_ms: u64) {
        self.waits.saturating_record(wait_ms.max(1));
        self.interval_waits.saturating_record(wait_ms.max(1));
    }
}

impl World<'_> {
    fn schedule(&mut self, at_ms: u64, slot: u32, ev: Ev) {
        // Due by a step whose events already fired (a lobby time < 1 ms): the next one.
        let step = at_ms.div_ceil(self.step_ms).max(self.fired + 1);
        let p = &self.players[slot as usize];
        let gen = if matches!(ev, Ev::SessionEnd) {
            p.life
        } else {
            p.gen
        };
        self.wheel.entry(step).or_default().push((slot, gen, ev, at_ms));
    }

    fn schedule_queue(&mut self, now: u64, slot: u32) {
        if let Some(mean) = self.lobby_mean_ms {
            let wait = -mean * self.rng.gen_range(f64::EPSILON..1.0f64).ln();
            self.schedule(now + wait as u64, slot, Ev::Queue);
        }
    }

    fn arrive(&mut self, now: u64, region: usize) {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.players.push(Player {
                region: 0,
                state: State::Offline,
                gen: 0,
                life: 0,
                tickets: 0,
                pos: 0,
                rating: 0.0,
                uncertainty: 0.0,
            });
            (self.players.len() - 1) as u32
        });
        let (rating, uncertainty) = match self.mm {
            Some(m) => (m.skill.sample(&mut self.rng), m.uncertainty.sample(&mut self.rng)),
            None => (0.0, 0.0),
        };
        let p = &mut self.players[slot as usize];
        p.region = region as u16;
        p.state = State::Lobby;
        p.gen = p.gen.wrapping_add(1);
        p.life = p.life.wrapping_add(1);
        p.pos = self.online[region].len() as u32;
        p.rating = rating as f32;
        p.uncertainty = uncertainty as f32;
        self.online[region].push(slot);
        self.totals.players_started += 1;
        let length = self.s.session.length_s.sample(&mut self.rng);
        self.schedule(now + (length * 1000.0) as u64, slot, Ev::SessionEnd);
        self.schedule_queue(now, slot);
    }

    /// Cancels whatever the player was doing (ticket, match) and bumps its generation.
    fn reset(&mut self, slot: u32) {
        let p = self.players[slot as usize];
        if p.state == State::Queued {
            if let Some(core) = &mut self.core {
                core.remove(ticket_id(slot, p.tickets));
            }
        }
        let p = &mut self.players[slot as usize];
        p.gen = p.gen.wrapping_add(1);
        p.state = State::Lobby;
    }

    fn leave(&mut self, slot: u32) {
        self.reset(slot);
        let p = self.players[slot as usize];
        let list = &mut self.online[p.region as usize];
        let last = *list.last().expect("an online player is listed");
        list.swap_remove(p.pos as usize);
        if last != slot {
            self.players[last as usize].pos = p.pos;
        }
        self.players[slot as usize].state = State::Offline;
        self.free.push(slot);
        self.totals.sessions_completed += 1;
    }

    fn queue(&mut self, now: u64, slot: u32) -> anyhow::Result<()> {
        let (Some(m), Some(core)) = (self.mm, self.core.as_mut()) else {
            return Ok(());
        };
        let p = &mut self.players[slot as usize];
        p.tickets = p.tickets.wrapping_add(1);
        p.state = State::Queued;
        let spec = &self.s.regions[p.region as usize];
        let mut latencies = vec![RegionLatency {
            region: spec.name.clone(),
            rtt_ms: spec.rtt_ms.sample(&mut self.rng) as u32,
        }];
        for n in &spec.neighbours {
            latencies.push(RegionLatency {
                region: n.name.clone(),
                rtt_ms: n.rtt_ms.sample(&mut self.rng) as u32,
            });
        }
        core.insert(Ticket {
            id: ticket_id(slot, p.tickets),
            players: vec![slot.to_string()],
            queue: m.queue.clone(),
            skill: Skill {
                rating: f64::from(p.rating),
                uncertainty: f64::from(p.uncertainty),
            },
            home_region: spec.name.clone(),
            latencies,
            max_latency_ms: None,
            created_ms: now,
        })?;
        self.totals.tickets += 1;
        Ok(())
    }

    /// 1. Events due at `step`.
    fn fire_events(&mut self, step: u64, now: u64) -> anyhow::Result<()> {
        self.fired = step;
        let Some(evs) = self.wheel.remove(&step) else {
            return Ok(());
        };
        for (slot, gen, ev, at_ms) in evs {
            let p = self.players[slot as usize];
            let current = if matches!(ev, Ev::SessionEnd) {
                p.life
            } else {
                p.gen
            };
            if current != gen || p.state == State::Offline {
                continue;
            }
            match ev {
                Ev::SessionEnd => self.leave(slot),
                // The ticket exists from the moment the player queued (between rounds).
                Ev::Queue if p.state == State::Lobby => self.queue(at_ms.min(now), slot)?,
                Ev::MatchOver if p.state == State::Playing => {
                    self.players[slot as usize].state = State::Lobby;
                    self.schedule_queue(now, slot);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// 2. A retry storm (or an outage) hits region `r`.
    fn storm(&mut self, now: u64, r: usize, storm: Storm) {
        let hit: Vec<u32> = self.online[r]
            .iter()
            .copied()
            .filter(|_| self.rng.gen_bool(storm.share))
            .collect();
        for slot in hit {
            if storm.moved {
                // A region outage: the player leaves; the neighbour's curve
                // brings as many new players there.
                self.totals.outage_drops += 1;
                self.leave(slot);
                continue;
            }
            self.reset(slot);
            self.totals.storm_drops += 1;
            let old = self
                .s
                .rehearsal
                .old_clients
                .filter(|o| self.rng.gen_bool(o.share));
            let back = match (old, storm.mode) {
                // Old clients: the next multiple of their interval since the start.
                (Some(o), _) => crate::retry::old_client_delay(o.interval_ms, Duration::from_millis(now))
                    .as_millis() as u64,
                (None, StormMode::Lockstep) => storm.interval_ms,
                (None, StormMode::Jitter) => self.rng.gen_range(0..=storm.interval_ms),
            };
            self.schedule(now + back, slot, Ev::Queue);
        }
    }

    /// 3. Each region's online players brought to its curve's target.
    fn follow_curves(&mut self, now: u64, t_s: f64, curves: &[Curve]) {
        for (r, curve) in curves.iter().enumerate() {
            let target = curve.target_at(t_s).round() as usize;
            let online = self.online[r].len();
            for _ in online..target {
                self.arrive(now, r);
            }
            for _ in target..online {
                let list = &self.online[r];
                let slot = list[self.rng.gen_range(0..list.len())];
                self.leave(slot);
            }
        }
    }

    /// 4. One matching round: matched players play, deadline outcomes go back to the lobby.
    fn match_round(&mut self, now: u64, t_s: f64, me: &mut Measure) -> anyhow::Result<()> {
        let (Some(core), Some(m)) = (&mut self.core, self.mm) else {
            return Ok(());
        };
        let (matches, expired) = core.round(now, self.step_ms)?;
        for game in matches {
            self.totals.matches += 1;
            me.interval_matches += 1;
            let length = (m.match_duration_s.sample(&mut self.rng) * 1000.0) as u64;
            for t in &game.tickets {
                me.wait(t.wait_ms);
                me.spread.matched(t.wait_ms, game.skill_spread);
                let slot = slot_of(t.id);
                if me.tail.keeps(t.wait_ms as f64 / 1000.0) {
                    me.tail.offer(WorstTicket {
                        wait_s: t.wait_ms as f64 / 1000.0,
                        matched_at_s: t_s,
                        home_region: t.home_region.clone(),
                        match_region: game.region.clone(),
                        rating: f64::from(self.players[slot as usize].rating),
                        expansion: t.expansion,
                        match_skill_spread: game.skill_spread,
                    });
                }
                self.players[slot as usize].state = State::Playing;
                self.schedule(now + length, slot, Ev::MatchOver);
            }
        }
        // Deadline outcomes: the wait counts; the player is back in the lobby.
        for nm in expired {
            me.wait(nm.wait_ms);
            me.spread.no_match(nm.wait_ms);
            let slot = slot_of(nm.ticket);
            self.players[slot as usize].state = State::Lobby;
            self.schedule_queue(now, slot);
        }
        Ok(())
    }

    /// The timeline sample at `now`.
    fn sample(&self, now: u64, curves: &[Curve], forecast: Option<&Vec<Curve>>, me: &mut Measure) -> Sample {
        let t_s = now as f64 / 1000.0;
        let dt = ((now - me.last_sample) as f64 / 1000.0).max(1e-3);
        me.last_sample = now;
        let pct = |q: f64| {
            (!me.interval_waits.is_empty()).then(|| me.interval_waits.value_at_quantile(q) as f64 / 1000.0)
        };
        let queue = self.mm.map(|m| m.queue.as_str()).unwrap_or_default();
        let sample = Sample {
            t_s,
            regions: (0..self.s.regions.len())
                .map(|r| RegionSample {
                    forecast: forecast.map(|f| f[r].target_at(t_s).round() as u64),
                    target: curves[r].target_at(t_s).round() as u64,
                    players: self.online[r].len() as u64,
                    waiting: self
                        .core
                        .as_ref()
                        .map_or(0, |c| c.depth(queue, &self.s.regions[r].name, r)),
                    ..RegionSample::default()
                })
                .collect(),
            match_wait_p50_s: pct(0.5),
            match_wait_p95_s: pct(0.95),
            matches_per_s: Some(me.interval_matches as f64 / dt),
            ..Sample::default()
        };
        me.interval_waits.reset();
        me.interval_matches = 0;
        sample
    }
}

/// Runs `scenario` in model mode and returns the results (not yet written).
pub fn run(scenario: &Scenario, opts: &RunOptions) -> anyhow::Result<Results> {
    let wall = Instant::now();
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut w = world(scenario)?;
    let step_ms = w.step_ms;
    let curves: Vec<Curve> = scenario.curves(opts.scale);
    let forecast = scenario
        .rehearsal
        .changes_curves()
        .then(|| scenario.forecast_curves(opts.scale));
    let mut duration_ms = (scenario.duration_s() * 1000.0) as u64;
    if let Some(d) = opts.max_duration {
        duration_ms = duration_ms.min(d.as_millis() as u64);
    }
    let mut storms: Vec<(usize, Storm)> = curves
        .iter()
        .enumerate()
        .flat_map(|(r, c)| c.storms().iter().map(move |s| (r, *s)))
        .collect();
    storms.sort_by(|a, b| a.1.at_s.total_cmp(&b.1.at_s));
    let mut next_storm = 0;
    let mut me = Measure {
        waits: new_histogram(),
        spread: SpreadByWait::default(),
        interval_waits: new_histogram(),
        interval_matches: 0,
        tail: ModelTail::default(),
        timeline: Vec::new(),
        next_sample: scenario.sample_interval_ms,
        last_sample: 0,
        last_progress: Instant::now(),
    };
    let mut step = 0u64;
    loop {
        let now = step * step_ms;
        let t_s = now as f64 / 1000.0;
        w.fire_events(step, now)?;
        while let Some((r, storm)) = storms.get(next_storm).copied().filter(|(_, s)| s.at_s <= t_s) {
            next_storm += 1;
            w.storm(now, r, storm);
        }
        w.follow_curves(now, t_s, &curves);
        w.match_round(now, t_s, &mut me)?;
        let done = now >= duration_ms;
        if now >= me.next_sample || done {
            let sample = w.sample(now, &curves, forecast.as_ref(), &mut me);
            if (opts.progress || opts.progress_log.is_some())
                && (me.last_progress.elapsed() >= Duration::from_secs(1) || done)
            {
                me.last_progress = Instant::now();
                opts.report_progress(progress_line(&sample, scenario, &w.totals, wall.elapsed()));
            }
            me.timeline.push(sample);
            while me.next_sample <= now {
                me.next_sample += scenario.sample_interval_ms;
            }
        }
        if done {
            break;
        }
        step += 1;
    }
    let mut results = finish(scenario, opts, w, me, duration_ms)?;
    results.started_unix_ms = started_unix_ms;
    results.wall_s = wall.elapsed().as_secs_f64();
    Ok(results)
}

/// The world a scenario starts from (the matchmaker opened, nobody online).
fn world(scenario: &Scenario) -> anyhow::Result<World<'_>> {
    let mm = scenario.matchmaking.as_ref();
    let step_ms = mm.map_or(1_000, |m| m.round_interval_ms);
    let core = match mm {
        Some(m) => {
            let cfg = matchmaker_config(scenario, m);
            Some(match m.store {
                Some(st) => Engine::Store(Box::new(
                    StorePool::open(&cfg, st, step_ms).context("store-backed pool")?,
                )),
                None => Engine::Core(Box::new(
                    MatchCore::new(&cfg).context("matchmaker configuration")?,
                )),
            })
        }
        None => None,
    };
    let weights = scenario.behaviour.weights();
    let total_w: f64 = weights.iter().sum();
    let mm_share = if total_w > 0.0 {
        scenario.behaviour.matchmaking / total_w
    } else {
        0.0
    };
    Ok(World {
        s: scenario,
        mm,
        core,
        players: Vec::new(),
        free: Vec::new(),
        online: vec![Vec::new(); scenario.regions.len()],
        wheel: BTreeMap::new(),
        fired: 0,
        step_ms,
        lobby_mean_ms: (mm.is_some() && mm_share > 0.0).then(|| scenario.session.think_ms.mean() / mm_share),
        rng: StdRng::seed_from_u64(scenario.seed),
        totals: Totals::default(),
    })
}

/// The results of a finished run (wall time and start filled in by the caller).
fn finish(
    scenario: &Scenario,
    opts: &RunOptions,
    w: World,
    mut me: Measure,
    duration_ms: u64,
) -> anyhow::Result<Results> {
    let step_ms = w.step_ms;
    let mut notes = vec![format!(
        "Model mode: virtual time in steps of {step_ms} ms; logins, requests and the network are not modelled (live mode does that)."
    )];
    match w.lobby_mean_ms {
        Some(ms) => notes.push(format!(
            "Players queue after an exponential lobby time with mean {:.1} s (think time mean ÷ matchmaking share of the behaviour mix).",
            ms / 1000.0
        )),
        None => notes.push("No matchmaking in this scenario (no [matchmaking] section or a zero matchmaking weight): only the population is modelled.".into()),
    }
    if w.mm.is_some() {
        notes.extend(me.spread.report());
        for line in me.spread.report() {
            eprintln!("{line}");
        }
    }
    let mut operations = summarise([(Op::MatchWait, std::mem::replace(&mut me.waits, new_histogram()))]);
    let (target, model_store) = match w.core {
        Some(Engine::Store(pool)) => {
            let (sum, ops) = pool.finish()?;
            for line in sum.notes() {
                eprintln!("{line}");
                notes.push(line);
            }
            operations.extend(ops);
            ("in-process store-backed matchmaker (outpost-backend: embedded store, leased partitions, workers)", Some(sum))
        }
        _ => ("in-process matchmaker core (outpost-backend)", None),
    };
    (me.tail.peak_players, me.tail.peak_at_s) = crate::annotations::peak_players(&me.timeline);
    let mut results = Results {
        format: FORMAT.into(),
        mode: "model".into(),
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        scale: opts.scale,
        regions: scenario.regions.iter().map(|r| r.name.clone()).collect(),
        started_unix_ms: 0,
        wall_s: 0.0,
        sim_s: duration_ms as f64 / 1000.0,
        target: target.into(),
        totals: w.totals,
        operations,
        errors: BTreeMap::new(),
        errors_by_op: BTreeMap::new(),
        accounting: BTreeMap::new(),
        expected_outcomes: scenario.accounting.expected.clone(),
        timeline: me.timeline,
        slo: Vec::new(),
        notes,
        login_queue: None,
        phases: crate::annotations::phases(scenario),
        gateway_source: None,
        model_tail: Some(me.tail),
        model_store,
    };
    results.evaluate_slos(scenario);
    Ok(results)
}

fn progress_line(s: &Sample, scenario: &Scenario, t: &Totals, wall: Duration) -> String {
    let regions: Vec<String> = s
        .regions
        .iter()
        .zip(&scenario.regions)
        .map(|(r, spec)| format!("{} {}/{} q{}", spec.name, r.players, r.target, r.waiting))
        .collect();
    let f = |v: Option<f64>| v.map_or("-".into(), crate::units::fmt_s);
    format!(
        "[virtual {:>7.0}s | wall {:>5.1}s] players {} | matches {} ({:.0}/s) | wait p50 {} p95 {}",
        s.t_s,
        wall.as_secs_f64(),
        regions.join(" "),
        t.matches,
        s.matches_per_s.unwrap_or(0.0),
        f(s.match_wait_p50_s),
        f(s.match_wait_p95_s),
    )
}

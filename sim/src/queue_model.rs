//! Queue mode: the backend's region login queue (`outpost_backend::queue`,
//! the code the gateways run) on a real embedded store in a temporary
//! directory, driven on virtual time by the first region's curve, to check a
//! launch where arrivals exceed the admission budget many times over.
//!
//! Virtual time advances in steps of `login_queue.admit_tick_ms`. Each step:
//!
//! 1. due events fire: a queued player's connection drops (its place is
//!    detached) and later comes back through the next gateway with its queue
//!    token; a queued player gives up (detached, never back); a session ends
//!    (clean logout: its slot is freed);
//! 2. new players arrive until players present (waiting or online) reach the
//!    curve's target; each logs in through the next gateway (round robin):
//!    admitted at once, or given a place; at the end of the arrivals, the
//!    places enqueued in this step get their first ETA as the gateway computes
//!    it (position in a view that shows the place, read afresh if the last
//!    one does not; the measured rate);
//! 3. every gateway runs one admission tick (they serialize in the store);
//! 4. every `update_interval_ms`: the expiry sweep, one view of the queue,
//!    the positions of every connected queued player (a position that goes
//!    up is a FIFO violation), and a poll of those the view no longer shows
//!    (admitted: the wait and |first ETA − wait| are recorded; gone: a lost
//!    place).
//!
//! FIFO is checked on the admissions themselves: each admitted place's
//! enqueue stamp must be above every earlier admitted one. What is not
//! modelled: QUIC, the login's authentication, gateway CPU (live mode does
//! those); the clock of the store's transactions is real, so the run also
//! shows what the queue costs per virtual second.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use outpost_backend::keyspace::RegionName;
use outpost_backend::queue::{
    Budget, Entry, EtaEstimator, Place, PlaceStatus, Queue, QueueKeys, QueueSettings, QueueView, Stamp,
};
use outpost_backend::store::embedded::{EmbeddedConfig, EmbeddedStore, PersistMode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::curve::Curve;
use crate::dist::Dist;
use crate::record::{new_histogram, Totals};
use crate::results::{HistSummary, QueueSample, QueueSummary, RegionSample, Results, Sample, FORMAT};
use crate::scenario::{LoginQueueSpec, Scenario};
use crate::RunOptions;

/// Virtual time starts here (Unix ms), so queue tokens carry plausible times.
const T0: u64 = 1_700_000_000_000;

enum State {
    Waiting(Box<Wait>),
    Online(u64),
    Gone,
}

struct Wait {
    place: Place,
    enqueued_ms: u64,
    first_eta_ms: Option<u64>,
    /// Enqueued this step; its first `Queued` is answered at the step's end.
    needs_first_eta: bool,
    last_position: Option<u32>,
    connected: bool,
    away_since_ms: u64,
}

struct Player {
    name: String,
    gateway: usize,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Drop,
    Reconnect,
    GiveUp,
    End,
}

struct World {
    q: Queue<EmbeddedStore>,
    spec: LoginQueueSpec,
    session: Dist,
    holders: Vec<String>,
    players: Vec<Player>,
    by_name: HashMap<String, usize>,
    events: BinaryHeap<Reverse<(u64, usize, Ev)>>,
    rng: StdRng,
    sum: QueueSummary,
    active: usize,
    view: QueueView,
    eta: EtaEstimator,
    last_admitted: Option<Stamp>,
    waits: Histogram<u64>,
    eta_errors: Histogram<u64>,
    interval_waits: Histogram<u64>,
    interval_eta_errors: Histogram<u64>,
    interval_admitted: u64,
    window: (u64, u64),
}

fn secs(rng: &mut StdRng, d: &Dist) -> u64 {
    (d.sample(rng).max(0.0) * 1000.0) as u64
}

impl World {
    fn schedule(&mut self, at: u64, i: usize, ev: Ev) {
        self.events.push(Reverse((at, i, ev)));
    }

    fn budget_rate(&self) -> u32 {
        self.view.budget.max_admissions_per_sec
    }

    fn first_eta(&self, stamp: Stamp) -> Option<u64> {
        let position = self.view.position(stamp).unwrap_or(self.view.len() as u32);
        (!self.view.budget.paused)
            .then(|| self.eta.eta_ms(position, self.budget_rate()))
            .flatten()
    }

    /// The first `Queued` of the places enqueued this step, as the gateway
    /// answers it (`driver/queue.rs`, `snapshot_showing`): a place must not
    /// get its first position from a view older than itself, so when the last
    /// view does not show it the gateway reads the queue afresh, one read at a
    /// time, and logins enqueued meanwhile share that read. Here: one fresh
    /// view per step for all the places it enqueued.
    async fn answer_new_places(&mut self) -> anyhow::Result<()> {
        let pending: Vec<usize> = (0..self.players.len())
            .filter(|&i| matches!(&self.players[i].state, State::Waiting(w) if w.needs_first_eta))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let shown = |w: &World, i: usize| match &w.players[i].state {
            State::Waiting(wt) => w.view.position(wt.place.stamp).is_some(),
            _ => true,
        };
        if !pending.iter().all(|&i| shown(self, i)) {
            self.view = self.q.view().await?;
        }
        for i in pending {
            let eta = match &self.players[i].state {
                State::Waiting(w) => self.first_eta(w.place.stamp),
                _ => continue,
            };
            if let State::Waiting(w) = &mut self.players[i].state {
                w.first_eta_ms = eta;
                w.needs_first_eta = false;
            }
        }
        Ok(())
    }

    fn wait_for(&mut self, place: Place, now: u64) -> Box<Wait> {
        Box::new(Wait {
            place,
            enqueued_ms: now,
            first_eta_ms: None,
            needs_first_eta: true,
            last_position: None,
            connected: true,
            away_since_ms: now,
        })
    }

    async fn arrive(&mut self, now: u64) -> anyhow::Result<()> {
        let i = self.players.len();
        let name = format!("player-{i:08}");
        let gateway = i % self.holders.len();
        self.sum.arrivals += 1;
        self.active += 1;
        let state = match self.q.enter(&name, &self.holders[gateway], None, now).await? {
            Entry::Admitted { slot, .. } => {
                self.sum.direct += 1;
                self.interval_admitted += 1;
                self.count_window(now, 1);
                let len = secs(&mut self.rng, &self.session);
                self.schedule(now + len.max(1), i, Ev::End);
                State::Online(slot)
            }
            Entry::Queued(place) => {
                self.sum.queued += 1;
                let roll: f64 = self.rng.gen();
                if roll < self.spec.drop_share {
                    let at = secs(&mut self.rng, &self.spec.drop_after_s);
                    self.schedule(now + at, i, Ev::Drop);
                } else if roll < self.spec.drop_share + self.spec.give_up_share {
                    let at = secs(&mut self.rng, &self.spec.give_up_after_s);
                    self.schedule(now + at, i, Ev::GiveUp);
                }
                State::Waiting(self.wait_for(place, now))
            }
            Entry::Busy => bail!("a queue-aware login was answered Busy"),
        };
        self.by_name.insert(name.clone(), i);
        self.players.push(Player { name, gateway, state });
        Ok(())
    }

    fn count_window(&mut self, now: u64, n: u64) {
        let w = (now - T0) / 1_000;
        if self.window.0 != w {
            self.window = (w, 0);
        }
        self.window.1 += n;
        self.sum.max_admissions_per_window = self.sum.max_admissions_per_window.max(self.window.1);
    }

    /// A queued player got its slot at `now` (seen by its gateway).
    fn admitted(&mut self, i: usize, slot: u64, now: u64) {
        let State::Waiting(w) = std::mem::replace(&mut self.players[i].state, State::Online(slot)) else {
            return;
        };
        let wait = now.saturating_sub(w.enqueued_ms);
        for h in [&mut self.waits, &mut self.interval_waits] {
            h.saturating_record(wait.max(1));
        }
        if let Some(eta) = w.first_eta_ms {
            let err = eta.abs_diff(wait).max(1);
            for h in [&mut self.eta_errors, &mut self.interval_eta_errors] {
                h.saturating_record(err);
            }
        }
        self.sum.admitted_from_queue += 1;
        let len = secs(&mut self.rng, &self.session);
        self.schedule(now + len.max(1), i, Ev::End);
    }

    fn gone(&mut self, i: usize) {
        self.players[i].state = State::Gone;
        self.active -= 1;
    }

    /// One admission tick per gateway.
    async fn ticks(&mut self, now: u64) -> anyhow::Result<()> {
        for _ in 0..self.holders.len() {
            let names = self.q.admit_tick(now).await?;
            self.interval_admitted += names.len() as u64;
            self.count_window(now, names.len() as u64);
            for name in names {
                let Some(&i) = self.by_name.get(&name) else {
                    bail!("admitted an unknown player {name}");
                };
                if let State::Waiting(w) = &self.players[i].state {
                    if self.last_admitted.is_some_and(|last| w.place.stamp <= last) {
                        self.sum.fifo_violations += 1;
                    }
                    self.last_admitted = Some(w.place.stamp);
                }
            }
        }
        Ok(())
    }

    /// The gateways' update: sweep, view, positions, polls.
    async fn update(&mut self, now: u64) -> anyhow::Result<()> {
        self.q.sweep(now).await?;
        self.view = self.q.view().await?;
        self.eta.sample(now, self.view.admissions_total);
        self.sum.peak_length = self.sum.peak_length.max(self.view.len() as u64);
        for i in 0..self.players.len() {
            let State::Waiting(w) = &mut self.players[i].state else {
                continue;
            };
            if !w.connected {
                continue;
            }
            if let Some(pos) = self.view.position(w.place.stamp) {
                if w.last_position.is_some_and(|last| pos > last) {
                    self.sum.position_increases += 1;
                }
                w.last_position = Some(pos);
                continue;
            }
            let place = w.place.clone();
            let holder = self.holders[self.players[i].gateway].clone();
            match self.q.poll(&place, &holder, now).await? {
                PlaceStatus::Admitted { slot } => self.admitted(i, slot, now),
                PlaceStatus::Waiting => {}
                PlaceStatus::Gone => {
                    self.sum.lost_places += 1;
                    self.gone(i);
                }
            }
        }
        Ok(())
    }

    fn sample(&mut self, t_s: f64, dt: f64, target: f64) -> Sample {
        let (mut online, mut waiting) = (0, 0);
        for p in &self.players {
            match p.state {
                State::Online(_) => online += 1,
                State::Waiting(_) => waiting += 1,
                State::Gone => {}
            }
        }
        let pct =
            |h: &Histogram<u64>, q: f64| (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0);
        let s = Sample {
            t_s,
            regions: vec![RegionSample {
                target: target.round() as u64,
                players: online,
                waiting,
                ..RegionSample::default()
            }],
            logins_per_s: self.interval_admitted as f64 / dt,
            queue: Some(QueueSample {
                length: self.view.len() as u64,
                slots_used: self.view.used,
                admissions_per_s: self.interval_admitted as f64 / dt,
                wait_p50_s: pct(&self.interval_waits, 0.5),
                wait_p95_s: pct(&self.interval_waits, 0.95),
                eta_error_p50_s: pct(&self.interval_eta_errors, 0.5),
                eta_error_p95_s: pct(&self.interval_eta_errors, 0.95),
            }),
            ..Sample::default()
        };
        self.interval_waits.reset();
        self.interval_eta_errors.reset();
        self.interval_admitted = 0;
        s
    }
}

fn scaled(v: u32, scale: f64) -> u32 {
    ((f64::from(v) * scale).round() as u32).max(1)
}

/// Runs `scenario` (it needs a `[login_queue]` section) in queue mode.
pub fn run(scenario: &Scenario, opts: &RunOptions) -> anyhow::Result<Results> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(scenario, opts))
}

async fn run_async(scenario: &Scenario, opts: &RunOptions) -> anyhow::Result<Results> {
    let spec = scenario
        .login_queue
        .clone()
        .context("queue mode needs a [login_queue] section")?;
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let wall = Instant::now();
    // The store's directory, removed when the run is over (not before).
    let dir = tempfile::tempdir()?;
    let mut w = World::open(dir.path(), scenario, opts, spec).await?;
    let curve: Curve = scenario.curves(opts.scale).swap_remove(0);
    let mut duration_ms = (scenario.duration_s() * 1000.0) as u64;
    if let Some(d) = opts.max_duration {
        duration_ms = duration_ms.min(d.as_millis() as u64);
    }
    let clock = RunClock {
        started_unix_ms,
        wall,
        duration_ms,
    };
    w.eta.sample(T0, 0);
    let timeline = w.run_steps(&curve, &clock, scenario, opts).await?;
    w.sum.abandoned = w.view.abandoned_total;
    let mut results = w.results(scenario, opts, &clock, timeline);
    results.evaluate_slos(scenario);
    Ok(results)
}

/// When the run started (Unix ms, and on the wall clock) and how long it
/// simulates (virtual ms).
struct RunClock {
    started_unix_ms: u64,
    wall: Instant,
    duration_ms: u64,
}

impl World {
    /// The queue on a fresh embedded store in `dir`, with the scenario's
    /// budget (after `--scale`), and the world around it, nobody arrived yet.
    async fn open(
        dir: &std::path::Path,
        scenario: &Scenario,
        opts: &RunOptions,
        spec: LoginQueueSpec,
    ) -> anyhow::Result<World> {
        let mut cfg = EmbeddedConfig::new(dir);
        cfg.persist = PersistMode::Buffered;
        let store = EmbeddedStore::open(cfg).await?;
        let settings = QueueSettings {
            place_grace: Duration::from_secs(spec.place_grace_s),
            ..QueueSettings::default()
        };
        let key: [u8; 32] = StdRng::seed_from_u64(scenario.seed ^ 0x5155_4555).gen();
        let keys = QueueKeys::new("sim", [("sim", &key)])?;
        let q = Queue::new(store, RegionName::new("sim")?, settings, keys)?;
        let budget = Budget {
            max_sessions: scaled(spec.max_sessions, opts.scale),
            max_admissions_per_sec: scaled(spec.max_admissions_per_sec, opts.scale),
            paused: false,
            updated_ms: 0,
        };
        q.set_budget(budget, T0).await?;
        let view = q.view().await?;
        Ok(World {
            q,
            session: scenario.session.length_s.clone(),
            holders: (0..spec.gateways).map(|g| format!("sim-gw-{g}")).collect(),
            players: Vec::new(),
            by_name: HashMap::new(),
            events: BinaryHeap::new(),
            rng: StdRng::seed_from_u64(scenario.seed),
            sum: QueueSummary {
                budget_max_sessions: budget.max_sessions,
                budget_admissions_per_sec: budget.max_admissions_per_sec,
                ..QueueSummary::default()
            },
            active: 0,
            view,
            eta: EtaEstimator::new(Duration::from_secs(spec.eta_window_s)),
            last_admitted: None,
            waits: new_histogram(),
            eta_errors: new_histogram(),
            interval_waits: new_histogram(),
            interval_eta_errors: new_histogram(),
            interval_admitted: 0,
            window: (0, 0),
            spec,
        })
    }

    /// Steps virtual time from 0 to `duration_ms` (the module doc's four
    /// parts of a step), sampling the timeline as the scenario says.
    async fn run_steps(
        &mut self,
        curve: &Curve,
        clock: &RunClock,
        scenario: &Scenario,
        opts: &RunOptions,
    ) -> anyhow::Result<Vec<Sample>> {
        let step = self.spec.admit_tick_ms;
        let update_every = self.spec.update_interval_ms;
        let (mut timeline, mut next_sample, mut last_sample) = (Vec::new(), 0u64, 0u64);
        let mut last_progress = Instant::now();
        let mut elapsed = 0u64;
        loop {
            let now = T0 + elapsed;
            while let Some(&Reverse((at, i, ev))) = self.events.peek() {
                if at > now {
                    break;
                }
                self.events.pop();
                self.event(now, i, ev).await?;
            }
            let t_s = elapsed as f64 / 1000.0;
            let target = curve.target_at(t_s);
            while (self.active as f64) < target.round() {
                self.arrive(now).await?;
            }
            self.answer_new_places().await?;
            self.ticks(now).await?;
            let done = elapsed >= clock.duration_ms;
            if elapsed % update_every == 0 || done {
                self.update(now).await?;
            }
            if elapsed >= next_sample || done {
                let dt = ((elapsed - last_sample) as f64 / 1000.0).max(1e-3);
                last_sample = elapsed;
                let s = self.sample(t_s, dt, target);
                if opts.progress && (last_progress.elapsed() >= Duration::from_secs(1) || done) {
                    last_progress = Instant::now();
                    self.print_progress(t_s, clock.wall, &s);
                }
                timeline.push(s);
                while next_sample <= elapsed {
                    next_sample += scenario.sample_interval_ms;
                }
            }
            if done {
                return Ok(timeline);
            }
            elapsed += step;
        }
    }

    fn print_progress(&self, t_s: f64, wall: Instant, s: &Sample) {
        let qs = s.queue.as_ref().expect("queue sample");
        eprintln!(
            "[virtual {t_s:>6.0}s | wall {:>5.1}s] queue {} · online {} · admitted {:.0}/s · lost {} · fifo {}",
            wall.elapsed().as_secs_f64(),
            qs.length,
            s.regions[0].players,
            qs.admissions_per_s,
            self.sum.lost_places,
            self.sum.fifo_violations + self.sum.position_increases
        );
    }

    /// The run's results, before the SLO verdicts.
    fn results(
        self,
        scenario: &Scenario,
        opts: &RunOptions,
        clock: &RunClock,
        timeline: Vec<Sample>,
    ) -> Results {
        let region = &scenario.regions[0].name;
        let notes = self.notes(scenario);
        let mut operations = std::collections::BTreeMap::new();
        operations.insert("queue_wait".to_owned(), HistSummary::new(&self.waits, "ms"));
        operations.insert(
            "queue_eta_error".to_owned(),
            HistSummary::new(&self.eta_errors, "ms"),
        );
        let totals = Totals {
            players_started: self.sum.arrivals,
            logins_ok: self.sum.direct + self.sum.admitted_from_queue,
            players_logged_in: self.sum.direct + self.sum.admitted_from_queue,
            ..Totals::default()
        };
        Results {
            format: FORMAT.into(),
            mode: "queue".into(),
            scenario: scenario.name.clone(),
            description: scenario.description.clone(),
            scale: opts.scale,
            regions: vec![region.clone()],
            started_unix_ms: clock.started_unix_ms,
            wall_s: clock.wall.elapsed().as_secs_f64(),
            sim_s: clock.duration_ms as f64 / 1000.0,
            target: "in-process login queue (outpost-backend) on an embedded store".into(),
            totals,
            operations,
            errors: std::collections::BTreeMap::new(),
            errors_by_op: std::collections::BTreeMap::new(),
            accounting: std::collections::BTreeMap::new(),
            expected_outcomes: Vec::new(),
            timeline,
            slo: Vec::new(),
            notes,
            login_queue: Some(self.sum),
            phases: crate::annotations::phases(scenario),
            gateway_source: None,
            model_tail: None,
            model_store: None,
        }
    }

    /// How the run was modelled, for the report.
    fn notes(&self, scenario: &Scenario) -> Vec<String> {
        let region = &scenario.regions[0].name;
        vec![
            format!(
                "Queue mode: the backend's login queue on an embedded store (buffered), virtual time in steps of {} ms, {} gateways each ticking every step; arrivals follow region {region:?}'s curve{}.",
                self.spec.admit_tick_ms,
                self.holders.len(),
                if scenario.regions.len() > 1 { " (other regions are ignored)" } else { "" }
            ),
            format!(
                "Budget {} slots, {} admissions/s (after --scale); updates every {} ms; ETA from the admission rate measured over {} s.",
                self.sum.budget_max_sessions, self.sum.budget_admissions_per_sec, self.spec.update_interval_ms, self.spec.eta_window_s
            ),
            "Wait: from the place's enqueue (or a fresh place after an expiry) to the gateway seeing the admission at its next update; ETA error: |ETA of the first Queued − that wait|."
                .into(),
        ]
    }
}

#[path = "queue_model_events.rs"]
mod events;

#[cfg(test)]
#[path = "queue_model_tests.rs"]
mod tests;

//! One live virtual player: log in (retrying as the scenario says), then act
//! after each think time (ping, echo, state, matchmaking, inventory) until the
//! session length is reached or the controller ([`crate::live`]) says stop;
//! at a retry storm drop the connection and log in again.
//!
//! Per-player state is deliberately light: the SDK client, a seeded RNG, a
//! few counters and the last inventory write's key; no buffers of its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_client::{Client, ClientConfig, ClientError, Credentials, Event, Trust};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;

use crate::curve::StormMode;
use crate::inventory::{self, LastWrite};
use crate::live::Ctx;
use crate::record::{inc, Op, Recorder};
use crate::retry::{retry_delay, Attempt};

mod session;
use session::{set_connected, Idle, Session};

/// How long a live player waits for a match before cancelling its ticket.
const MATCH_WAIT_LIMIT: Duration = Duration::from_secs(30);

/// A storm order for one player: log in again following this.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StormOrder {
    pub started: Instant,
    pub until: Instant,
    pub mode: StormMode,
    pub interval: Duration,
    /// A region outage: drop the connection and leave (a neighbour takes over).
    pub moved: bool,
}

/// The controller's handle on one player.
#[derive(Debug, Default)]
pub(crate) struct PlayerCtl {
    pub stop: AtomicBool,
    pub done: AtomicBool,
    pub connected: AtomicBool,
    pub storm: Mutex<Option<StormOrder>>,
    pub notify: Notify,
}

impl PlayerCtl {
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn take_storm(&self) -> Option<StormOrder> {
        self.storm.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Sleeps `d`, waking early when the controller signals; false when told to stop.
async fn pause(ctl: &PlayerCtl, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = ctl.notify.notified() => {}
    }
    !ctl.stopping()
}

/// How a login retries: after a storm's drop (its order), and whether the
/// player runs an old client (its fixed retry period, ms).
#[derive(Debug, Clone, Copy)]
struct Retrying {
    storm: Option<StormOrder>,
    old_client: Option<u64>,
}

/// Logs in, retrying as the scenario (or a storm) says. `None`: gave up or stopped.
async fn login(
    ctx: &Ctx,
    ctl: &PlayerCtl,
    region: usize,
    n: u64,
    creds: &Credentials,
    rng: &mut StdRng,
    how: Retrying,
) -> Option<Client> {
    let Retrying { storm, old_client } = how;
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
    config.endpoint = ctx.endpoint_for(n);
    let mut attempt = 0u32;
    if let Some(s) = storm {
        // The first attempt after a storm: all at once (lockstep) or spread (jitter).
        let first = match (s.mode, old_client) {
            (_, Some(ms)) => crate::retry::old_client_delay(ms, s.started.duration_since(ctx.run_start)),
            (StormMode::Lockstep, None) => s.interval,
            (StormMode::Jitter, None) => s.interval.mul_f64(rng.gen::<f64>()),
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
        let since_start = now.duration_since(ctx.run_start);
        let delay = match storm {
            Some(s) if now >= s.until => return give_up(rec),
            Some(_) if old_client.is_some() => {
                crate::retry::old_client_delay(old_client.unwrap_or(1_000), since_start)
            }
            Some(s) => match s.mode {
                StormMode::Lockstep => {
                    let since = now.duration_since(s.started).as_nanos();
                    let step = s.interval.as_nanos().max(1);
                    Duration::from_nanos(((since / step + 1) * step - since) as u64)
                }
                StormMode::Jitter => s.interval.mul_f64(rng.gen::<f64>()),
            },
            None => {
                if attempt >= retry.max_attempts || !err.is_retryable() {
                    return give_up(rec);
                }
                match old_client {
                    Some(ms) => crate::retry::old_client_delay(ms, since_start),
                    None => retry_delay(
                        retry,
                        Attempt {
                            number: attempt,
                            impatient,
                            retry_after: err.retry_after(),
                            since_start,
                        },
                        rng,
                    ),
                }
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
    Inventory,
}

fn pick(weights: &[f64; 6], rng: &mut StdRng) -> Option<Action> {
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
        Action::Inventory,
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

/// One player, start to end; the controller's `ctl` is marked done at the end.
pub(crate) async fn player(ctx: Arc<Ctx>, region: usize, n: u64, ctl: Arc<PlayerCtl>) {
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
    // Drawn only with the knob set, so other scenarios keep their draws.
    let old_client = sc
        .rehearsal
        .old_clients
        .filter(|_| crate::rehearsal::is_old_client(&sc.rehearsal, rng.gen::<f64>()))
        .map(|o| o.interval_ms);
    let who = Who {
        region,
        n,
        creds,
        old_client,
    };
    let Some(client) = who.login(ctx, ctl, &mut rng, None).await else {
        return;
    };
    inc(&rec.counters.players_logged_in);
    let mut s = Session::new(client);
    set_connected(ctl, true);
    let weights = sc.behaviour_of(region).weights();
    let mut actions = 0u32;
    // Kept across a storm's re-login: a replay then re-sends the previous
    // connection's write, as a game retrying after a reconnect would.
    let mut written = Written::default();
    loop {
        if !s.drain_events(rec, ctl) {
            // The gateway or the network ended the session (counted there).
            set_connected(ctl, false);
            return;
        }
        if ctl.stopping() || Instant::now() >= session_end {
            break;
        }
        if let Some(order) = ctl.take_storm() {
            let Some(next) = storm_relogin(ctx, ctl, &who, &mut rng, s, order).await else {
                return;
            };
            s = next;
            set_connected(ctl, true);
            continue;
        }
        if sc.session.max_actions.is_some_and(|m| actions >= m) {
            // Away from keyboard until the session ends (or the controller calls).
            if let Idle::Ended = s.idle_until(session_end, rec, ctl).await {
                set_connected(ctl, false);
                return;
            }
            continue;
        }
        let think = Duration::from_secs_f64(sc.session.think_ms.sample(&mut rng) / 1000.0);
        let wake = (Instant::now() + think).min(session_end);
        match s.idle_until(wake, rec, ctl).await {
            Idle::Elapsed => {}
            Idle::Called => continue,
            Idle::Ended => {
                set_connected(ctl, false);
                return;
            }
        }
        let Some(action) = pick(&weights, &mut rng) else {
            continue;
        };
        actions += 1;
        // Boxed: an action (a request, a match wait) is the largest state of
        // a player but live a moment every think time; inline, every
        // player's task would keep room for it for its whole life.
        Box::pin(act(ctx, ctl, region, &mut s, action, &mut written, &mut rng)).await;
    }
    set_connected(ctl, false);
    inc(&rec.counters.sessions_completed);
    rec.count_ok(Op::Session);
    let _ = tokio::time::timeout(Duration::from_secs(2), s.client.close()).await;
}

/// Who logs in, the same for every login of one player.
struct Who {
    region: usize,
    n: u64,
    creds: Credentials,
    /// An old client's fixed retry period (ms).
    old_client: Option<u64>,
}

impl Who {
    /// Logs in (after a storm's drop: following its order).
    async fn login(
        &self,
        ctx: &Ctx,
        ctl: &PlayerCtl,
        rng: &mut StdRng,
        storm: Option<StormOrder>,
    ) -> Option<Client> {
        let how = Retrying {
            storm,
            old_client: self.old_client,
        };
        // Logins are boxed: the SDK's connect future (handshakes, login, queue
        // wait) is the largest state of a player, but only live while logging in;
        // inline, every player's task would reserve room for it for its lifetime.
        Box::pin(login(ctx, ctl, self.region, self.n, &self.creds, rng, how)).await
    }
}

/// A storm's drop: the connection goes without a goodbye, then the player
/// logs in again as the order says. `None`: the player is gone (moved to a
/// neighbour by an outage, gave up or was stopped).
async fn storm_relogin(
    ctx: &Ctx,
    ctl: &PlayerCtl,
    who: &Who,
    rng: &mut StdRng,
    s: Session,
    order: StormOrder,
) -> Option<Session> {
    let rec = &ctx.rec;
    inc(&rec.counters.storm_drops);
    set_connected(ctl, false);
    // Gone without a goodbye: the gateway only notices through the idle
    // timeout or the replacing login. The player ended it: not an error.
    s.client.debug_kill_connection();
    drop(s);
    rec.count_ok(Op::Session);
    if order.moved {
        // A region outage: a neighbour's curve takes this player over.
        inc(&rec.counters.outage_drops);
        return None;
    }
    let client = who.login(ctx, ctl, rng, Some(order)).await?;
    Some(Session::new(client))
}

/// What a player's writes left behind, for the next writes.
#[derive(Default)]
struct Written {
    /// The state document's version, for the next compare-and-set.
    version: u64,
    /// The last inventory write, for a replay.
    last_write: Option<LastWrite>,
}

/// Performs one action and records how it went.
async fn act(
    ctx: &Ctx,
    ctl: &PlayerCtl,
    region: usize,
    s: &mut Session,
    action: Action,
    written: &mut Written,
    rng: &mut StdRng,
) {
    let rec = &ctx.rec;
    let sc = &ctx.scenario;
    let behaviour = sc.behaviour_of(region);
    let t0 = Instant::now();
    let (op, res) = match action {
        Action::Ping => (Op::Ping, s.client.ping().await.map(|_| ())),
        Action::Echo => (
            Op::Echo,
            s.client
                .echo(vec![0x5a; behaviour.echo_bytes], 0)
                .await
                .map(|_| ()),
        ),
        Action::StateLoad => (
            Op::StateLoad,
            async { s.state().await?.list().await }.await.map(|_| ()),
        ),
        Action::StateSave => (
            Op::StateSave,
            state_save(s, behaviour.state_bytes, &mut written.version).await,
        ),
        Action::Matchmaking => {
            let queue = sc.matchmaking.as_ref().map_or("duel", |m| m.queue.as_str());
            // A Conflict (the previous match still open) and a wait the
            // player left (Cancelled) are expected outcomes by default.
            match match_wait(s, ctl, queue).await {
                Ok(()) => rec.ok(Op::MatchWait, t0.elapsed()),
                Err(code) => {
                    rec.err_code(Op::MatchWait, code);
                }
            }
            return;
        }
        Action::Inventory => {
            // Records itself (its kinds have their own histograms).
            let spec = sc.inventory_of(region);
            let Some(kind) = inventory::pick(spec, written.last_write.is_some(), rng) else {
                return;
            };
            match s.inventory().await {
                Ok(inv) => inventory::perform(&inv, spec, kind, &mut written.last_write, rec).await,
                Err(e) => {
                    inc(&rec.counters.inventory_ops);
                    rec.err(kind.op(), &e);
                }
            }
            return;
        }
    };
    match res {
        Ok(()) => rec.ok(op, t0.elapsed()),
        Err(e) => {
            rec.err(op, &e);
        }
    }
}

/// Writes the player's document at the version it last saw; on a conflict
/// re-reads the version for the next save.
async fn state_save(s: &mut Session, bytes: usize, version: &mut u64) -> Result<(), ClientError> {
    let value = vec![b'x'; bytes];
    let res = async { s.state().await?.set("sim", *version, value).await }.await;
    match res {
        Ok(v) => {
            *version = v;
            Ok(())
        }
        Err(e) => {
            if outpost_client::is_conflict(&e) {
                // Someone else (a replaced session) wrote: re-read the version.
                if let Ok(Some(doc)) = async { s.state().await?.get("sim").await }.await {
                    *version = doc.version;
                }
            }
            Err(e)
        }
    }
}

/// Queues, then waits for the MatchFound push (bounded), as a game would;
/// the caller records the time as the match wait. Err: the code the wait is
/// counted under.
async fn match_wait(s: &mut Session, ctl: &PlayerCtl, queue: &str) -> Result<(), String> {
    let code = |e: ClientError| crate::record::error_code(&e);
    let mm = s.client.matchmaking().await.map_err(code)?;
    let mut events = s.client.events();
    mm.queue_here(queue).await.map_err(code)?;
    let found = tokio::select! {
        f = tokio::time::timeout(MATCH_WAIT_LIMIT, async {
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
        }) => Some(matches!(f, Ok(true))),
        // Told to stop (or a storm): leave the queue now.
        _ = ctl.notify.notified() => None,
    };
    match found {
        Some(true) => Ok(()),
        Some(false) => {
            let _ = mm.cancel().await;
            Err("MatchWaitTimeout".into())
        }
        None => {
            let _ = mm.cancel().await;
            Err("Cancelled".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The player's task future, held for the player's whole life (issue 21:
    /// memory per simulated player). Measured 1,056 bytes (rustc 1.95; the
    /// layout is decided before LLVM, so debug and release agree); 2,208
    /// with an action and the SDK's `close()` (its telemetry flush) inline.
    #[test]
    fn a_player_task_stays_small() {
        fn size4<A, B, C, D, F: std::future::Future>(_: fn(A, B, C, D) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        let size = size4(player);
        eprintln!("player's future: {size} bytes");
        assert!(size <= 1_200, "player's future is {size} bytes (measured 1,056)");
    }

    #[test]
    fn pick_follows_weights() {
        let mut rng = StdRng::seed_from_u64(3);
        assert_eq!(pick(&[0.0; 6], &mut rng), None);
        let mut counts = [0usize; 6];
        for _ in 0..10_000 {
            let a = pick(&[1.0, 0.0, 3.0, 0.0, 0.0, 0.0], &mut rng).unwrap();
            counts[a as usize] += 1;
        }
        assert_eq!(counts[1] + counts[3] + counts[4] + counts[5], 0);
        let share = counts[2] as f64 / 10_000.0;
        assert!((share - 0.75).abs() < 0.03, "{share}");
    }
}

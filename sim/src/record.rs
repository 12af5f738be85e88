//! Measurements shared by every virtual player of a run: HDR histograms per
//! operation, the accounting of how every attempt ended (success, error or
//! expected outcome, by operation and code: [`crate::accounting`]), counters,
//! and per-region player gauges.
//!
//! Latencies are recorded in microseconds (match waits in model mode in
//! milliseconds), in histograms covering 1 unit .. 1 hour with 3 significant
//! digits. Recording takes a short mutex per operation; the timeline sampler
//! drains a second, per-interval histogram for percentiles over time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use outpost_client::ClientError;
use serde::{Deserialize, Serialize};

use crate::accounting::{AccountingSpec, OpAccount};

/// What a histogram measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `Client::connect` until `Welcome` (one successful attempt).
    Login,
    /// Ping / Pong on the control stream.
    Ping,
    /// Echo request on the echo channel.
    Echo,
    /// `StateList` on the state channel.
    StateLoad,
    /// `StateSet` (compare-and-set) on the state channel.
    StateSave,
    /// Wait from ticket creation to match (model mode; milliseconds).
    MatchWait,
    /// `InventoryBalances` on the inventory channel.
    InventoryBalances,
    /// `InventoryHistory` (one page, newest first).
    InventoryHistory,
    /// `InventoryGrant` with a fresh idempotency key.
    InventoryGrant,
    /// `InventoryPurchase` with a fresh idempotency key (declined ones included).
    InventoryPurchase,
    /// The session's last grant or purchase again, with its key.
    InventoryReplay,
    /// A session, counted when it ends: ok when the player ended it (logout,
    /// a storm's drop), an error `SessionEnded:<code>` when the gateway or the
    /// network did. No latency.
    Session,
}

impl Op {
    /// Every operation, in report order.
    pub const ALL: [Op; 12] = [
        Op::Login,
        Op::Ping,
        Op::Echo,
        Op::StateLoad,
        Op::StateSave,
        Op::MatchWait,
        Op::InventoryBalances,
        Op::InventoryHistory,
        Op::InventoryGrant,
        Op::InventoryPurchase,
        Op::InventoryReplay,
        Op::Session,
    ];

    /// Name in results and reports.
    pub fn name(self) -> &'static str {
        match self {
            Op::Login => "login",
            Op::Ping => "ping",
            Op::Echo => "echo",
            Op::StateLoad => "state_load",
            Op::StateSave => "state_save",
            Op::MatchWait => "match_wait",
            Op::InventoryBalances => "inventory_balances",
            Op::InventoryHistory => "inventory_history",
            Op::InventoryGrant => "inventory_grant",
            Op::InventoryPurchase => "inventory_purchase",
            Op::InventoryReplay => "inventory_replay",
            Op::Session => "session",
        }
    }

    /// Unit of the recorded values.
    pub fn unit(self) -> &'static str {
        match self {
            Op::MatchWait => "ms",
            _ => "us",
        }
    }

    /// Whether this is a request a player makes inside a session (counted in
    /// request rates and the request error rate).
    pub fn is_request(self) -> bool {
        !matches!(self, Op::Login | Op::MatchWait | Op::Session)
    }

    /// Whether this is an inventory operation.
    pub fn is_inventory(self) -> bool {
        matches!(
            self,
            Op::InventoryBalances
                | Op::InventoryHistory
                | Op::InventoryGrant
                | Op::InventoryPurchase
                | Op::InventoryReplay
        )
    }
}

/// A new histogram for 1 .. 3.6e9 units (1 µs .. 1 h, or 1 ms .. 41 days).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// The short code an error is counted under: the protocol's `ErrorCode` name
/// where the gateway sent one, else the SDK's error kind.
pub fn error_code(e: &ClientError) -> String {
    match e {
        ClientError::Rejected { code, .. } => format!("{code:?}"),
        ClientError::Kicked { code, .. } => format!("Kicked:{code:?}"),
        ClientError::Server(s) => format!("{:?}", s.code),
        ClientError::ChannelClosed(s) => format!("ChannelClosed:{:?}", s.code),
        ClientError::Timeout => "ClientTimeout".into(),
        ClientError::ConnectionLost(_) => "ConnectionLost".into(),
        ClientError::Closed => "ClientClosed".into(),
        ClientError::Protocol { code, .. } => format!("Protocol:{code:?}"),
        ClientError::RequestTooLarge { .. } => "RequestTooLarge".into(),
        ClientError::Connect(_) => "ConnectFailed".into(),
        ClientError::Config(_) => "Config".into(),
    }
}

tokio::task_local! {
    /// The region of the player task that is recording (live mode sets it
    /// around each player task), for the per-region timeline.
    pub static REGION: usize;
}

/// Run-wide counters (see [`Totals`] for their meaning).
#[derive(Debug, Default)]
pub struct Counters {
    pub players_started: AtomicU64,
    pub login_attempts: AtomicU64,
    pub logins_ok: AtomicU64,
    pub players_logged_in: AtomicU64,
    pub login_failures: AtomicU64,
    pub players_gave_up: AtomicU64,
    pub reconnects: AtomicU64,
    pub resumed: AtomicU64,
    pub storm_drops: AtomicU64,
    pub requests: AtomicU64,
    pub request_errors: AtomicU64,
    pub sessions_completed: AtomicU64,
    pub skipped_actions: AtomicU64,
    pub inventory_ops: AtomicU64,
    pub purchases_declined: AtomicU64,
    pub replays_verified: AtomicU64,
    pub outage_drops: AtomicU64,
}

/// Counters as written to the results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Virtual players started (each is a new account in live mode).
    pub players_started: u64,
    /// Login attempts (first tries and retries, storms included).
    pub login_attempts: u64,
    /// Successful logins.
    pub logins_ok: u64,
    /// Players whose first login (after retries) succeeded.
    pub players_logged_in: u64,
    /// Failed login attempts.
    pub login_failures: u64,
    /// Players that gave up logging in after `retry.max_attempts` failures
    /// (or, knocked off by a storm, when it ended).
    pub players_gave_up: u64,
    /// SDK reconnects (connection lost, GoAway) seen as events.
    pub reconnects: u64,
    /// Of those, reconnects the gateway resumed.
    pub resumed: u64,
    /// Sessions dropped by retry storms.
    pub storm_drops: u64,
    /// Requests made inside sessions (ping, echo, state, inventory).
    pub requests: u64,
    /// Requests that failed.
    pub request_errors: u64,
    /// Sessions that ended because their length was reached or the curve fell.
    pub sessions_completed: u64,
    /// Actions the scenario asked for that this mode cannot perform (live
    /// mode: matchmaking).
    pub skipped_actions: u64,
    /// Model mode: tickets created.
    pub tickets: u64,
    /// Model mode: matches formed.
    pub matches: u64,
    /// Inventory operations started (every `inventory_*` operation, failed
    /// ones included; also counted in `requests`).
    #[serde(default)]
    pub inventory_ops: u64,
    /// Purchases the ledger refused with `Conflict` (balance too small, stack
    /// full); in the accounting under `inventory_purchase` / `Conflict` (an
    /// expected outcome unless the scenario says otherwise).
    #[serde(default)]
    pub purchases_declined: u64,
    /// Replays answered with the original receipt (`duplicate`, same event id).
    #[serde(default)]
    pub replays_verified: u64,
    /// Attempts of every operation (logins, requests, match waits, sessions),
    /// the denominator of `slo.error_rate`.
    #[serde(default)]
    pub attempts: u64,
    /// Errors of every operation (expected outcomes excluded), the numerator
    /// of `slo.error_rate`: the figure the progress line, the summary and the
    /// report show.
    #[serde(default)]
    pub errors: u64,
    /// Expected outcomes of every operation (`[accounting] expected`).
    #[serde(default)]
    pub outcomes: u64,
    /// Players an outage moved off their region (`[rehearsal] outage`): their
    /// connection dropped, and the neighbour's curve took them over.
    #[serde(default)]
    pub outage_drops: u64,
}

/// Everything recorded during a run.
pub struct Recorder {
    hists: Vec<Mutex<Histogram<u64>>>,
    /// Requests (all request ops) since the last sample.
    interval: Mutex<Histogram<u64>>,
    ledger: Mutex<BTreeMap<Op, OpAccount>>,
    accounting: AccountingSpec,
    /// Per region: players started and not finished (connecting, retrying or in a session).
    pub alive: Vec<AtomicI64>,
    pub counters: Counters,
    /// Per region (of the recording task, see [`REGION`]): requests since
    /// the last sample, successful logins, failures.
    region_interval: Vec<Mutex<Histogram<u64>>>,
    pub region_logins: Vec<AtomicU64>,
    pub region_errors: Vec<AtomicU64>,
}

impl Recorder {
    /// A recorder for `regions` regions with the default accounting.
    pub fn new(regions: usize) -> Recorder {
        Recorder::with_accounting(regions, AccountingSpec::default())
    }

    /// A recorder for `regions` regions; `accounting` says which failure
    /// codes are expected outcomes.
    pub fn with_accounting(regions: usize, accounting: AccountingSpec) -> Recorder {
        Recorder {
            hists: Op::ALL.iter().map(|_| Mutex::new(new_histogram())).collect(),
            interval: Mutex::new(new_histogram()),
            ledger: Mutex::default(),
            accounting,
            alive: (0..regions).map(|_| AtomicI64::new(0)).collect(),
            counters: Counters::default(),
            region_interval: (0..regions).map(|_| Mutex::new(new_histogram())).collect(),
            region_logins: (0..regions).map(|_| AtomicU64::new(0)).collect(),
            region_errors: (0..regions).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The region of the recording task, if it has one of this recorder's.
    fn region(&self) -> Option<usize> {
        REGION
            .try_with(|r| *r)
            .ok()
            .filter(|r| *r < self.region_logins.len())
    }

    /// Takes region `r`'s per-interval request histogram, leaving an empty one.
    pub fn take_region_interval(&self, r: usize) -> Histogram<u64> {
        std::mem::replace(&mut *lock(&self.region_interval[r]), new_histogram())
    }

    fn idx(op: Op) -> usize {
        Op::ALL.iter().position(|o| *o == op).expect("listed")
    }

    /// Records one successful operation of `op` that took `d` (kept in
    /// `op`'s unit: microseconds, or milliseconds for match waits).
    pub fn ok(&self, op: Op, d: Duration) {
        let v = if op.unit() == "ms" {
            d.as_millis() as u64
        } else {
            d.as_micros() as u64
        }
        .max(1);
        self.record_value(op, v);
        self.count_ok(op);
        if op.is_request() {
            lock(&self.interval).saturating_record(v);
        }
        if let Some(r) = self.region() {
            if op.is_request() {
                lock(&self.region_interval[r]).saturating_record(v);
            } else if op == Op::Login {
                self.region_logins[r].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts a success of `op` without a latency (a session that ended well).
    pub fn count_ok(&self, op: Op) {
        {
            let mut l = lock(&self.ledger);
            let a = l.entry(op).or_default();
            a.attempts += 1;
            a.ok += 1;
        }
        if op.is_request() {
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records a raw value in `op`'s unit into its histogram (not counted as
    /// an attempt: callers that measure successes use [`Recorder::ok`]).
    pub fn record_value(&self, op: Op, v: u64) {
        lock(&self.hists[Self::idx(op)]).saturating_record(v.max(1));
    }

    /// Records a failed operation under its error code; returns whether it
    /// counted as an error (false: an expected outcome).
    pub fn err(&self, op: Op, e: &ClientError) -> bool {
        self.err_code(op, error_code(e))
    }

    /// Records a failure under an explicit code, as an error or, when the
    /// scenario's `[accounting]` says so, an expected outcome; returns
    /// whether it counted as an error.
    pub fn err_code(&self, op: Op, code: String) -> bool {
        let expected = self.accounting.is_expected(op, &code);
        {
            let mut l = lock(&self.ledger);
            let a = l.entry(op).or_default();
            a.attempts += 1;
            let m = if expected { &mut a.outcomes } else { &mut a.errors };
            *m.entry(code).or_default() += 1;
        }
        if op.is_request() {
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            if !expected {
                self.counters.request_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !expected {
            if let Some(r) = self.region() {
                self.region_errors[r].fetch_add(1, Ordering::Relaxed);
            }
        }
        !expected
    }

    /// Takes the per-interval request histogram, leaving an empty one.
    pub fn take_interval(&self) -> Histogram<u64> {
        std::mem::replace(&mut *lock(&self.interval), new_histogram())
    }

    /// A copy of `op`'s histogram.
    pub fn histogram(&self, op: Op) -> Histogram<u64> {
        lock(&self.hists[Self::idx(op)]).clone()
    }

    /// Total errors so far (expected outcomes excluded).
    pub fn error_total(&self) -> u64 {
        lock(&self.ledger).values().map(OpAccount::error_count).sum()
    }

    /// How every operation's attempts ended, by operation name.
    pub fn ledger(&self) -> BTreeMap<String, OpAccount> {
        lock(&self.ledger)
            .iter()
            .map(|(op, a)| (op.name().to_owned(), a.clone()))
            .collect()
    }

    /// Errors by code (all operations).
    pub fn errors(&self) -> BTreeMap<String, u64> {
        errors_by_code(&self.ledger())
    }

    /// Errors by operation, then code.
    pub fn errors_by_op(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        errors_by_op(&self.ledger())
    }

    /// The counters' current values.
    pub fn totals(&self) -> Totals {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Totals {
            players_started: g(&c.players_started),
            login_attempts: g(&c.login_attempts),
            logins_ok: g(&c.logins_ok),
            players_logged_in: g(&c.players_logged_in),
            login_failures: g(&c.login_failures),
            players_gave_up: g(&c.players_gave_up),
            reconnects: g(&c.reconnects),
            resumed: g(&c.resumed),
            storm_drops: g(&c.storm_drops),
            requests: g(&c.requests),
            request_errors: g(&c.request_errors),
            sessions_completed: g(&c.sessions_completed),
            skipped_actions: g(&c.skipped_actions),
            inventory_ops: g(&c.inventory_ops),
            purchases_declined: g(&c.purchases_declined),
            replays_verified: g(&c.replays_verified),
            outage_drops: g(&c.outage_drops),
            ..Totals::default()
        }
        .with_ledger(&self.ledger())
    }
}

impl Totals {
    /// Fills `attempts`, `errors` and `outcomes` from a ledger.
    pub fn with_ledger(mut self, ledger: &BTreeMap<String, OpAccount>) -> Totals {
        self.attempts = ledger.values().map(|a| a.attempts).sum();
        self.errors = ledger.values().map(OpAccount::error_count).sum();
        self.outcomes = ledger.values().map(OpAccount::outcome_count).sum();
        self
    }
}

/// The errors of a ledger by code (all operations).
pub fn errors_by_code(ledger: &BTreeMap<String, OpAccount>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for a in ledger.values() {
        for (code, n) in &a.errors {
            *out.entry(code.clone()).or_default() += n;
        }
    }
    out
}

/// The errors of a ledger by operation, then code (operations without errors left out).
pub fn errors_by_op(ledger: &BTreeMap<String, OpAccount>) -> BTreeMap<String, BTreeMap<String, u64>> {
    ledger
        .iter()
        .filter(|(_, a)| !a.errors.is_empty())
        .map(|(op, a)| (op.clone(), a.errors.clone()))
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds one to a counter.
pub fn inc(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_client::ErrorCode;

    #[test]
    fn records_and_classifies() {
        let r = Recorder::new(1);
        r.ok(Op::Ping, Duration::from_micros(1500));
        r.ok(Op::Login, Duration::from_millis(20));
        r.err(Op::Echo, &ClientError::Timeout);
        r.err(
            Op::Login,
            &ClientError::Rejected {
                code: ErrorCode::ServerBusy,
                message: String::new(),
                retry_after: None,
            },
        );
        assert_eq!(r.histogram(Op::Ping).len(), 1);
        assert_eq!(
            r.take_interval().len(),
            1,
            "only requests go to the interval histogram"
        );
        assert!(r.take_interval().is_empty());
        let t = r.totals();
        assert_eq!((t.requests, t.request_errors), (2, 1));
        let e = r.errors();
        assert_eq!(e["ClientTimeout"], 1);
        assert_eq!(e["ServerBusy"], 1);
        assert_eq!(r.errors_by_op()["login"]["ServerBusy"], 1);
        assert_eq!((t.attempts, t.errors, t.outcomes), (4, 2, 0));
    }

    #[test]
    fn expected_codes_are_outcomes_not_errors() {
        let r = Recorder::new(1);
        let conflict = ClientError::Server(outpost_client::ServerError {
            code: ErrorCode::Conflict,
            message: String::new(),
            retry_after: None,
        });
        assert!(!r.err(Op::InventoryPurchase, &conflict));
        assert!(r.err(Op::InventoryGrant, &conflict));
        r.ok(Op::InventoryPurchase, Duration::from_millis(2));
        r.count_ok(Op::Session);
        let t = r.totals();
        assert_eq!((t.requests, t.request_errors), (3, 1));
        assert_eq!((t.attempts, t.errors, t.outcomes), (4, 1, 1));
        assert_eq!(r.error_total(), 1);
        let l = r.ledger();
        assert_eq!(l["inventory_purchase"].outcomes["Conflict"], 1);
        assert_eq!(
            (l["inventory_purchase"].attempts, l["inventory_purchase"].ok),
            (2, 1)
        );
        assert_eq!(l["inventory_grant"].errors["Conflict"], 1);
        assert_eq!(r.errors(), BTreeMap::from([("Conflict".to_owned(), 1)]));
        assert!(r.histogram(Op::Session).is_empty());
    }

    #[tokio::test]
    async fn counts_per_region_of_the_recording_task() {
        let r = std::sync::Arc::new(Recorder::new(2));
        let r1 = r.clone();
        REGION
            .scope(1, async move {
                r1.ok(Op::Login, Duration::from_millis(3));
                r1.ok(Op::Ping, Duration::from_micros(700));
                r1.err(Op::Echo, &ClientError::Timeout);
            })
            .await;
        r.ok(Op::Ping, Duration::from_micros(900));
        assert_eq!(r.region_logins[1].load(Ordering::Relaxed), 1);
        assert_eq!(r.region_errors[1].load(Ordering::Relaxed), 1);
        assert_eq!(r.region_logins[0].load(Ordering::Relaxed), 0);
        assert_eq!(r.take_region_interval(1).len(), 1);
        assert!(
            r.take_region_interval(0).is_empty(),
            "no region outside a player task"
        );
        assert_eq!(r.take_interval().len(), 2);
    }
}

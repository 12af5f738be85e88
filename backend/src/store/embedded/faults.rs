//! Fault mode of the embedded store: a seeded injector of FoundationDB's failure
//! modes, so that every service's handling of them runs in ordinary tests.
//!
//! FoundationDB tests itself by deterministic simulation with injected faults
//! ("buggify"). A cluster cannot run on our build machines, so this module makes the
//! embedded store misbehave the way a cluster does, at configurable rates:
//!
//! | kind                  | what happens at commit                                      |
//! |-----------------------|-------------------------------------------------------------|
//! | `unknown_applied`     | the commit is applied, then reports `CommitUnknownResult`   |
//! | `unknown_not_applied` | nothing is applied; reports `CommitUnknownResult`           |
//! | `conflict`            | nothing is applied; reports a spurious `Conflict`           |
//! | `too_old`             | a transaction older than `too_old_after_ms`: `TransactionTooOld` |
//! | `commit_delay`        | the commit waits up to `max_delay_ms` first                  |
//! | `watch_delay`         | a watch fires up to `max_delay_ms` late                      |
//! | stall (scripted only) | the commit blocks the thread that runs it, then applies (counted as `commit_delay`) |
//!
//! Read-only transactions meet only `too_old` and `commit_delay` (FoundationDB
//! never reports a conflict or an unknown result for them). The retry loop then
//! behaves exactly as on a cluster: the closure runs again. Each kind is counted
//! ([`FaultCounts`]).
//!
//! **Off by default, no cost when off**: the store holds an
//! `Option<Arc<FaultInjector>>` and checks it once per commit and once per watch.
//! Enabled by [`EmbeddedConfig::faults`](super::EmbeddedConfig::faults) (a
//! `[embedded.faults]` table) or, in test suites, by the environment variable
//! [`FAULTS_ENV`] through `store::testing::open_store`:
//!
//! ```text
//! OUTPOST_STORE_FAULTS=seed=1,unknown_applied=0.05,unknown_not_applied=0.03,conflict=0.05,too_old=0.02,commit_delay=0.05,watch_delay=0.2,max_delay_ms=3,report=/tmp/faults.txt
//! ```
//!
//! Never enable it in production: it makes commits fail on purpose.
//!
//! With `report` set, each store appends one line of counts to that file when it
//! is dropped (`.ci/fault-report` sums them per suite).

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

/// The environment variable test suites read the fault mode from (see the
/// [module docs](self) for its format).
pub const FAULTS_ENV: &str = "OUTPOST_STORE_FAULTS";

/// Rates and seed of the fault mode. Every rate is a probability in `[0, 1]` per
/// commit (per watch for `watch_delay`); the four failing kinds are exclusive and
/// their sum must not exceed 1. Validated by [`FaultConfig::validate`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    /// Seed of the injector's random generator (mixed with `label` and a per-store
    /// counter, so stores of one process draw different sequences). Default 0.
    #[serde(default)]
    pub seed: u64,
    /// Apply the commit, then report `CommitUnknownResult`. Default 0.
    #[serde(default)]
    pub unknown_applied: f64,
    /// Report `CommitUnknownResult` without applying. Default 0.
    #[serde(default)]
    pub unknown_not_applied: f64,
    /// Report a spurious `Conflict`. Default 0.
    #[serde(default)]
    pub conflict: f64,
    /// Report `TransactionTooOld` for a transaction at least `too_old_after_ms`
    /// old. Default 0.
    #[serde(default)]
    pub too_old: f64,
    /// Age, in ms, from which a transaction counts as long for `too_old`. Default 0
    /// (every transaction; test transactions take microseconds).
    #[serde(default)]
    pub too_old_after_ms: u64,
    /// Delay a commit by a random time up to `max_delay_ms`. Default 0.
    #[serde(default)]
    pub commit_delay: f64,
    /// Delay a watch's firing by a random time up to `max_delay_ms`. Default 0.
    #[serde(default)]
    pub watch_delay: f64,
    /// Longest injected delay, in ms. Default 5. Longer delays find more races and
    /// make suites slower.
    #[serde(default = "default_max_delay_ms")]
    pub max_delay_ms: u64,
    /// Name in reports (a test suite's name). Default `store`.
    #[serde(default = "default_label")]
    pub label: String,
    /// File each store appends its counts to when dropped. Default: none.
    #[serde(default)]
    pub report: Option<PathBuf>,
}

fn default_max_delay_ms() -> u64 {
    5
}

fn default_label() -> String {
    "store".into()
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            seed: 0,
            unknown_applied: 0.0,
            unknown_not_applied: 0.0,
            conflict: 0.0,
            too_old: 0.0,
            too_old_after_ms: 0,
            commit_delay: 0.0,
            watch_delay: 0.0,
            max_delay_ms: default_max_delay_ms(),
            label: default_label(),
            report: None,
        }
    }
}

/// An invalid fault specification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultConfigError {
    /// A `key=value` item names no setting.
    #[error("store faults: unknown setting `{0}`")]
    UnknownKey(String),
    /// An item is not `key=value`, or its value does not parse.
    #[error("store faults: bad item `{0}` (expected key=value with a number)")]
    BadItem(String),
    /// A rate is outside `[0, 1]`.
    #[error("store faults: `{0}` must be within 0..=1")]
    RateOutOfRange(&'static str),
    /// The failing kinds' rates add up to more than 1.
    #[error("store faults: unknown_applied + unknown_not_applied + conflict + too_old must not exceed 1")]
    RatesSumAboveOne,
}

impl FaultConfig {
    /// Reads [`FAULTS_ENV`]: `Ok(None)` when unset or empty.
    pub fn from_env() -> Result<Option<Self>, FaultConfigError> {
        match std::env::var(FAULTS_ENV) {
            Ok(v) if !v.trim().is_empty() => v.parse().map(Some),
            _ => Ok(None),
        }
    }

    /// Checks every rate.
    pub fn validate(&self) -> Result<(), FaultConfigError> {
        let rates = [
            ("unknown_applied", self.unknown_applied),
            ("unknown_not_applied", self.unknown_not_applied),
            ("conflict", self.conflict),
            ("too_old", self.too_old),
            ("commit_delay", self.commit_delay),
            ("watch_delay", self.watch_delay),
        ];
        for (name, r) in rates {
            if !(0.0..=1.0).contains(&r) {
                return Err(FaultConfigError::RateOutOfRange(name));
            }
        }
        if self.unknown_applied + self.unknown_not_applied + self.conflict + self.too_old > 1.0 {
            return Err(FaultConfigError::RatesSumAboveOne);
        }
        Ok(())
    }
}

impl FromStr for FaultConfig {
    type Err = FaultConfigError;

    /// Parses `key=value` items separated by commas (keys as the field names).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut c = FaultConfig::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let bad = || FaultConfigError::BadItem(item.to_owned());
            let (k, v) = item.split_once('=').ok_or_else(bad)?;
            let (k, v) = (k.trim(), v.trim());
            let rate = || v.parse::<f64>().map_err(|_| bad());
            let int = || v.parse::<u64>().map_err(|_| bad());
            match k {
                "seed" => c.seed = int()?,
                "unknown_applied" => c.unknown_applied = rate()?,
                "unknown_not_applied" => c.unknown_not_applied = rate()?,
                "conflict" => c.conflict = rate()?,
                "too_old" => c.too_old = rate()?,
                "too_old_after_ms" => c.too_old_after_ms = int()?,
                "commit_delay" => c.commit_delay = rate()?,
                "watch_delay" => c.watch_delay = rate()?,
                "max_delay_ms" => c.max_delay_ms = int()?,
                "label" => c.label = v.to_owned(),
                "report" => c.report = Some(PathBuf::from(v)),
                _ => return Err(FaultConfigError::UnknownKey(k.to_owned())),
            }
        }
        c.validate()?;
        Ok(c)
    }
}

/// How many faults of each kind an injector made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Commits applied, then reported as `CommitUnknownResult`.
    pub unknown_applied: u64,
    /// Commits not applied and reported as `CommitUnknownResult`.
    pub unknown_not_applied: u64,
    /// Spurious conflicts.
    pub conflict: u64,
    /// Injected `TransactionTooOld`.
    pub too_old: u64,
    /// Delayed commits.
    pub commit_delay: u64,
    /// Delayed watches.
    pub watch_delay: u64,
}

impl FaultCounts {
    /// All faults together.
    pub fn total(&self) -> u64 {
        self.unknown_applied
            + self.unknown_not_applied
            + self.conflict
            + self.too_old
            + self.commit_delay
            + self.watch_delay
    }
}

impl std::fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown_applied={} unknown_not_applied={} conflict={} too_old={} commit_delay={} watch_delay={}",
            self.unknown_applied,
            self.unknown_not_applied,
            self.conflict,
            self.too_old,
            self.commit_delay,
            self.watch_delay
        )
    }
}

/// What to do to one commit (drawn at the configured rates, or scripted for a
/// test with [`EmbeddedStore::script_commit_faults`](super::EmbeddedStore::script_commit_faults)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitFault {
    /// Apply, then report `CommitUnknownResult`.
    UnknownApplied,
    /// Report `CommitUnknownResult` without applying.
    UnknownNotApplied,
    /// Report `Conflict` without applying.
    Conflict,
    /// Report `TransactionTooOld` without applying.
    TooOld,
    /// Block the thread that runs the commit for this long, then apply the
    /// commit normally: what fjall does to a commit when its flushes fall
    /// behind (it sleeps 100 ms at a time) or when a flush holds its locks
    /// through a slow fsync. Scripted only; counted as a `commit_delay`.
    Stall(Duration),
}

/// Decision for one commit: an optional delay first, then an optional fault.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CommitPlan {
    pub(super) delay: Option<Duration>,
    pub(super) fault: Option<CommitFault>,
}

#[derive(Default)]
struct Counters {
    unknown_applied: AtomicU64,
    unknown_not_applied: AtomicU64,
    conflict: AtomicU64,
    too_old: AtomicU64,
    commit_delay: AtomicU64,
    watch_delay: AtomicU64,
}

std::thread_local! {
    /// Stores opened by this thread so far, mixed into each injector's seed.
    static STORES_OPENED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// FNV-1a of `bytes`.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The injector of one store.
pub(super) struct FaultInjector {
    config: FaultConfig,
    rng: Mutex<StdRng>,
    counters: Counters,
    /// Faults for the next write commits, in order, before any drawn one.
    scripted: Mutex<VecDeque<CommitFault>>,
}

impl FaultInjector {
    pub(super) fn new(config: FaultConfig) -> Self {
        // Seed, label, the opening thread's name (a test's name under libtest) and
        // how many stores that thread opened before: the same store of the same
        // test draws the same sequence in every run, whatever else runs in parallel.
        let nth = STORES_OPENED.with(|n| {
            let v = n.get();
            n.set(v + 1);
            v
        });
        let thread = fnv(std::thread::current().name().unwrap_or("").as_bytes());
        let seed = config.seed
            ^ fnv(config.label.as_bytes())
            ^ thread.rotate_left(17)
            ^ nth.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        FaultInjector {
            config,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            counters: Counters::default(),
            scripted: Mutex::new(VecDeque::new()),
        }
    }

    fn rng(&self) -> std::sync::MutexGuard<'_, StdRng> {
        self.rng.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn delay(&self, rng: &mut StdRng) -> Duration {
        Duration::from_micros(rng.gen_range(0..=self.config.max_delay_ms.max(1) * 1000))
    }

    /// Queues `faults` for the next write commits (one each, in order), ahead
    /// of the drawn ones.
    pub(super) fn script(&self, faults: impl IntoIterator<Item = CommitFault>) {
        self.scripted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(faults);
    }

    /// Draws the plan of one commit of a transaction that is `age` old (a
    /// scripted fault first, for a write).
    pub(super) fn plan_commit(&self, read_only: bool, age: Duration) -> CommitPlan {
        if !read_only {
            let next = self
                .scripted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front();
            if let Some(fault) = next {
                self.count(fault);
                return CommitPlan {
                    delay: None,
                    fault: Some(fault),
                };
            }
        }
        let c = &self.config;
        let mut rng = self.rng();
        let delay = (rng.gen::<f64>() < c.commit_delay).then(|| self.delay(&mut rng));
        let x = rng.gen::<f64>();
        drop(rng);
        let long = age >= Duration::from_millis(c.too_old_after_ms);
        let mut edge = 0.0;
        let mut pick = |rate: f64, eligible: bool| {
            let hit = eligible && x >= edge && x < edge + rate;
            edge += rate;
            hit
        };
        let fault = if pick(c.unknown_applied, !read_only) {
            Some(CommitFault::UnknownApplied)
        } else if pick(c.unknown_not_applied, !read_only) {
            Some(CommitFault::UnknownNotApplied)
        } else if pick(c.conflict, !read_only) {
            Some(CommitFault::Conflict)
        } else if pick(c.too_old, long) {
            Some(CommitFault::TooOld)
        } else {
            None
        };
        if delay.is_some() {
            self.counters.commit_delay.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(f) = fault {
            self.count(f);
        }
        CommitPlan { delay, fault }
    }

    fn count(&self, f: CommitFault) {
        let counter = match f {
            CommitFault::UnknownApplied => &self.counters.unknown_applied,
            CommitFault::UnknownNotApplied => &self.counters.unknown_not_applied,
            CommitFault::Conflict => &self.counters.conflict,
            CommitFault::TooOld => &self.counters.too_old,
            CommitFault::Stall(_) => &self.counters.commit_delay,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Draws how late a new watch fires (none: on time).
    pub(super) fn plan_watch(&self) -> Option<Duration> {
        let mut rng = self.rng();
        let delay = (rng.gen::<f64>() < self.config.watch_delay).then(|| self.delay(&mut rng));
        if delay.is_some() {
            self.counters.watch_delay.fetch_add(1, Ordering::Relaxed);
        }
        delay
    }

    /// What this injector has injected so far.
    pub(super) fn counts(&self) -> FaultCounts {
        let c = &self.counters;
        FaultCounts {
            unknown_applied: c.unknown_applied.load(Ordering::Relaxed),
            unknown_not_applied: c.unknown_not_applied.load(Ordering::Relaxed),
            conflict: c.conflict.load(Ordering::Relaxed),
            too_old: c.too_old.load(Ordering::Relaxed),
            commit_delay: c.commit_delay.load(Ordering::Relaxed),
            watch_delay: c.watch_delay.load(Ordering::Relaxed),
        }
    }
}

impl Drop for FaultInjector {
    fn drop(&mut self) {
        let Some(path) = &self.config.report else {
            return;
        };
        let line = format!(
            "suite={} seed={} {}\n",
            self.config.label,
            self.config.seed,
            self.counts()
        );
        // One short O_APPEND write per store: lines of parallel tests do not interleave.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "store faults: cannot append the report");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_env_format_and_rejects_nonsense() {
        let c: FaultConfig = "seed=7, unknown_applied=0.1,conflict=0.2,max_delay_ms=2,label=ledger"
            .parse()
            .unwrap();
        assert_eq!(
            (c.seed, c.unknown_applied, c.conflict, c.max_delay_ms),
            (7, 0.1, 0.2, 2)
        );
        assert_eq!(c.label, "ledger");
        assert!(matches!(
            "nope=1".parse::<FaultConfig>(),
            Err(FaultConfigError::UnknownKey(_))
        ));
        assert!(matches!(
            "seed".parse::<FaultConfig>(),
            Err(FaultConfigError::BadItem(_))
        ));
        assert!(matches!(
            "conflict=1.5".parse::<FaultConfig>(),
            Err(FaultConfigError::RateOutOfRange("conflict"))
        ));
        assert_eq!(
            "conflict=0.6,unknown_applied=0.6".parse::<FaultConfig>(),
            Err(FaultConfigError::RatesSumAboveOne)
        );
    }

    #[test]
    fn draws_every_kind_at_about_its_rate_and_counts_it() {
        let inj = FaultInjector::new(
            "seed=3,unknown_applied=0.1,unknown_not_applied=0.1,conflict=0.1,too_old=0.1,commit_delay=0.5,watch_delay=0.5"
                .parse()
                .unwrap(),
        );
        let mut seen = [0u64; 4];
        for _ in 0..10_000 {
            match inj.plan_commit(false, Duration::ZERO).fault {
                Some(CommitFault::UnknownApplied) => seen[0] += 1,
                Some(CommitFault::UnknownNotApplied) => seen[1] += 1,
                Some(CommitFault::Conflict) => seen[2] += 1,
                Some(CommitFault::TooOld) => seen[3] += 1,
                Some(CommitFault::Stall(_)) => panic!("stalls are scripted only"),
                None => {}
            }
            inj.plan_watch();
        }
        assert!(seen.iter().all(|n| (800..1200).contains(n)), "{seen:?}");
        let c = inj.counts();
        assert_eq!(
            [c.unknown_applied, c.unknown_not_applied, c.conflict, c.too_old],
            seen
        );
        assert!(
            (4500..5500).contains(&c.commit_delay) && (4500..5500).contains(&c.watch_delay),
            "{c}"
        );
        // Read-only commits only meet too_old (and delays).
        for _ in 0..1000 {
            let f = inj.plan_commit(true, Duration::ZERO).fault;
            assert!(matches!(f, None | Some(CommitFault::TooOld)));
        }
    }

    #[test]
    fn too_old_needs_a_long_transaction() {
        let inj = FaultInjector::new("too_old=1,too_old_after_ms=50".parse().unwrap());
        assert_eq!(inj.plan_commit(false, Duration::from_millis(10)).fault, None);
        assert_eq!(
            inj.plan_commit(false, Duration::from_millis(60)).fault,
            Some(CommitFault::TooOld)
        );
    }
}

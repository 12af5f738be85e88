//! The login queue's value types: the budget, the settings, stored records,
//! what a login gets, the queue view and the ETA estimator.

use std::collections::VecDeque;
use std::time::Duration;

use foundationdb_tuple::Versionstamp;
use serde::{Deserialize, Serialize};

use super::errors::QueueError;

/// The region's admission budget, stored in the region keyspace so every
/// gateway reads the same live value. Absent record: [`Budget::unlimited`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// Maximum slots in use in the region (sessions, plus admitted places not yet
    /// taken and re-entry reservations). Lowering it below the slots in use
    /// admits nobody until enough sessions end; nobody is kicked.
    pub max_sessions: u32,
    /// Maximum admissions per one-second window, region-wide (both queue
    /// admissions and direct logins). 0 admits nobody (like `paused`).
    pub max_admissions_per_sec: u32,
    /// Operator pause: nobody is admitted; logins queue (re-entries within
    /// the grace still get in: their slot is already counted).
    pub paused: bool,
    /// When the budget was last written (ms since the epoch).
    #[serde(default)]
    pub updated_ms: u64,
}

impl Budget {
    /// No limit: every login is admitted at once (the queue is idle).
    pub const fn unlimited() -> Self {
        Budget {
            max_sessions: u32::MAX,
            max_admissions_per_sec: u32::MAX,
            paused: false,
            updated_ms: 0,
        }
    }
}

/// Per-process queue settings (gateway configuration; not shared state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// How long a waiting place survives its holder's disconnect (the client may
    /// come back, with its token, at any gateway of the region). Also how long
    /// an admitted place waits for its holder to take the slot.
    pub place_grace: Duration,
    /// How long after an unclean session end (crash, network loss) the player
    /// re-enters without queueing. Its slot stays reserved for that long: a
    /// longer grace is kinder to players and idles more capacity after
    /// crashes. Clean logouts free the slot at once.
    pub reentry_grace: Duration,
    /// Most places one admission transaction admits (bounds the transaction).
    pub max_batch: u32,
    /// Lifetime of queue tokens. Must be at least `place_grace` (a token must
    /// outlive the place it names while the client is away).
    pub token_ttl: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            place_grace: Duration::from_secs(120),
            reentry_grace: Duration::from_secs(120),
            max_batch: 100,
            token_ttl: Duration::from_secs(6 * 3600),
        }
    }
}

impl QueueSettings {
    /// Checks the settings are usable.
    pub fn check(&self) -> Result<(), QueueError> {
        let bad = |what: &'static str| Err(QueueError::InvalidSettings(what));
        if self.place_grace.is_zero() {
            return bad("place_grace must be > 0");
        }
        if self.max_batch == 0 || self.max_batch > 1_000 {
            return bad("max_batch must be in 1..=1000");
        }
        if self.token_ttl < self.place_grace {
            return bad("token_ttl must be at least place_grace");
        }
        Ok(())
    }
}

/// The admission rate window (stored; see the keys).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RateWindow {
    pub window_start_ms: u64,
    pub admitted: u32,
}

/// How far ahead of an admitter's clock a stored rate window may start and
/// still count: clocks of gateways differ by some milliseconds, and a clock
/// read before a transaction is retried lags the window another admitter
/// opened meanwhile. Only a window further ahead (a wrong clock) is abandoned.
const MAX_WINDOW_AHEAD_MS: u64 = 10_000;

impl RateWindow {
    /// Admissions still allowed at `now_ms` under `per_sec`, with the window
    /// rolled forward if it is over. A `now_ms` slightly before the window's
    /// start counts in that window: restarting the window there would admit a
    /// second window's worth at once (found by the queue bench: three
    /// admitters whose clock reads interleave overshot a 500/s budget).
    pub fn room(&mut self, now_ms: u64, per_sec: u32) -> u32 {
        let ended = now_ms >= self.window_start_ms.saturating_add(1_000);
        let bogus = self.window_start_ms > now_ms.saturating_add(MAX_WINDOW_AHEAD_MS);
        if ended || bogus {
            *self = RateWindow {
                window_start_ms: now_ms,
                admitted: 0,
            };
        }
        per_sec.saturating_sub(self.admitted)
    }
}

/// A waiting place as the FIFO stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WaitingPlace {
    pub player: String,
    pub place: u64,
    pub enqueued_ms: u64,
}

/// What an account holds (stored; one per account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AccountEntry {
    /// The place (or slot) id; a queue token names it. A new one is drawn for
    /// every new place and every new session, so a stale token or a displaced
    /// session's release does not touch the current one.
    pub place: u64,
    pub state: EntryState,
    /// The gateway holding the connection (hook for fleet liveness: the orphan
    /// sweep of a dead gateway calls `Queue::release_holder`).
    pub holder: String,
    /// When this entry expires unless its holder acts (detached place,
    /// untaken admission, re-entry reservation); mirrored in the expiry index.
    pub expires_ms: Option<u64>,
    /// The login that made this session: its `enter` call's random id (also
    /// the slot it would draw) and how it got in, so that call's rerun after
    /// an unknown commit result answers as the first attempt did (absent on
    /// other states and in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entered: Option<(u64, AdmittedVia)>,
}

/// The state of an account's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "s", rename_all = "snake_case")]
pub(crate) enum EntryState {
    /// In the FIFO. `stamp` (hex) is bound right after the enqueue commits.
    Waiting { stamp: Option<String>, enqueued_ms: u64 },
    /// Holds a slot the next login of this account takes without queueing:
    /// an admitted place not yet taken, or a re-entry reservation.
    Reserved { since_ms: u64 },
    /// A live session holds the slot.
    Session { since_ms: u64 },
}

/// A place's position in the FIFO: its enqueue versionstamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp(pub [u8; 12]);

impl Stamp {
    pub(crate) fn from_versionstamp(v: &Versionstamp) -> Self {
        Stamp(*v.as_bytes())
    }

    pub(crate) fn to_versionstamp(self) -> Versionstamp {
        Versionstamp::from(self.0)
    }

    pub(crate) fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 24 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 12];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Stamp(out))
    }
}

/// A waiting place as the login that holds it knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The player.
    pub player: String,
    /// The place id (named by the queue token).
    pub place: u64,
    /// Its position in the FIFO.
    pub stamp: Stamp,
    /// A queue token naming the place.
    pub token: String,
}

/// How a login may be admitted (see [`super::Queue::enter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnterMode {
    /// The client understands the queue: over budget it gets a place.
    Queue,
    /// The client does not understand the queue: over budget it gets
    /// [`Entry::Busy`] and no place is written.
    NoQueue,
    /// A resumed session: admitted whatever the budget (its slot is normally
    /// still reserved, as the re-entry grace covers the resume window; if not,
    /// the budget may be exceeded by such resumes).
    Resume,
}

/// What [`super::Queue::enter`] decided for a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// The login may proceed: a slot is the session's; release it with
    /// [`super::Queue::end_session`] naming `slot`.
    Admitted {
        /// The slot id.
        slot: u64,
        /// Why no queueing was needed.
        via: AdmittedVia,
    },
    /// The login waits in the FIFO.
    Queued(Place),
    /// Over budget and the login may not queue ([`EnterMode::NoQueue`]).
    Busy,
}

/// How a login got its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdmittedVia {
    /// The budget had room and nobody was waiting.
    Direct,
    /// Its place was admitted from the queue.
    Queue,
    /// A reservation (re-entry within the grace, or an admitted place taken
    /// after a reconnect).
    Reserved,
    /// A resumed session with no reservation left ([`EnterMode::Resume`]).
    Resumed,
    /// The account already had a live session, which this login displaces
    /// (the foreign-login policy allowed it): the slot moves over.
    Displacing,
}

/// What a waiting login finds when it polls its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceStatus {
    /// Admitted: the slot is now the session's.
    Admitted {
        /// The slot id (the place id).
        slot: u64,
    },
    /// Still waiting.
    Waiting,
    /// The place is gone (expired, or replaced by a newer login of the account).
    Gone,
}

#[cfg(test)]
mod rate_tests {
    use super::RateWindow;

    #[test]
    fn a_clock_slightly_behind_counts_in_the_current_window() {
        let mut w = RateWindow::default();
        assert_eq!(w.room(30_000, 5), 5);
        w.admitted = 5;
        assert_eq!(w.room(29_990, 5), 0, "10 ms behind: same window, full");
        assert_eq!(w.room(30_999, 5), 0);
        assert_eq!(w.room(31_000, 5), 5, "the window is over");
        w.admitted = 5;
        assert_eq!(w.room(11_000, 5), 5, "a window 20 s ahead is a wrong clock");
    }
}

/// One read of the whole FIFO: positions for every waiting place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueView {
    /// Stamps of every waiting place, in FIFO order.
    pub stamps: Vec<Stamp>,
    /// Admissions so far (the region counter), for the ETA estimator.
    pub admissions_total: u64,
    /// Abandoned places so far (the region counter).
    pub abandoned_total: u64,
    /// Slots in use.
    pub used: u64,
    /// The budget in force.
    pub budget: Budget,
}

impl QueueView {
    /// Places ahead of `stamp` (0: next). `None` if `stamp` is not waiting
    /// (admitted or expired since).
    pub fn position(&self, stamp: Stamp) -> Option<u32> {
        self.stamps
            .binary_search(&stamp)
            .ok()
            .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
    }

    /// Queue length.
    pub fn len(&self) -> usize {
        self.stamps.len()
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.stamps.is_empty()
    }
}

/// Estimates the wait from the measured admission rate: admissions counted
/// over a sliding window of samples of the region's admissions counter.
#[derive(Debug, Clone)]
pub struct EtaEstimator {
    window: Duration,
    samples: VecDeque<(u64, u64)>,
}

impl EtaEstimator {
    /// An estimator measuring over `window` (e.g. 30 s).
    pub fn new(window: Duration) -> Self {
        EtaEstimator {
            window,
            samples: VecDeque::new(),
        }
    }

    /// Records the admissions counter read at `now_ms`.
    pub fn sample(&mut self, now_ms: u64, admissions_total: u64) {
        if self.samples.back().is_some_and(|&(t, _)| now_ms < t) {
            return;
        }
        self.samples.push_back((now_ms, admissions_total));
        let horizon = now_ms.saturating_sub(self.window.as_millis() as u64);
        while self.samples.len() > 2 && self.samples[1].0 <= horizon {
            self.samples.pop_front();
        }
    }

    /// Measured admissions per second (`None` until two samples span time).
    pub fn rate_per_sec(&self) -> Option<f64> {
        let (&(t0, a0), &(t1, a1)) = (self.samples.front()?, self.samples.back()?);
        (t1 > t0).then(|| a1.saturating_sub(a0) as f64 * 1_000.0 / (t1 - t0) as f64)
    }

    /// Estimated wait for a place with `position` places ahead, in ms; when
    /// nothing was admitted over the window, the configured rate `fallback_per_sec`
    /// is used; `None` if both are zero (paused: unknown).
    pub fn eta_ms(&self, position: u32, fallback_per_sec: u32) -> Option<u64> {
        let rate = match self.rate_per_sec() {
            Some(r) if r > 0.0 => r,
            _ if fallback_per_sec > 0 => f64::from(fallback_per_sec),
            _ => return None,
        };
        Some(((f64::from(position) + 1.0) * 1_000.0 / rate).ceil() as u64)
    }
}

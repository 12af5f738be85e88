//! Gateway liveness (per region): every gateway process registers
//! `(gateway id, incarnation)` in the region's keyspace and heartbeats it; state
//! that a session holds on a gateway (presence claims, matchmaking tickets)
//! records the incarnation; the orphan sweep ([`sweep`]) releases what a dead
//! incarnation held, from whichever process runs it, using only the store.
//!
//! # Protocol
//!
//! - **Register** at start: a fresh random incarnation (non-zero), so a
//!   restarted gateway with the same id is a new incarnation and never
//!   inherits the old one's state by accident.
//! - **Heartbeat** every `heartbeat_interval_ms`: `expires_ms = now +
//!   expiry_ms`. A heartbeat fails with [`LivenessError::Fenced`] once the sweep
//!   declared the incarnation dead (`swept`): that process must stop serving,
//!   because what it held is being released. Ticket creation checks the same
//!   flag in its own transaction, so a zombie never queues new tickets.
//! - **Leave** on a clean shutdown sets `expires_ms = now`: its sessions had a
//!   drain to move, and what is left is swept one resume window later.
//! - **Sweep**: an incarnation with `expires_ms + resume_window_ms <= now` is
//!   dead and every resume token its sessions were issued has expired (tokens
//!   live one resume window and are only issued while the incarnation
//!   heartbeats). The sweeper marks it `swept`, then releases its holder
//!   indexes item by item (matchmaking tickets, presence claims, and, with
//!   [`Sweeper::with_queue`], login-queue places and slots held by
//!   [`holder_id`]), then deletes the registration.
//!
//! Clocks: `expires_ms` is written with the gateway's clock and compared with
//! the sweeper's. Keep `expiry_ms` above `2 × heartbeat_interval_ms` plus the
//! clock skew between gateways, or a live but slow gateway may be swept (it then
//! fails its next heartbeat and stops: safe, but its players must log in again).

pub mod keys;
pub mod sweep;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::keyspace::RegionName;
use crate::store::{Store, Transaction, TxError};

pub use keys::IncarnationRecord;
pub use sweep::{SweepConfig, SweepReport, SweepStats, Sweeper};

/// Why a liveness operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LivenessError {
    /// The region name is invalid.
    #[error("invalid region {0:?}")]
    InvalidRegion(String),
    /// A [`LivenessConfig`] or [`SweepConfig`] that breaks its rules.
    #[error("invalid liveness config: {0}")]
    InvalidConfig(&'static str),
    /// The incarnation is not registered or was declared dead: stop serving.
    #[error("gateway incarnation {0:016x} was declared dead (or never registered)")]
    Fenced(u64),
    /// A stored record does not decode.
    #[error("corrupt liveness record: {0}")]
    Corrupt(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The matchmaker failed during a sweep.
    #[error(transparent)]
    Matchmaker(#[from] crate::matchmaker::MatchmakerError),
    /// Presence failed during a sweep.
    #[error(transparent)]
    Presence(#[from] crate::presence::PresenceError),
    /// The login queue failed during a sweep.
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    /// The ledger failed during retention GC.
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
}

impl From<TxError<LivenessError>> for LivenessError {
    fn from(e: TxError<LivenessError>) -> Self {
        match e {
            TxError::Store(s) => LivenessError::Store(s),
            TxError::User(u) => u,
        }
    }
}

/// Heartbeat settings of a gateway process (gateway config `liveness`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LivenessConfig {
    /// How often the gateway heartbeats its registration, milliseconds.
    /// Default 2,000. Cost: one small write transaction per gateway per
    /// interval (not per session; see docs/PERFORMANCE.md).
    #[serde(default = "default_interval")]
    pub heartbeat_interval_ms: u64,
    /// How long a registration lives without a heartbeat, milliseconds.
    /// Default 10,000. Must be at least `2 × heartbeat_interval_ms` (one lost
    /// heartbeat is tolerated) plus the clock skew between gateways. Longer:
    /// fewer false deaths under store hiccups; shorter: a crashed gateway's
    /// state is released sooner (after `expiry_ms` + the resume window).
    #[serde(default = "default_expiry")]
    pub expiry_ms: u64,
}

fn default_interval() -> u64 {
    2_000
}
fn default_expiry() -> u64 {
    10_000
}

impl Default for LivenessConfig {
    fn default() -> Self {
        LivenessConfig {
            heartbeat_interval_ms: default_interval(),
            expiry_ms: default_expiry(),
        }
    }
}

impl LivenessConfig {
    /// Checks the rules documented on the fields.
    pub fn validate(&self) -> Result<(), LivenessError> {
        if self.heartbeat_interval_ms == 0 {
            return Err(LivenessError::InvalidConfig("heartbeat_interval_ms must be > 0"));
        }
        if self.expiry_ms < 2 * self.heartbeat_interval_ms {
            return Err(LivenessError::InvalidConfig(
                "expiry_ms must be at least 2 x heartbeat_interval_ms",
            ));
        }
        Ok(())
    }
}

/// The holder name a gateway incarnation uses where state records its holder
/// as a string (the login queue's entries): `gateway/incarnation` (16 hex
/// digits), so a gateway restarted under the same id is another holder and
/// the sweep of its dead predecessor never releases the new one's entries.
pub fn holder_id(gateway: &str, incarnation: u64) -> String {
    format!("{gateway}/{incarnation:016x}")
}

fn corrupt(e: impl std::fmt::Display) -> TxError<LivenessError> {
    TxError::User(LivenessError::Corrupt(e.to_string()))
}

/// Reads incarnation `inc`'s registration in `region` inside `tx` (a read
/// conflict: a sweep marking it dead conflicts with the caller's commit).
pub(crate) async fn read_incarnation<T: Transaction>(
    tx: &T,
    region: &RegionName,
    inc: u64,
) -> Result<Option<IncarnationRecord>, TxError<LivenessError>> {
    match tx.get(&keys::incarnation(region, inc)).await? {
        Some(raw) => crate::codec::decode_v1(&raw).map(Some).map_err(corrupt),
        None => Ok(None),
    }
}

/// The liveness registry of one region. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Liveness<S: Store> {
    store: S,
    region: Arc<RegionName>,
}

impl<S: Store> Liveness<S> {
    /// The registry in `region`'s keyspace of `store`.
    pub fn new(store: S, region: &str) -> Result<Self, LivenessError> {
        let region = RegionName::new(region).map_err(|e| LivenessError::InvalidRegion(e.0))?;
        Ok(Liveness {
            store,
            region: Arc::new(region),
        })
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The region.
    pub fn region(&self) -> &RegionName {
        &self.region
    }

    /// Draws a fresh incarnation and registers it for `gateway`, alive until
    /// `now_ms + expiry_ms`.
    pub async fn register(&self, gateway: &str, expiry_ms: u64, now_ms: u64) -> Result<u64, LivenessError> {
        let inc = loop {
            let i: u64 = rand::random();
            if i != 0 {
                break i;
            }
        };
        let rec = IncarnationRecord {
            gateway: gateway.to_owned(),
            incarnation: inc,
            started_ms: now_ms,
            expires_ms: now_ms + expiry_ms,
            swept: false,
        };
        let key = keys::incarnation(&self.region, inc);
        self.store
            .run(|tx| {
                let (key, rec) = (key.clone(), rec.clone());
                async move {
                    tx.set(&key, &crate::codec::encode_v1(&rec))?;
                    Ok::<_, TxError<LivenessError>>(())
                }
            })
            .await?;
        Ok(inc)
    }

    /// Extends `inc`'s registration to `expires_ms` (a heartbeat: `now +
    /// expiry`; a leave: `now`). Fails with [`LivenessError::Fenced`] if it was
    /// declared dead or is unknown.
    pub async fn heartbeat(&self, inc: u64, expires_ms: u64) -> Result<(), LivenessError> {
        let region = self.region.clone();
        self.store
            .run(|tx| {
                let region = region.clone();
                async move {
                    let Some(mut rec) = read_incarnation(&tx, &region, inc).await? else {
                        return Err(TxError::User(LivenessError::Fenced(inc)));
                    };
                    if rec.swept {
                        return Err(TxError::User(LivenessError::Fenced(inc)));
                    }
                    rec.expires_ms = expires_ms;
                    tx.set(&keys::incarnation(&region, inc), &crate::codec::encode_v1(&rec))?;
                    Ok(())
                }
            })
            .await?;
        Ok(())
    }

    /// Every registration of the region (snapshot read; a few per gateway).
    pub async fn list(&self) -> Result<Vec<IncarnationRecord>, LivenessError> {
        let (b, e) = keys::incarnations(&self.region).range();
        let raw =
            self.store
                .run(|tx| {
                    let (b, e) = (b.clone(), e.clone());
                    async move {
                        Ok::<_, TxError<LivenessError>>(tx.get_range_snapshot(&b, &e, None, false).await?)
                    }
                })
                .await?;
        raw.iter()
            .map(|kv| crate::codec::decode_v1(&kv.value).map_err(|e| LivenessError::Corrupt(e.to_string())))
            .collect()
    }

    /// Marks `inc` dead if its registration expired at or before `cutoff_ms`;
    /// returns whether it is (now or already) marked.
    pub async fn mark_swept(&self, inc: u64, cutoff_ms: u64) -> Result<bool, LivenessError> {
        let region = self.region.clone();
        let res = self
            .store
            .run(|tx| {
                let region = region.clone();
                async move {
                    let Some(mut rec) = read_incarnation(&tx, &region, inc).await? else {
                        return Ok(false);
                    };
                    if rec.swept {
                        return Ok(true);
                    }
                    if rec.expires_ms > cutoff_ms {
                        return Ok(false);
                    }
                    rec.swept = true;
                    tx.set(&keys::incarnation(&region, inc), &crate::codec::encode_v1(&rec))?;
                    Ok::<_, TxError<LivenessError>>(true)
                }
            })
            .await?;
        Ok(res)
    }

    /// Deletes a swept registration (everything it held is released).
    pub async fn forget(&self, inc: u64) -> Result<(), LivenessError> {
        let key = keys::incarnation(&self.region, inc);
        self.store
            .run(|tx| {
                let key = key.clone();
                async move {
                    tx.clear(&key)?;
                    Ok::<_, TxError<LivenessError>>(())
                }
            })
            .await?;
        Ok(())
    }

    /// Takes (or renews) the region's sweep lease for `owner` until `now_ms +
    /// ttl_ms` if it is free, expired or already `owner`'s; returns its fencing
    /// token, `None` if another sweeper holds it.
    pub async fn try_sweep_lease(
        &self,
        owner: &str,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<Option<u64>, LivenessError> {
        let key = keys::sweep_lease(&self.region);
        let owner = owner.to_owned();
        let res = self
            .store
            .run(|tx| {
                let (key, owner) = (key.clone(), owner.clone());
                async move {
                    let old: Option<keys::SweepLease> = match tx.get(&key).await? {
                        Some(raw) => Some(crate::codec::decode_v1(&raw).map_err(corrupt)?),
                        None => None,
                    };
                    let held = old.as_ref().map(|l| crate::lease::Held {
                        owner: &l.owner,
                        token: l.token,
                        expires_ms: l.expires_ms,
                    });
                    let Some(token) = crate::lease::token_for(held, &owner, now_ms) else {
                        return Ok(None);
                    };
                    let rec = keys::SweepLease {
                        owner,
                        token,
                        expires_ms: now_ms + ttl_ms,
                    };
                    tx.set(&key, &crate::codec::encode_v1(&rec))?;
                    Ok::<_, TxError<LivenessError>>(Some(token))
                }
            })
            .await?;
        Ok(res)
    }

    /// The receipt retention walk's position (the default before any pass).
    pub(crate) async fn receipt_walk(&self) -> Result<keys::ReceiptWalk, LivenessError> {
        let key = keys::receipt_walk(&self.region);
        let walk = self
            .store
            .run(|tx| {
                let key = key.clone();
                async move {
                    match tx.get(&key).await? {
                        Some(raw) => crate::codec::decode_v1(&raw).map_err(corrupt),
                        None => Ok(keys::ReceiptWalk::default()),
                    }
                }
            })
            .await?;
        Ok(walk)
    }

    /// Stores the receipt retention walk's position.
    pub(crate) async fn set_receipt_walk(&self, walk: &keys::ReceiptWalk) -> Result<(), LivenessError> {
        let (key, value) = (keys::receipt_walk(&self.region), crate::codec::encode_v1(walk));
        self.store
            .run(|tx| {
                let (key, value) = (key.clone(), value.clone());
                async move { Ok::<_, TxError<LivenessError>>(tx.set(&key, &value)?) }
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod bench_tests;
#[cfg(test)]
mod churn_tests;
#[cfg(test)]
mod queue_tests;
#[cfg(test)]
mod tests;

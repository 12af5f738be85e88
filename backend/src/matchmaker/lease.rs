//! Partition leases with fencing tokens, and worker heartbeats.
//!
//! A lease record `("r", pool, "mm", "ls", queue, region, band)` holds
//! `{owner, token, expires_ms}`:
//!
//! - **Acquire** succeeds if there is no record, the record has expired
//!   (`expires_ms <= now`), or the caller already owns it. Taking a lease from
//!   nobody or from another owner writes `token + 1`: tokens only grow, because
//!   the record is never deleted (release just sets `expires_ms = 0`).
//! - **Renew** (the heartbeat) extends `expires_ms` only while owner and token
//!   are still the caller's; otherwise the lease is lost.
//! - **Fencing.** Every match commit reads the lease record in its own
//!   transaction and fails unless owner and token are still the worker's. A
//!   worker that stalled (GC pause, network partition, suspended VM) past its
//!   expiry and whose partition was taken can therefore never commit again
//!   with the old token, even if its clock is wrong: safety does not depend on
//!   clocks. Clocks only decide *when* a lease may be taken: keep the TTL well
//!   above the clock skew between matchmaker hosts plus the heartbeat interval.
//!
//! Worker heartbeats `("r", pool, "mm", "wk", owner)` → `{expires_ms}` let
//! workers count the living workers and take a fair share of partitions each
//! (see [`super::worker`]).

use crate::keyspace::RegionName;
use crate::store::{Store, Transaction, TxError};

use super::errors::{CommitError, MatchmakerError};
use super::keys::{self, LeaseRecord, Partition, WorkerRecord};
use super::store::Matchmaker;

/// A lease held by a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The partition.
    pub partition: Partition,
    /// The holder.
    pub owner: String,
    /// The fencing token of this holding.
    pub token: u64,
    /// When it expires unless renewed (wall-clock ms).
    pub expires_ms: u64,
}

fn corrupt(e: String) -> TxError<MatchmakerError> {
    TxError::User(MatchmakerError::Corrupt(e))
}

/// The fencing check a commit under `lease` starts with (see the [module
/// docs](self)): reads the partition's lease record in the commit's own
/// transaction and fails with [`CommitError::LeaseLost`] unless there is one
/// and its owner and token are still `lease`'s.
pub(crate) async fn check_lease<T: Transaction>(
    tx: &T,
    pool: &RegionName,
    lease: &Lease,
) -> Result<(), TxError<CommitError>> {
    let lost = || TxError::User(CommitError::LeaseLost(lease.partition.to_string()));
    let raw = tx
        .get(&keys::lease(pool, &lease.partition))
        .await?
        .ok_or_else(lost)?;
    let l: LeaseRecord = keys::decode(&raw).map_err(|e| TxError::User(CommitError::Corrupt(e)))?;
    if l.owner != lease.owner || l.token != lease.token {
        return Err(lost());
    }
    Ok(())
}

impl<S: Store> Matchmaker<S> {
    /// The lease record of a partition, if any (owner, token, expiry).
    pub async fn lease_of(&self, p: &Partition) -> Result<Option<Lease>, MatchmakerError> {
        let key = keys::lease(self.pool_name(), p);
        let res = self
            .store()
            .run(|tx| {
                let key = key.clone();
                async move {
                    match tx.get_snapshot(&key).await? {
                        Some(raw) => keys::decode::<LeaseRecord>(&raw).map(Some).map_err(corrupt),
                        None => Ok(None),
                    }
                }
            })
            .await?;
        Ok(res.map(|r| Lease {
            partition: p.clone(),
            owner: r.owner,
            token: r.token,
            expires_ms: r.expires_ms,
        }))
    }

    /// Takes the partition's lease for `owner` until `now_ms + ttl_ms` if it is
    /// free, expired, or already `owner`'s; `None` if someone else holds it.
    pub async fn try_acquire(
        &self,
        p: &Partition,
        owner: &str,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<Option<Lease>, MatchmakerError> {
        let key = keys::lease(self.pool_name(), p);
        let owner = owner.to_owned();
        let res = self
            .store()
            .run(|tx| {
                let (key, owner) = (key.clone(), owner.clone());
                async move {
                    let old = match tx.get(&key).await? {
                        Some(raw) => Some(keys::decode::<LeaseRecord>(&raw).map_err(corrupt)?),
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
                    let rec = LeaseRecord {
                        owner,
                        token,
                        expires_ms: now_ms + ttl_ms,
                    };
                    tx.set(&key, &keys::encode(&rec))?;
                    Ok(Some(rec))
                }
            })
            .await?;
        Ok(res.map(|r| Lease {
            partition: p.clone(),
            owner: r.owner,
            token: r.token,
            expires_ms: r.expires_ms,
        }))
    }

    /// Extends a held lease to `now_ms + ttl_ms`; `false` if it was lost
    /// (another owner or token).
    pub async fn renew(&self, lease: &mut Lease, ttl_ms: u64, now_ms: u64) -> Result<bool, MatchmakerError> {
        let key = keys::lease(self.pool_name(), &lease.partition);
        let (owner, token) = (lease.owner.clone(), lease.token);
        let ok = self
            .store()
            .run(|tx| {
                let (key, owner) = (key.clone(), owner.clone());
                async move {
                    let Some(raw) = tx.get(&key).await? else {
                        return Ok(false);
                    };
                    let l: LeaseRecord = keys::decode(&raw).map_err(corrupt)?;
                    if l.owner != owner || l.token != token {
                        return Ok(false);
                    }
                    let rec = LeaseRecord {
                        expires_ms: now_ms + ttl_ms,
                        ..l
                    };
                    tx.set(&key, &keys::encode(&rec))?;
                    Ok(true)
                }
            })
            .await?;
        if ok {
            lease.expires_ms = now_ms + ttl_ms;
        }
        Ok(ok)
    }

    /// Gives a held lease up at once (keeps the token, so it still grows).
    pub async fn release(&self, lease: &Lease) -> Result<(), MatchmakerError> {
        let key = keys::lease(self.pool_name(), &lease.partition);
        let (owner, token) = (lease.owner.clone(), lease.token);
        self.store()
            .run(|tx| {
                let (key, owner) = (key.clone(), owner.clone());
                async move {
                    if let Some(raw) = tx.get(&key).await? {
                        let l: LeaseRecord = keys::decode(&raw).map_err(corrupt)?;
                        if l.owner == owner && l.token == token {
                            tx.set(&key, &keys::encode(&LeaseRecord { expires_ms: 0, ..l }))?;
                        }
                    }
                    Ok(())
                }
            })
            .await?;
        Ok(())
    }

    /// Records that worker `owner` lives until `now_ms + ttl_ms`, and returns
    /// how many workers are alive at `now_ms` (itself included).
    pub async fn worker_heartbeat(
        &self,
        owner: &str,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<usize, MatchmakerError> {
        let pool = self.pool_name().clone();
        let owner = owner.to_owned();
        let res = self
            .store()
            .run(|tx| {
                let (pool, owner) = (pool.clone(), owner.clone());
                async move {
                    let rec = WorkerRecord {
                        expires_ms: now_ms + ttl_ms,
                    };
                    tx.set(&keys::worker(&pool, &owner), &keys::encode(&rec))?;
                    let (b, e) = keys::workers(&pool).range();
                    let mut alive = 1;
                    let me = keys::worker(&pool, &owner);
                    for kv in tx.get_range_snapshot(&b, &e, None, false).await? {
                        if kv.key == me {
                            continue;
                        }
                        let w: WorkerRecord = keys::decode(&kv.value).map_err(corrupt)?;
                        if w.expires_ms > now_ms {
                            alive += 1;
                        } else if w.expires_ms + 60_000 < now_ms {
                            // Long dead: tidy up.
                            tx.clear(&kv.key)?;
                        }
                    }
                    Ok(alive)
                }
            })
            .await?;
        Ok(res)
    }

    /// Removes worker `owner`'s heartbeat (clean shutdown).
    pub async fn worker_leave(&self, owner: &str) -> Result<(), MatchmakerError> {
        let key = keys::worker(self.pool_name(), owner);
        self.store()
            .run(|tx| {
                let key = key.clone();
                async move {
                    tx.clear(&key)?;
                    Ok::<_, TxError<MatchmakerError>>(())
                }
            })
            .await?;
        Ok(())
    }
}

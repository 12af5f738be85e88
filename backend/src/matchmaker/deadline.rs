//! Bounded wait: a queue's `deadline_ms` after which a ticket still waiting
//! gets a final "no match" outcome with a reason code, so no player waits in
//! silence.
//!
//! # In the core
//!
//! Before the deadline the last expansion steps apply (validation requires
//! the deadline to come after the last step's `after_ms` and after the
//! cross-region wait; target-seeking widening never delays the widest step
//! past the deadline, see [`super::widening`]). [`MatchCore::expire_due`]
//! (called after a round's matching) takes out every owned ticket whose
//! deadline falls before the next round, so a ticket's wait never exceeds the
//! deadline and a ticket matched in its last round is never also expired.
//!
//! # In the store
//!
//! [`Matchmaker::expire_ticket`] is the store path: one transaction that reads
//! the worker's lease (fencing, like a match commit) and the ticket record,
//! checks the ticket still waits, and writes state `timed_out` with the reason,
//! takes it out of the waiting, holder and depth keys, and rewrites every
//! player entry, so the gateway's [`Matchmaker::watch_player`] loop pushes the
//! outcome. A match commit, a cancel or a second expiry racing it reads the
//! same record, so exactly one of them wins. The worker that holds the
//! ticket's partition does it ([`super::Worker`]), once per round, for the
//! tickets its core expired.
//!
//! [`MatchCore::expire_due`]: super::MatchCore::expire_due

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::store::{Store, Transaction, TxError};

use super::config::{ConfigError, QueueConfig};
use super::errors::CommitError;
use super::keys::{self, PlayerEntry, TicketState};
use super::lease::{check_lease, Lease};
use super::store::{leave_pool_in_commit, now_ms, Matchmaker};
use super::types::TicketId;

/// Longest accepted deadline: one day.
pub const MAX_DEADLINE_MS: u64 = 86_400_000;

/// Why a ticket ended without a match (stored, and sent to the client as
/// `NoMatchReason`; PROTOCOL.md §4.4). New reasons may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NoMatchReason {
    /// The queue's deadline passed: even the widest skill window and the
    /// cross-region fallback found no match in time. The client may show
    /// "no match found, try again later" and queue again.
    Deadline,
}

impl NoMatchReason {
    /// The reason's stable name (as stored).
    pub fn as_str(self) -> &'static str {
        match self {
            NoMatchReason::Deadline => "deadline",
        }
    }
}

/// A ticket the core took out of the pool without a match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoMatch {
    /// The ticket.
    pub ticket: TicketId,
    /// Its queue.
    pub queue: String,
    /// Its home region.
    pub home_region: String,
    /// Its players.
    pub players: Vec<String>,
    /// How long it waited, milliseconds (at most the deadline).
    pub wait_ms: u64,
    /// Why.
    pub reason: NoMatchReason,
}

/// Checks a queue's `deadline_ms`.
pub(crate) fn validate(q: &QueueConfig) -> Result<(), ConfigError> {
    let Some(d) = q.deadline_ms else {
        return Ok(());
    };
    let bad = |reason| {
        Err(ConfigError::Queue {
            queue: q.name.clone(),
            reason,
        })
    };
    if d == 0 || d > MAX_DEADLINE_MS {
        return bad("deadline_ms must be within 1..=86,400,000");
    }
    if q.expansions.last().is_some_and(|s| s.after_ms >= d) {
        return bad("deadline_ms must come after the last expansion step's after_ms");
    }
    if q.cross_region.is_some_and(|c| c.after_ms >= d) {
        return bad("deadline_ms must come after cross_region.after_ms");
    }
    Ok(())
}

/// How an expiry ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpireOutcome {
    /// The ticket is now `timed_out`; its players' entries say so.
    Expired,
    /// It already was, with this reason (a retried "commit result unknown").
    AlreadyExpired,
}

impl<S: Store> Matchmaker<S> {
    /// Gives waiting ticket `id` its final "no match" outcome under `lease` (the
    /// lease of the ticket's own partition; see the [module docs](self)).
    /// Errors: [`CommitError::LeaseLost`] if the lease's fencing token is no
    /// longer current, [`CommitError::TicketUnavailable`] if the ticket is not
    /// waiting (matched, cancelled, removed: the other transaction won) or
    /// belongs to another partition.
    pub async fn expire_ticket(
        &self,
        lease: &Lease,
        id: TicketId,
        reason: NoMatchReason,
    ) -> Result<ExpireOutcome, CommitError> {
        let pool = Arc::new(self.pool_name().clone());
        let lease = Arc::new(lease.clone());
        let res = self
            .store()
            .run(|tx| {
                let (pool, lease) = (pool.clone(), lease.clone());
                async move {
                    let ccorrupt = |e: String| TxError::User(CommitError::Corrupt(e));
                    check_lease(&tx, &pool, &lease).await?;
                    let unavailable = || TxError::User(CommitError::TicketUnavailable(id));
                    let raw = tx.get(&keys::ticket(&pool, id)).await?.ok_or_else(unavailable)?;
                    let mut rec: keys::TicketRecord = keys::decode(&raw).map_err(ccorrupt)?;
                    if rec.partition() != lease.partition {
                        return Err(unavailable());
                    }
                    match rec.state {
                        TicketState::Waiting => {}
                        TicketState::TimedOut { reason: r } if r == reason => {
                            return Ok(ExpireOutcome::AlreadyExpired)
                        }
                        _ => return Err(unavailable()),
                    }
                    let state = TicketState::TimedOut { reason };
                    leave_pool_in_commit(&tx, &pool, &mut rec, state, now_ms())?;
                    let entry = keys::encode(&PlayerEntry { ticket: id, state });
                    for player in &rec.ticket.players {
                        // Only entries that still point at this ticket (a
                        // player may have queued again on another one since).
                        let current = match tx.get(&keys::player(&pool, player)).await? {
                            Some(raw) => keys::decode::<PlayerEntry>(&raw).map_err(ccorrupt)?.ticket == id,
                            None => false,
                        };
                        if current {
                            tx.set(&keys::player(&pool, player), &entry)?;
                        }
                    }
                    Ok(ExpireOutcome::Expired)
                }
            })
            .await?;
        Ok(res)
    }
}

/// Gives each of `due` (tickets a worker's core expired) its outcome under
/// `lease`; returns how many this call expired and whether the lease was lost
/// (then the rest is left to the partition's next owner). A ticket a racing
/// commit or cancel got first is skipped: that outcome stands.
pub(crate) async fn expire_all<S: Store>(
    mm: &Matchmaker<S>,
    lease: &Lease,
    due: Vec<NoMatch>,
) -> Result<(usize, bool), super::MatchmakerError> {
    use super::MatchmakerError;
    let mut expired = 0;
    for nm in due {
        match mm.expire_ticket(lease, nm.ticket, nm.reason).await {
            // `AlreadyExpired` here is this call's own first attempt, which
            // applied and reported an unknown result: only the partition's
            // current lease holder expires its tickets, and it loads waiting
            // tickets only, so no other worker's expiry is seen as one.
            Ok(ExpireOutcome::Expired | ExpireOutcome::AlreadyExpired) => {
                expired += 1;
                super::metrics::timed_out(&nm.queue, &nm.home_region, nm.reason.as_str());
            }
            Err(CommitError::TicketUnavailable(_)) => {}
            Err(CommitError::LeaseLost(_)) => return Ok((expired, true)),
            Err(CommitError::Corrupt(e)) => return Err(MatchmakerError::Corrupt(e)),
            Err(CommitError::Store(e)) => return Err(MatchmakerError::Store(e)),
        }
    }
    Ok((expired, false))
}

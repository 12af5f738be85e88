//! Errors of the store-backed matchmaker.

use crate::error_class::{Classify, ErrorClass};
use crate::store::{StoreError, TxError};

use super::alloc::AllocError;
use super::config::ConfigError;
use super::core::CoreError;
use super::types::{MatchId, TicketId};

/// An error from a [`Matchmaker`](super::Matchmaker) operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MatchmakerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A [`WorkerConfig`](super::WorkerConfig) that breaks its rules.
    #[error("invalid worker config: {0}")]
    InvalidWorkerConfig(&'static str),
    /// The pool region name is invalid.
    #[error("invalid pool region {0:?}")]
    InvalidPoolRegion(String),
    /// A player id that is not 32 lowercase hex characters.
    #[error("invalid player id {0:?}")]
    InvalidPlayerId(String),
    /// The same player twice on one ticket.
    #[error("player {0} appears twice on the ticket")]
    DuplicatePlayer(String),
    /// The ticket does not fit the configuration (queue, region, party size,
    /// skill).
    #[error(transparent)]
    InvalidTicket(#[from] CoreError),
    /// A player already waits on another ticket: in another queue, or with
    /// other players (queueing again for the same queue with the same players
    /// re-attaches to the waiting ticket instead). Cancel it first.
    #[error("player {player} already waits on ticket {ticket} in queue {queue:?}; cancel it first")]
    AlreadyQueued {
        /// The player.
        player: String,
        /// Their waiting ticket.
        ticket: TicketId,
        /// That ticket's queue.
        queue: String,
    },
    /// The gateway incarnation creating the ticket was declared dead and its
    /// state swept ([`crate::liveness`]); that process must stop serving.
    #[error("gateway incarnation {0:016x} is no longer live")]
    HolderGone(u64),
    /// No such ticket.
    #[error("ticket {0} not found")]
    TicketNotFound(TicketId),
    /// The ticket was already matched; it can no longer be cancelled.
    #[error("ticket {ticket} is already in match {match_id}")]
    AlreadyMatched {
        /// The ticket.
        ticket: TicketId,
        /// Its match.
        match_id: MatchId,
    },
    /// A freshly drawn random ticket id is taken (about 1 in 2^64 per ticket);
    /// retry.
    #[error("ticket id collision; retry")]
    TicketIdCollision,
    /// A stored record does not decode.
    #[error("corrupt matchmaker record: {0}")]
    Corrupt(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TxError<MatchmakerError>> for MatchmakerError {
    fn from(e: TxError<MatchmakerError>) -> Self {
        match e {
            TxError::Store(s) => MatchmakerError::Store(s),
            TxError::User(u) => u,
        }
    }
}

/// Why a match was not committed. Nothing was written; every ticket that is
/// still waiting stays in the pool for the next round.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// The worker's lease on the partition is gone or has a newer fencing token
    /// (another worker took the partition).
    #[error("lease on partition {0} lost (fencing token changed)")]
    LeaseLost(String),
    /// A ticket of the match is no longer waiting (cancelled, removed, or matched
    /// by another worker).
    #[error("ticket {0} is no longer waiting")]
    TicketUnavailable(TicketId),
    /// A stored record does not decode.
    #[error("corrupt matchmaker record: {0}")]
    Corrupt(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TxError<CommitError>> for CommitError {
    fn from(e: TxError<CommitError>) -> Self {
        match e {
            TxError::Store(s) => CommitError::Store(s),
            TxError::User(u) => u,
        }
    }
}

impl Classify for MatchmakerError {
    /// Errors of building the matchmaker (its config, worker config, pool region)
    /// are [`ErrorClass::Internal`]: the server was set up wrong, not the
    /// request.
    fn class(&self) -> ErrorClass {
        match self {
            MatchmakerError::Config(_)
            | MatchmakerError::InvalidWorkerConfig(_)
            | MatchmakerError::InvalidPoolRegion(_)
            | MatchmakerError::Corrupt(_) => ErrorClass::Internal,
            MatchmakerError::InvalidPlayerId(_) | MatchmakerError::DuplicatePlayer(_) => ErrorClass::Invalid,
            MatchmakerError::InvalidTicket(e) => e.class(),
            MatchmakerError::AlreadyQueued { .. } | MatchmakerError::AlreadyMatched { .. } => {
                ErrorClass::Conflict
            }
            MatchmakerError::TicketNotFound(_) => ErrorClass::NotFound,
            MatchmakerError::TicketIdCollision | MatchmakerError::HolderGone(_) => {
                ErrorClass::STORE_UNAVAILABLE
            }
            MatchmakerError::Store(e) => e.class(),
        }
    }
}

impl Classify for CommitError {
    fn class(&self) -> ErrorClass {
        match self {
            CommitError::LeaseLost(_) | CommitError::TicketUnavailable(_) => ErrorClass::Conflict,
            CommitError::Corrupt(_) => ErrorClass::Internal,
            CommitError::Store(e) => e.class(),
        }
    }
}

impl Classify for CoreError {
    /// A ticket that does not fit the configuration; a duplicate id is a
    /// conflict with the pool.
    fn class(&self) -> ErrorClass {
        match self {
            CoreError::UnknownQueue(_)
            | CoreError::UnknownRegion(_)
            | CoreError::PartySize { .. }
            | CoreError::InvalidSkill => ErrorClass::Invalid,
            CoreError::DuplicateTicket(_) => ErrorClass::Conflict,
        }
    }
}

impl Classify for ConfigError {
    /// The configuration given is invalid (to whoever gave it).
    fn class(&self) -> ErrorClass {
        match self {
            ConfigError::Empty
            | ConfigError::TooManyRegions
            | ConfigError::Region(_)
            | ConfigError::Neighbour { .. }
            | ConfigError::QueueName(_)
            | ConfigError::TeamShape(_)
            | ConfigError::Expansions { .. }
            | ConfigError::SkillBands(_)
            | ConfigError::Queue { .. } => ErrorClass::Invalid,
        }
    }
}

impl Classify for AllocError {
    /// No server now may mean one later.
    fn class(&self) -> ErrorClass {
        match self {
            AllocError::NoCapacity(_) | AllocError::Failed(_) => ErrorClass::STORE_UNAVAILABLE,
        }
    }
}

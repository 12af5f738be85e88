//! Errors of the flags service and of rollouts.

use crate::error_class::{Classify, ErrorClass};
use crate::store::{StoreError, TxError};

/// An error from a [`Flags`](super::Flags) operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlagError {
    /// A flag that breaks a rule; nothing was changed.
    #[error("invalid flag {key:?}: {field}: {reason}")]
    InvalidFlag {
        /// The flag's key (truncated).
        key: String,
        /// Where in the flag's JSON form, e.g. `key`, `default` or
        /// `rules[1].percentage_bp` (the same paths a JSON decoding error names).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// Compare-and-set found another version (0: the flag does not exist).
    #[error("flag {key}: expected version {expected}, found {actual}")]
    VersionConflict {
        /// The flag.
        key: String,
        /// The version the caller expected.
        expected: u64,
        /// The version found.
        actual: u64,
    },
    /// The change would remove or re-weight the rule an active rollout drives;
    /// kill or finish the rollout first.
    #[error(
        "flag {key}: rule {rule:?} is driven by active rollout {rollout}; its percentage is the rollout's"
    )]
    RolloutActive {
        /// The flag.
        key: String,
        /// The rule.
        rule: String,
        /// The rollout.
        rollout: String,
    },
    /// Too many flags.
    #[error("too many flags (limit {limit})")]
    TooManyFlags {
        /// The limit.
        limit: usize,
    },
    /// A segment name or player id that is not valid.
    #[error("invalid segment input: {0}")]
    InvalidSegment(String),
    /// Adding the players would exceed a segment bound.
    #[error("segment limit exceeded: {0}")]
    SegmentLimit(String),
    /// An actor name outside 1..=128 bytes.
    #[error("invalid actor name (1..=128 bytes)")]
    InvalidActor,
    /// A stored record that does not decode.
    #[error("corrupt stored flag data: {0}")]
    Corrupt(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TxError<FlagError>> for FlagError {
    fn from(e: TxError<FlagError>) -> Self {
        match e {
            TxError::Store(s) => FlagError::Store(s),
            TxError::User(u) => u,
        }
    }
}

/// An error from a rollout operation (the pure machine or the
/// [`Rollouts`](super::Rollouts) driver).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RolloutError {
    /// A plan that breaks a rule; nothing was changed.
    #[error("invalid rollout plan: {0}")]
    InvalidPlan(String),
    /// No such flag.
    #[error("flag {0} not found")]
    FlagNotFound(String),
    /// The flag has no rule with that id.
    #[error("flag {flag} has no rule {rule:?}")]
    RuleNotFound {
        /// The flag.
        flag: String,
        /// The rule.
        rule: String,
    },
    /// The flag already has an active rollout.
    #[error("flag {flag} already has active rollout {rollout}")]
    AlreadyActive {
        /// The flag.
        flag: String,
        /// The active rollout.
        rollout: String,
    },
    /// No such rollout.
    #[error("rollout {0} not found")]
    NotFound(String),
    /// The rollout has finished (completed, rolled back or killed); it cannot
    /// change any more. Start a new one.
    #[error("rollout {0} is finished")]
    Finished(String),
    /// The rollout is at its last stage already.
    #[error("rollout {0} is at its last stage")]
    AtLastStage(String),
    /// An actor name outside 1..=128 bytes.
    #[error("invalid actor name (1..=128 bytes)")]
    InvalidActor,
    /// A stored record that does not decode.
    #[error("corrupt stored rollout data: {0}")]
    Corrupt(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TxError<RolloutError>> for RolloutError {
    fn from(e: TxError<RolloutError>) -> Self {
        match e {
            TxError::Store(s) => RolloutError::Store(s),
            TxError::User(u) => u,
        }
    }
}

impl Classify for FlagError {
    fn class(&self) -> ErrorClass {
        match self {
            FlagError::InvalidFlag { .. }
            | FlagError::InvalidSegment(_)
            | FlagError::InvalidActor
            | FlagError::TooManyFlags { .. }
            | FlagError::SegmentLimit(_) => ErrorClass::Invalid,
            FlagError::VersionConflict { .. } | FlagError::RolloutActive { .. } => ErrorClass::Conflict,
            FlagError::Corrupt(_) => ErrorClass::Internal,
            FlagError::Store(e) => e.class(),
        }
    }
}

impl Classify for RolloutError {
    fn class(&self) -> ErrorClass {
        match self {
            RolloutError::InvalidPlan(_) | RolloutError::InvalidActor => ErrorClass::Invalid,
            RolloutError::FlagNotFound(_) | RolloutError::RuleNotFound { .. } | RolloutError::NotFound(_) => {
                ErrorClass::NotFound
            }
            RolloutError::AlreadyActive { .. } | RolloutError::Finished(_) | RolloutError::AtLastStage(_) => {
                ErrorClass::Conflict
            }
            RolloutError::Corrupt(_) => ErrorClass::Internal,
            RolloutError::Store(e) => e.class(),
        }
    }
}

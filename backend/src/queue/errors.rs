//! Login queue errors.

use crate::codec::CodecError;
use crate::error_class::{Classify, ErrorClass};
use crate::store::{StoreError, TxError};

/// Why a queue token was refused. Each maps to its own wire code (see
/// `schema/PROTOCOL.md`, "Login queue").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueTokenError {
    /// Not a well-formed queue token.
    #[error("malformed queue token: {0}")]
    Malformed(&'static str),
    /// The MAC does not verify, or the key is unknown: forged or from another
    /// region.
    #[error("queue token does not verify")]
    Forged,
    /// The token has expired.
    #[error("queue token expired at {exp} (now {now})")]
    Expired {
        /// The token's `exp` (Unix seconds).
        exp: u64,
        /// When it was checked.
        now: u64,
    },
    /// The token names another account than the one that authenticated.
    #[error("queue token belongs to another account")]
    WrongAccount,
    /// The place the token names is gone: admitted and used, expired, or
    /// replaced by a newer place of the account (a replayed token).
    #[error("the place this queue token names is gone")]
    PlaceGone,
}

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A queue token was refused.
    #[error(transparent)]
    Token(#[from] QueueTokenError),
    /// A budget that cannot be applied.
    #[error("invalid budget: {0}")]
    InvalidBudget(&'static str),
    /// Unusable settings.
    #[error("invalid queue settings: {0}")]
    InvalidSettings(&'static str),
    /// A stored record does not decode.
    #[error("corrupt queue record ({family}): {detail}")]
    Corrupt {
        /// Which record.
        family: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl QueueError {
    pub(crate) fn corrupt(family: &'static str, e: CodecError) -> Self {
        QueueError::Corrupt {
            family,
            detail: e.to_string(),
        }
    }
}

impl From<TxError<QueueError>> for QueueError {
    fn from(e: TxError<QueueError>) -> Self {
        match e {
            TxError::Store(s) => QueueError::Store(s),
            TxError::User(u) => u,
        }
    }
}

impl Classify for QueueTokenError {
    /// Every refused token is the caller's to drop (then queue afresh).
    fn class(&self) -> ErrorClass {
        match self {
            QueueTokenError::Malformed(_) => ErrorClass::Invalid,
            QueueTokenError::Forged | QueueTokenError::WrongAccount => ErrorClass::Forbidden,
            QueueTokenError::Expired { .. } | QueueTokenError::PlaceGone => ErrorClass::NotFound,
        }
    }
}

impl Classify for QueueError {
    fn class(&self) -> ErrorClass {
        match self {
            QueueError::Token(t) => t.class(),
            QueueError::InvalidBudget(_) => ErrorClass::Invalid,
            QueueError::InvalidSettings(_) | QueueError::Corrupt { .. } => ErrorClass::Internal,
            QueueError::Store(s) => s.class(),
        }
    }
}

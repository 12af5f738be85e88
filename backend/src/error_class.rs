//! The class of a backend error: what a caller (in practice, the gateway edge
//! that turns errors into wire codes) may do about it, independent of which
//! service failed and why.
//!
//! Every public service error implements [`Classify`]. Each implementation is an
//! exhaustive `match` with no `_ =>` arm, so a new variant does not compile until
//! someone decides its class: it cannot silently become "invalid request" (or
//! anything else) at an edge. Errors that wrap another error (a store error, an
//! identity error inside a transfer error) take the inner error's class.
//!
//! | class | the caller should |
//! |---|---|
//! | [`Invalid`](ErrorClass::Invalid) | fix the request; the same request fails again |
//! | [`NotFound`](ErrorClass::NotFound) | stop: what it names does not exist |
//! | [`Conflict`](ErrorClass::Conflict) | re-read the current state, then decide (version mismatch, already exists, balance too low) |
//! | [`Forbidden`](ErrorClass::Forbidden) | stop: the request is well formed but not allowed here or for this caller (bad credentials, player moved to another region) |
//! | [`Unavailable`](ErrorClass::Unavailable) | retry the same request after `retry_after` (store contention or outage, transfer in progress) |
//! | [`Internal`](ErrorClass::Internal) | report it: the server's data or configuration is wrong; retrying does not help |
//!
//! The implementations for the store's, the codec's and presence's errors are
//! here (none of those modules depends on this one); every other one is next to
//! its error type.

use std::convert::Infallible;
use std::time::Duration;

use crate::codec::CodecError;
use crate::presence::PresenceError;
use crate::store::{StoreError, TxError};

/// Suggested wait before retrying after a store failure (contention, timeout,
/// outage).
pub const STORE_RETRY_AFTER: Duration = Duration::from_millis(500);
/// Suggested wait before retrying while a player's cross-region transfer runs.
pub const TRANSFER_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What a caller may do about an error (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The request is malformed or breaks a rule; the same request fails again.
    Invalid,
    /// What the request names does not exist.
    NotFound,
    /// The request conflicts with the current state (version mismatch, already
    /// exists, insufficient balance); re-read before deciding what to do.
    Conflict,
    /// Well formed, but not allowed for this caller or in this region.
    Forbidden,
    /// Temporarily unavailable; the same request may succeed later.
    Unavailable {
        /// Suggested wait before retrying.
        retry_after: Duration,
    },
    /// The server's stored data or configuration is wrong; not the caller's fault
    /// and not fixed by retrying.
    Internal,
}

impl ErrorClass {
    /// [`ErrorClass::Unavailable`] after a store failure.
    pub const STORE_UNAVAILABLE: ErrorClass = ErrorClass::Unavailable {
        retry_after: STORE_RETRY_AFTER,
    };
    /// [`ErrorClass::Unavailable`] while a transfer runs.
    pub const TRANSFER_UNAVAILABLE: ErrorClass = ErrorClass::Unavailable {
        retry_after: TRANSFER_RETRY_AFTER,
    };

    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(self) -> bool {
        match self {
            ErrorClass::Unavailable { .. } => true,
            ErrorClass::Invalid
            | ErrorClass::NotFound
            | ErrorClass::Conflict
            | ErrorClass::Forbidden
            | ErrorClass::Internal => false,
        }
    }

    /// The suggested wait before retrying, for [`ErrorClass::Unavailable`].
    pub fn retry_after(self) -> Option<Duration> {
        match self {
            ErrorClass::Unavailable { retry_after } => Some(retry_after),
            ErrorClass::Invalid
            | ErrorClass::NotFound
            | ErrorClass::Conflict
            | ErrorClass::Forbidden
            | ErrorClass::Internal => None,
        }
    }
}

/// An error with an [`ErrorClass`].
pub trait Classify {
    /// The error's class.
    fn class(&self) -> ErrorClass;
}

impl Classify for Infallible {
    fn class(&self) -> ErrorClass {
        match *self {}
    }
}

impl Classify for StoreError {
    /// Contention, timeouts and outages are [`ErrorClass::Unavailable`]; a key,
    /// value or transaction over FoundationDB's limits is [`ErrorClass::Invalid`]
    /// (the request carries too much); a malformed versionstamped key is a bug,
    /// [`ErrorClass::Internal`].
    fn class(&self) -> ErrorClass {
        match self {
            StoreError::Conflict
            | StoreError::TransactionTooOld
            | StoreError::CommitUnknownResult
            | StoreError::Timeout
            | StoreError::RetryLimitReached { .. }
            | StoreError::Cancelled
            | StoreError::Io(_)
            | StoreError::Backend(_) => ErrorClass::STORE_UNAVAILABLE,
            StoreError::TransactionTooLarge { .. }
            | StoreError::KeyTooLarge { .. }
            | StoreError::ValueTooLarge { .. } => ErrorClass::Invalid,
            StoreError::InvalidVersionstamp(_) => ErrorClass::Internal,
        }
    }
}

impl<E: Classify> Classify for TxError<E> {
    fn class(&self) -> ErrorClass {
        match self {
            TxError::Store(e) => e.class(),
            TxError::User(e) => e.class(),
        }
    }
}

impl Classify for CodecError {
    /// A stored value that does not decode: always the server's data.
    fn class(&self) -> ErrorClass {
        match self {
            CodecError::Empty | CodecError::UnsupportedVersion(_) | CodecError::Json(_) => {
                ErrorClass::Internal
            }
        }
    }
}

impl Classify for PresenceError {
    fn class(&self) -> ErrorClass {
        match self {
            PresenceError::GatewayNameTooLong(_) => ErrorClass::Invalid,
            PresenceError::Corrupt | PresenceError::UnsupportedSchema(_) => ErrorClass::Internal,
            PresenceError::Store(e) => e.class(),
        }
    }
}

#[cfg(test)]
#[path = "error_class_tests.rs"]
mod tests;

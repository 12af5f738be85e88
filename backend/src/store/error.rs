//! Errors of the [`Store`](super::Store) and its transactions.

use std::fmt;

/// FoundationDB's limits, enforced by every backend so that nothing that passes
/// against the embedded store fails on a cluster.
pub mod limits {
    use std::time::Duration;

    /// Largest key, in bytes (FoundationDB: 10,000).
    pub const MAX_KEY_BYTES: usize = 10_000;
    /// Largest value, in bytes (FoundationDB: 100,000).
    pub const MAX_VALUE_BYTES: usize = 100_000;
    /// Largest transaction, in bytes: the sum of every written key and value, plus
    /// both keys of every cleared range (FoundationDB: 10,000,000, counted similarly).
    pub const MAX_TRANSACTION_BYTES: usize = 10_000_000;
    /// Oldest a transaction may get before reads and commit fail with
    /// [`StoreError::TransactionTooOld`](super::StoreError::TransactionTooOld)
    /// (FoundationDB: about 5 s, the MVCC window).
    pub const MAX_TRANSACTION_AGE: Duration = Duration::from_secs(5);
}

/// An error from a store operation (a read, a write, a commit, a watch).
///
/// [`is_retryable`](Self::is_retryable) says which ones the retry loop in
/// [`Store::transact`](super::Store::transact) handles by running the closure again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another transaction committed a write to something this transaction read
    /// (a key or a range) after this transaction's read version. Retryable.
    #[error("transaction conflict: another commit wrote what this transaction read")]
    Conflict,
    /// The transaction lived longer than the MVCC window (about 5 s). Retryable.
    #[error("transaction too old (older than {:?})", limits::MAX_TRANSACTION_AGE)]
    TransactionTooOld,
    /// The transaction's writes exceed [`limits::MAX_TRANSACTION_BYTES`].
    #[error("transaction too large: {size} bytes written, limit {limit}")]
    TransactionTooLarge {
        /// Bytes the transaction would have written.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A key exceeds [`limits::MAX_KEY_BYTES`].
    #[error("key too large: {size} bytes, limit {limit}")]
    KeyTooLarge {
        /// The key's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A value exceeds [`limits::MAX_VALUE_BYTES`].
    #[error("value too large: {size} bytes, limit {limit}")]
    ValueTooLarge {
        /// The value's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The commit may or may not have been applied (FoundationDB
    /// `commit_unknown_result`). Retryable: like FoundationDB's own retry loop, the
    /// closure runs again, so every write that must not happen twice has to carry an
    /// idempotency key checked inside the same transaction.
    #[error("commit result unknown: the transaction may or may not have committed")]
    CommitUnknownResult,
    /// The transaction (all attempts together) exceeded its configured timeout.
    #[error("transaction timed out")]
    Timeout,
    /// The retry loop gave up after the configured number of attempts; `last` is the
    /// retryable error of the final attempt.
    #[error("retry limit reached after {attempts} attempts; last error: {last}")]
    RetryLimitReached {
        /// Attempts made.
        attempts: u32,
        /// The final attempt's error.
        last: Box<StoreError>,
    },
    /// A versionstamped key whose 4-byte offset suffix does not point inside the key,
    /// or which is too short to carry one.
    #[error("invalid versionstamped key: {0}")]
    InvalidVersionstamp(&'static str),
    /// The transaction this watch or versionstamp belongs to did not commit (it
    /// failed, was retried or was dropped), or the store was closed.
    #[error("transaction did not commit; its watch or versionstamp is cancelled")]
    Cancelled,
    /// A disk or filesystem error.
    #[error("store i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Any other error reported by the backend (fjall, FoundationDB).
    #[error("store backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl StoreError {
    /// Whether [`Store::transact`](super::Store::transact) retries the closure after
    /// this error: conflicts, too-old transactions and unknown commit results, as
    /// FoundationDB's own retry loop does.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Conflict | StoreError::TransactionTooOld | StoreError::CommitUnknownResult
        )
    }

    /// Wraps any backend error.
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend(Box::new(e))
    }
}

/// The error type of a transaction closure and of
/// [`Store::transact`](super::Store::transact): either a store error or the
/// caller's own error `E`, passed through unchanged (and never retried).
///
/// Store operations return [`StoreError`], which converts with `?`. Return a
/// caller error with `Err(TxError::User(e))`.
#[derive(Debug)]
pub enum TxError<E = std::convert::Infallible> {
    /// The store failed (after retries, if the error was retryable).
    Store(StoreError),
    /// The closure returned its own error; the transaction was not committed.
    User(E),
}

impl<E> TxError<E> {
    /// The store error, if this is one.
    pub fn as_store(&self) -> Option<&StoreError> {
        match self {
            TxError::Store(e) => Some(e),
            TxError::User(_) => None,
        }
    }

    /// The caller's error, if this is one.
    pub fn into_user(self) -> Option<E> {
        match self {
            TxError::Store(_) => None,
            TxError::User(e) => Some(e),
        }
    }
}

impl<E> From<StoreError> for TxError<E> {
    fn from(e: StoreError) -> Self {
        TxError::Store(e)
    }
}

impl<E: fmt::Display> fmt::Display for TxError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::Store(e) => write!(f, "{e}"),
            TxError::User(e) => write!(f, "{e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for TxError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TxError::Store(e) => Some(e),
            TxError::User(e) => Some(e),
        }
    }
}

/// Checks a key against [`limits::MAX_KEY_BYTES`].
pub(crate) fn check_key(key: &[u8]) -> Result<(), StoreError> {
    if key.len() > limits::MAX_KEY_BYTES {
        return Err(StoreError::KeyTooLarge {
            size: key.len(),
            limit: limits::MAX_KEY_BYTES,
        });
    }
    Ok(())
}

/// Checks a value against [`limits::MAX_VALUE_BYTES`].
pub(crate) fn check_value(value: &[u8]) -> Result<(), StoreError> {
    if value.len() > limits::MAX_VALUE_BYTES {
        return Err(StoreError::ValueTooLarge {
            size: value.len(),
            limit: limits::MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

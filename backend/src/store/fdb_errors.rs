//! How the FoundationDB backend treats an error code: which [`StoreError`] it
//! becomes and whether the retry loop hands it to `fdb_transaction_on_error`.
//!
//! The decision uses the client library's own predicates (`fdb_error_predicate`:
//! *retryable*, *maybe committed*) rather than a hand-kept list of codes, so every
//! error FoundationDB considers transient (`not_committed`, `future_version`,
//! `process_behind`, `commit_unknown_result`, `proxy_memory_limit_exceeded`, ...)
//! is retried with FoundationDB's own backoff, and every error that may have
//! committed surfaces as [`StoreError::CommitUnknownResult`]. It is written
//! against [`FdbErrorPredicates`] so the logic is tested on every build (with a
//! stand-in), and against the real binding where the client library is installed
//! (`fdb::tests`). Compiled without the `fdb` feature too, for that reason.

use super::{limits, StoreError};

/// What the binding knows about an error code (`foundationdb::FdbError`).
pub(crate) trait FdbErrorPredicates {
    /// The numeric code.
    fn code(&self) -> i32;
    /// `fdb_error_predicate(RETRYABLE)`: `on_error` retries it.
    fn is_retryable(&self) -> bool;
    /// `fdb_error_predicate(MAYBE_COMMITTED)`: the commit may have been applied.
    fn is_maybe_committed(&self) -> bool;
}

/// `transaction_timed_out`: the `timeout` transaction option expired.
const TRANSACTION_TIMED_OUT: i32 = 1031;

/// The [`StoreError`] an error code becomes. `backend` wraps codes without a
/// typed counterpart.
pub(crate) fn classify<P: FdbErrorPredicates>(e: &P, backend: impl FnOnce() -> StoreError) -> StoreError {
    if e.is_maybe_committed() {
        return StoreError::CommitUnknownResult;
    }
    match e.code() {
        1020 => StoreError::Conflict,
        1007 => StoreError::TransactionTooOld,
        TRANSACTION_TIMED_OUT => StoreError::Timeout,
        2101 => StoreError::TransactionTooLarge {
            size: 0,
            limit: limits::MAX_TRANSACTION_BYTES,
        },
        2102 => StoreError::KeyTooLarge {
            size: 0,
            limit: limits::MAX_KEY_BYTES,
        },
        2103 => StoreError::ValueTooLarge {
            size: 0,
            limit: limits::MAX_VALUE_BYTES,
        },
        _ => backend(),
    }
}

/// What the retry loop does after attempt number `attempts` failed with `e`.
#[derive(Debug)]
pub(crate) enum Next {
    /// Call `on_error` (FoundationDB's backoff, then a reset transaction) and run
    /// the closure again.
    Retry,
    /// Give up with this error.
    Fail(StoreError),
}

/// Decides the retry loop's next step. `retry_limit` counts attempts in total
/// ([`TransactOptions::retry_limit`](super::TransactOptions::retry_limit)).
pub(crate) fn next_step<P: FdbErrorPredicates>(
    e: &P,
    attempts: u32,
    retry_limit: Option<u32>,
    past_deadline: bool,
    backend: impl FnOnce() -> StoreError,
) -> Next {
    let mapped = classify(e, backend);
    if !e.is_retryable() {
        return Next::Fail(mapped);
    }
    if retry_limit.is_some_and(|l| attempts >= l) {
        return Next::Fail(StoreError::RetryLimitReached {
            attempts,
            last: Box::new(mapped),
        });
    }
    if past_deadline {
        return Next::Fail(StoreError::Timeout);
    }
    Next::Retry
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for the binding: (code, retryable, maybe committed).
    struct Fake(i32, bool, bool);

    impl FdbErrorPredicates for Fake {
        fn code(&self) -> i32 {
            self.0
        }
        fn is_retryable(&self) -> bool {
            self.1
        }
        fn is_maybe_committed(&self) -> bool {
            self.2
        }
    }

    fn other() -> StoreError {
        StoreError::backend(std::io::Error::other("fdb"))
    }

    #[test]
    fn retryable_codes_are_retried_whatever_their_number() {
        // future_version (1009) and process_behind (1037) were fatal with the old
        // hand-kept list; any code the predicate calls retryable is retried.
        for code in [1009, 1037, 1020, 1007, 4242] {
            assert!(matches!(
                next_step(&Fake(code, true, false), 1, Some(100), false, other),
                Next::Retry
            ));
        }
    }

    #[test]
    fn maybe_committed_codes_become_commit_unknown_result() {
        for code in [1021, 1213, 4243] {
            let e = Fake(code, true, true);
            assert!(matches!(classify(&e, other), StoreError::CommitUnknownResult));
            assert!(matches!(next_step(&e, 1, None, false, other), Next::Retry));
            // ... and that is what the caller sees when the loop gives up.
            match next_step(&e, 3, Some(3), false, other) {
                Next::Fail(StoreError::RetryLimitReached { attempts: 3, last }) => {
                    assert!(matches!(*last, StoreError::CommitUnknownResult))
                }
                n => panic!("{n:?}"),
            }
        }
    }

    #[test]
    fn other_codes_are_not_retried() {
        assert!(matches!(
            next_step(&Fake(2101, false, false), 1, None, false, other),
            Next::Fail(StoreError::TransactionTooLarge { .. })
        ));
        assert!(matches!(
            next_step(&Fake(1031, false, false), 1, None, false, other),
            Next::Fail(StoreError::Timeout)
        ));
        assert!(matches!(
            next_step(&Fake(2000, false, false), 1, None, false, other),
            Next::Fail(StoreError::Backend(_))
        ));
        assert!(matches!(
            next_step(&Fake(1020, true, false), 1, None, true, other),
            Next::Fail(StoreError::Timeout)
        ));
    }
}

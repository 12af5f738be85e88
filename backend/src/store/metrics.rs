//! Store metrics, recorded through the [`metrics`] facade by every backend's
//! retry loop (the gateway installs the recorder and exports them; without one
//! these calls do nothing): transactions committed, attempts that conflicted or
//! were retried and why, transactions that failed, and how long commits take.
//!
//! Label `backend` is `embedded` or `fdb`; `reason` is a fixed word. A process
//! with several stores (the region's, the global one) adds them up.
//!
//! The embedded store's group commit adds its own three (no label: FoundationDB
//! makes commits durable on its own servers): journal syncs, how long each took,
//! and how many commits each made durable. Together they say whether a slow
//! commit is the disk (sync duration up) or the load (batches grow while the
//! sync duration holds), and what a durable commit costs: an fsync costs CPU as
//! well as time, ~90 µs of it in a VM, shared by the whole batch.

use std::time::Duration;

use super::StoreError;

/// Transactions committed (counter; `backend`).
pub const COMMITS: &str = "outpost_store_commits_total";
/// Attempts that ended in a conflict (counter; `backend`).
pub const CONFLICTS: &str = "outpost_store_conflicts_total";
/// Attempts retried (counter; `backend`, `reason`).
pub const RETRIES: &str = "outpost_store_retries_total";
/// Transactions that failed for good (counter; `backend`, `reason`).
pub const FAILURES: &str = "outpost_store_transaction_failures_total";
/// Duration of each commit call, seconds (histogram; `backend`).
pub const COMMIT_SECONDS: &str = "outpost_store_commit_duration_seconds";

/// Journal syncs (fsyncs) of the embedded store's group commit (counter).
pub const JOURNAL_SYNCS: &str = "outpost_store_journal_syncs_total";
/// Duration of each journal sync, seconds (histogram; commit-duration buckets).
pub const JOURNAL_SYNC_SECONDS: &str = "outpost_store_journal_sync_duration_seconds";
/// Commits each journal sync made durable (histogram; [`BATCH_BUCKETS`]).
pub const SYNC_BATCH: &str = "outpost_store_journal_sync_batch_commits";

/// Time each write commit held the embedded store's commit lock (conflict
/// check, the fjall batch, the commit log, watches), seconds (histogram;
/// commit-duration buckets; `on`: `caller`, a runtime task that had the lock
/// at once, or `committer`, the committer thread). Normally microseconds; a
/// long hold is fjall stalling inside the commit (a journal rotation or a
/// flush holding its journal lock), and one with `on="caller"` stopped that
/// runtime worker for as long.
pub const COMMIT_LOCK_HELD_SECONDS: &str = "outpost_store_commit_lock_held_seconds";

/// Upper bounds of the sync-batch buckets, commits.
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

/// Upper bounds of the commit-duration buckets, seconds.
pub const COMMIT_BUCKETS_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Registers the help texts with the installed recorder, and the series of
/// `backend` at zero.
pub fn describe(backend: &'static str) {
    metrics::describe_counter!(
        COMMITS,
        "Store transactions committed (read-only ones included), by backend."
    );
    metrics::describe_counter!(
        CONFLICTS,
        "Store transaction attempts that ended in a conflict (another commit wrote what they read); each is retried."
    );
    metrics::describe_counter!(
        RETRIES,
        "Store transaction attempts retried, by reason: conflict, too_old, unknown_result, other (FoundationDB's other retryable errors)."
    );
    metrics::describe_counter!(
        FAILURES,
        "Store transactions that failed for good, by reason: timeout, retry_limit, error (a non-retryable store error)."
    );
    metrics::describe_histogram!(
        COMMIT_SECONDS,
        "Duration of store commit calls (including the durable flush), seconds."
    );
    let _ = metrics::counter!(COMMITS, "backend" => backend);
    let _ = metrics::counter!(CONFLICTS, "backend" => backend);
    let _ = metrics::histogram!(COMMIT_SECONDS, "backend" => backend);
    for reason in ["conflict", "too_old", "unknown_result", "other"] {
        let _ = metrics::counter!(RETRIES, "backend" => backend, "reason" => reason);
    }
    for reason in ["timeout", "retry_limit", "error"] {
        let _ = metrics::counter!(FAILURES, "backend" => backend, "reason" => reason);
    }
    if backend == "embedded" {
        describe_group_commit();
    }
}

fn describe_group_commit() {
    metrics::describe_counter!(
        JOURNAL_SYNCS,
        "Journal syncs (fsyncs) of the embedded store's group commit; each makes a batch of commits durable."
    );
    metrics::describe_histogram!(
        JOURNAL_SYNC_SECONDS,
        "Duration of each embedded-store journal sync (handing the journal to the OS and the fdatasync), seconds."
    );
    metrics::describe_histogram!(
        SYNC_BATCH,
        "Commits each embedded-store journal sync made durable (the group-commit batch size)."
    );
    metrics::describe_histogram!(
        COMMIT_LOCK_HELD_SECONDS,
        "Time each embedded-store write commit held the commit lock, seconds, by who held it: caller (a runtime task) or committer (the committer thread). Long holds are fjall stalling inside a commit."
    );
    let _ = metrics::counter!(JOURNAL_SYNCS);
    for on in ["caller", "committer"] {
        let _ = metrics::histogram!(COMMIT_LOCK_HELD_SECONDS, "on" => on);
    }
}

/// A write commit held the embedded store's commit lock for `held`, on a
/// caller's task or on the committer thread (`on`).
pub(crate) fn commit_lock_held(on: &'static str, held: Duration) {
    metrics::histogram!(COMMIT_LOCK_HELD_SECONDS, "on" => on).record(held.as_secs_f64());
}

/// A journal sync that took `took` made `commits` commits durable.
pub(crate) fn journal_synced(took: Duration, commits: usize) {
    metrics::counter!(JOURNAL_SYNCS).increment(1);
    metrics::histogram!(JOURNAL_SYNC_SECONDS).record(took.as_secs_f64());
    metrics::histogram!(SYNC_BATCH).record(commits as f64);
}

/// A commit call finished after `took` (`ok`: it committed).
pub(crate) fn commit(backend: &'static str, took: Duration, ok: bool) {
    metrics::histogram!(COMMIT_SECONDS, "backend" => backend).record(took.as_secs_f64());
    if ok {
        metrics::counter!(COMMITS, "backend" => backend).increment(1);
    }
}

/// An attempt failed with the retryable `e` and runs again.
pub(crate) fn retry(backend: &'static str, e: &StoreError) {
    let reason = match e {
        StoreError::Conflict => {
            metrics::counter!(CONFLICTS, "backend" => backend).increment(1);
            "conflict"
        }
        StoreError::TransactionTooOld => "too_old",
        StoreError::CommitUnknownResult => "unknown_result",
        _ => "other",
    };
    metrics::counter!(RETRIES, "backend" => backend, "reason" => reason).increment(1);
}

/// A transaction failed for good with `e` (a caller's own error is not counted).
pub(crate) fn failed(backend: &'static str, e: &StoreError) {
    let reason = match e {
        StoreError::Timeout => "timeout",
        StoreError::RetryLimitReached { .. } => "retry_limit",
        _ => "error",
    };
    metrics::counter!(FAILURES, "backend" => backend, "reason" => reason).increment(1);
}

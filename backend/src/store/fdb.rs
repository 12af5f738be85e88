//! The FoundationDB backend (cargo feature `fdb`, client API 7.3).
//!
//! **Not run on our build machines**: FoundationDB cannot be installed there, so CI
//! only compile-checks this module (`cargo check`/`clippy --features fdb`, which
//! needs `libclang-dev`). The shared conformance suite runs against it wherever a
//! cluster is reachable:
//!
//! ```text
//! # a machine with the FoundationDB client library (libfdb_c 7.3) and a cluster
//! export FDB_CLUSTER_FILE=/etc/foundationdb/fdb.cluster
//! cargo test -p outpost-backend --features fdb --test store_conformance
//! ```
//!
//! # Using it
//!
//! The FoundationDB network thread must be started once per process before
//! [`FdbStore::open`], and stopped before the process exits:
//! `let _network = unsafe { foundationdb::boot() };` in `main`, kept alive until
//! the end. That call is `unsafe` (its guard must be dropped before exit), and this
//! crate forbids `unsafe`, so the binary does it. Select the backend with
//! `backend = "fdb"` in [`StoreConfig`](super::StoreConfig); the cluster file comes
//! from [`FdbConfig::cluster_file`](super::FdbConfig) or FoundationDB's defaults
//! (`$FDB_CLUSTER_FILE`, then `/etc/foundationdb/fdb.cluster`).
//!
//! # Mapping
//!
//! Everything maps onto the native operation: reads, snapshot reads, range reads
//! (paged with `WantAll`), set/clear/clear_range, `ADD`, `SET_VERSIONSTAMPED_KEY`,
//! `get_versionstamp`, `watch`. Limits are also checked by this layer as each write
//! is made, exactly as on the embedded backend, so errors surface at the same call
//! on both.
//!
//! # Retries: FoundationDB's own
//!
//! The retry loop is FoundationDB's: after a failed read or commit it asks the
//! client library's predicates whether the error is retryable (every transient
//! code, not a hand-kept list; see [`fdb_errors`](super::fdb_errors)) and, if so,
//! calls `fdb_transaction_on_error`, which backs off with FoundationDB's schedule
//! and resets the transaction, then runs the closure again. Errors that may have
//! committed (`commit_unknown_result`, ...) are retried the same way and surface
//! as [`StoreError::CommitUnknownResult`] if the loop gives up. The transaction
//! options `timeout`, `retry_limit`, `size_limit` and `max_retry_delay` are set
//! from [`FdbConfig`] and the call's [`TransactOptions`] (they persist across
//! `on_error`). As in the `foundationdb` crate's own `run`, the closure must not
//! keep a clone of the transaction past its future: committing needs sole
//! ownership.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use foundationdb::options::{MutationType, StreamingMode, TransactionOption};
use foundationdb::{Database, FdbError, KeySelector, RangeOption};

use super::error::{check_key, check_value};
use super::fdb_errors::{self, FdbErrorPredicates, Next};
use super::{
    limits, split_versionstamped_key, FdbConfig, KeyValue, Store, StoreError, TransactOptions, Transaction,
    TxError, TxVersionstamp, VersionstampFuture, Watch,
};

/// Error creating the FoundationDB database handle.
#[derive(Debug, thiserror::Error)]
pub enum FdbOpenError {
    /// The cluster file path is not valid UTF-8.
    #[error("fdb: cluster file path is not UTF-8")]
    ClusterFilePath,
    /// The client library refused to open the database (network not booted, bad
    /// cluster file, ...).
    #[error("fdb: opening database: {0}")]
    Open(#[source] FdbError),
    /// The `[fdb]` settings are invalid.
    #[error(transparent)]
    Config(#[from] super::StoreConfigError),
}

/// A FoundationDB [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct FdbStore {
    db: Arc<Database>,
    config: Arc<FdbConfig>,
}

impl std::fmt::Debug for FdbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdbStore").finish_non_exhaustive()
    }
}

impl FdbStore {
    /// Opens the database named by `config` (the network must already run; see the
    /// [module docs](self)).
    pub fn open(config: &FdbConfig) -> Result<Self, FdbOpenError> {
        config.validate()?;
        let path = match &config.cluster_file {
            Some(p) => Some(p.to_str().ok_or(FdbOpenError::ClusterFilePath)?),
            None => None,
        };
        let db = Database::new(path).map_err(FdbOpenError::Open)?;
        Ok(FdbStore {
            db: Arc::new(db),
            config: Arc::new(config.clone()),
        })
    }

    /// Sets the transaction options of one `transact` call: the call's bounds,
    /// capped by the configured ones.
    fn set_options(
        &self,
        trx: &foundationdb::Transaction,
        options: &TransactOptions,
    ) -> Result<(), StoreError> {
        let c = &self.config;
        let timeout_ms = match (
            options.timeout.map(|t| t.as_millis().max(1) as u64),
            c.transaction_timeout_ms,
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let attempts = match (options.retry_limit, c.retry_limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let clamp = |v: u64| i32::try_from(v).unwrap_or(i32::MAX);
        if let Some(ms) = timeout_ms {
            trx.set_option(TransactionOption::Timeout(clamp(ms)))
                .map_err(map_err)?;
        }
        if let Some(n) = attempts {
            // FoundationDB counts retries, not attempts.
            trx.set_option(TransactionOption::RetryLimit(clamp(u64::from(
                n.saturating_sub(1),
            ))))
            .map_err(map_err)?;
        }
        trx.set_option(TransactionOption::SizeLimit(clamp(u64::from(c.size_limit_bytes))))
            .map_err(map_err)?;
        trx.set_option(TransactionOption::MaxRetryDelay(clamp(u64::from(
            c.max_retry_delay_ms,
        ))))
        .map_err(map_err)?;
        Ok(())
    }
}

impl FdbErrorPredicates for FdbError {
    fn code(&self) -> i32 {
        FdbError::code(*self)
    }
    fn is_retryable(&self) -> bool {
        FdbError::is_retryable(*self)
    }
    fn is_maybe_committed(&self) -> bool {
        FdbError::is_maybe_committed(*self)
    }
}

/// Maps a FoundationDB error to a [`StoreError`] (see [`fdb_errors::classify`]).
fn map_err(e: FdbError) -> StoreError {
    fdb_errors::classify(&e, || StoreError::backend(e))
}

struct FdbTxInner {
    trx: foundationdb::Transaction,
    size: AtomicUsize,
    /// The last FoundationDB error a read of this attempt met: what the retry
    /// loop hands to `on_error` when the closure fails with it.
    last_error: std::sync::Mutex<Option<FdbError>>,
}

/// A FoundationDB transaction. Cheap to clone; clones must be dropped before the
/// closure's future completes.
#[derive(Clone)]
pub struct FdbTx(Arc<FdbTxInner>);

impl std::fmt::Debug for FdbTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdbTx").finish_non_exhaustive()
    }
}

impl FdbTx {
    fn grow(&self, bytes: usize) -> Result<(), StoreError> {
        let size = self.0.size.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if size > limits::MAX_TRANSACTION_BYTES {
            self.0.size.fetch_sub(bytes, Ordering::Relaxed);
            return Err(StoreError::TransactionTooLarge {
                size,
                limit: limits::MAX_TRANSACTION_BYTES,
            });
        }
        Ok(())
    }

    fn new(trx: foundationdb::Transaction) -> Self {
        FdbTx(Arc::new(FdbTxInner {
            trx,
            size: AtomicUsize::new(0),
            last_error: std::sync::Mutex::new(None),
        }))
    }

    /// Maps `e`, remembering it for the retry loop.
    fn fail(&self, e: FdbError) -> StoreError {
        *self.0.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        map_err(e)
    }

    /// The FoundationDB error behind `e`, a store error the closure returned.
    fn fdb_error_of(&self, e: &StoreError) -> Option<FdbError> {
        match e {
            StoreError::Backend(b) => b.downcast_ref::<FdbError>().copied(),
            StoreError::Conflict
            | StoreError::TransactionTooOld
            | StoreError::CommitUnknownResult
            | StoreError::Timeout => *self.0.last_error.lock().unwrap_or_else(|p| p.into_inner()),
            _ => None,
        }
    }

    async fn read(&self, key: &[u8], snapshot: bool) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        Ok(self
            .0
            .trx
            .get(key, snapshot)
            .await
            .map_err(|e| self.fail(e))?
            .map(|v| v.to_vec()))
    }

    async fn read_range(
        &self,
        begin: &[u8],
        end: &[u8],
        limit: Option<usize>,
        reverse: bool,
        snapshot: bool,
    ) -> Result<Vec<KeyValue>, StoreError> {
        check_key(begin)?;
        check_key(end)?;
        if begin >= end || limit == Some(0) {
            return Ok(Vec::new());
        }
        let mut opt = RangeOption {
            begin: KeySelector::first_greater_or_equal(begin.to_vec()),
            end: KeySelector::first_greater_or_equal(end.to_vec()),
            limit,
            mode: StreamingMode::WantAll,
            reverse,
            ..RangeOption::default()
        };
        let mut out = Vec::new();
        let mut iteration = 1;
        loop {
            let values = self
                .0
                .trx
                .get_range(&opt, iteration, snapshot)
                .await
                .map_err(|e| self.fail(e))?;
            out.extend(values.iter().map(|kv| KeyValue {
                key: kv.key().to_vec(),
                value: kv.value().to_vec(),
            }));
            match opt.next_range(&values) {
                Some(next) => opt = next,
                None => break,
            }
            iteration += 1;
        }
        Ok(out)
    }
}

impl Transaction for FdbTx {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(key, false).await
    }

    async fn get_snapshot(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(key, true).await
    }

    async fn get_range(
        &self,
        begin: &[u8],
        end: &[u8],
        limit: Option<usize>,
        reverse: bool,
    ) -> Result<Vec<KeyValue>, StoreError> {
        self.read_range(begin, end, limit, reverse, false).await
    }

    async fn get_range_snapshot(
        &self,
        begin: &[u8],
        end: &[u8],
        limit: Option<usize>,
        reverse: bool,
    ) -> Result<Vec<KeyValue>, StoreError> {
        self.read_range(begin, end, limit, reverse, true).await
    }

    fn set(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        check_key(key)?;
        check_value(value)?;
        self.grow(key.len() + value.len())?;
        self.0.trx.set(key, value);
        Ok(())
    }

    fn clear(&self, key: &[u8]) -> Result<(), StoreError> {
        check_key(key)?;
        self.grow(key.len())?;
        self.0.trx.clear(key);
        Ok(())
    }

    fn clear_range(&self, begin: &[u8], end: &[u8]) -> Result<(), StoreError> {
        check_key(begin)?;
        check_key(end)?;
        if begin >= end {
            return Ok(());
        }
        self.grow(begin.len() + end.len())?;
        self.0.trx.clear_range(begin, end);
        Ok(())
    }

    fn atomic_add(&self, key: &[u8], delta: i64) -> Result<(), StoreError> {
        check_key(key)?;
        self.grow(key.len() + 8)?;
        self.0.trx.atomic_op(key, &delta.to_le_bytes(), MutationType::Add);
        Ok(())
    }

    fn set_versionstamped_key(&self, key_with_offset: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let (key, _) = split_versionstamped_key(key_with_offset)?;
        check_key(key)?;
        check_value(value)?;
        self.grow(key.len() + value.len())?;
        self.0
            .trx
            .atomic_op(key_with_offset, value, MutationType::SetVersionstampedKey);
        Ok(())
    }

    fn versionstamp(&self) -> VersionstampFuture {
        let fut = self.0.trx.get_versionstamp();
        VersionstampFuture::new(async move {
            let slice = fut.await.map_err(|e| match e.code() {
                // transaction_cancelled / used_during_commit / no commit
                1025 | 2017 => StoreError::Cancelled,
                _ => map_err(e),
            })?;
            TxVersionstamp::try_from(&slice[..])
                .map_err(|_| StoreError::backend(std::io::Error::other("versionstamp length")))
        })
    }

    fn watch(&self, key: &[u8]) -> Result<Watch, StoreError> {
        check_key(key)?;
        let fut = self.0.trx.watch(key);
        Ok(Watch::new(async move {
            fut.await.map_err(|e| match e.code() {
                1025 | 1101 => StoreError::Cancelled,
                _ => map_err(e),
            })
        }))
    }
}

/// The transaction back from a finished attempt, if the closure kept no clone.
fn take_trx(tx: FdbTx) -> Result<foundationdb::Transaction, StoreError> {
    Arc::try_unwrap(tx.0).map(|inner| inner.trx).map_err(|_| {
        StoreError::backend(std::io::Error::other(
            "a clone of the transaction outlived its closure; cannot commit",
        ))
    })
}

/// A failed attempt's transaction, for `on_error`.
enum Failed {
    /// The commit failed.
    Commit(foundationdb::TransactionCommitError),
    /// A read (or another operation) of the closure failed.
    Op(foundationdb::Transaction),
}

/// The `backend` label of this backend's metrics.
const BACKEND: &str = "fdb";

impl Store for FdbStore {
    type Tx = FdbTx;

    async fn transact<T, E, F, Fut>(&self, options: TransactOptions, mut f: F) -> Result<T, TxError<E>>
    where
        F: FnMut(Self::Tx) -> Fut + Send,
        Fut: std::future::Future<Output = Result<T, TxError<E>>> + Send,
        T: Send,
        E: Send,
    {
        // The closure is also bounded here, in case it awaits something other than
        // the store; FoundationDB's `timeout` option bounds the store's own calls.
        let deadline = options.timeout.map(|t| tokio::time::Instant::now() + t);
        let mut trx = self.db.create_trx().map_err(map_err)?;
        self.set_options(&trx, &options)?;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let tx = FdbTx::new(trx);
            let run = f(tx.clone());
            let outcome = match deadline {
                Some(d) => tokio::time::timeout_at(d, run)
                    .await
                    .unwrap_or(Err(TxError::Store(StoreError::Timeout))),
                None => run.await,
            };
            // The error of this attempt and the transaction to hand to on_error.
            let (error, failed) = match outcome {
                Ok(value) => {
                    let started = std::time::Instant::now();
                    let committed = take_trx(tx)?.commit().await;
                    super::metrics::commit(BACKEND, started.elapsed(), committed.is_ok());
                    match committed {
                        Ok(_) => return Ok(value),
                        Err(e) => (*e, Failed::Commit(e)),
                    }
                }
                Err(TxError::Store(e)) => match tx.fdb_error_of(&e) {
                    Some(code) => (code, Failed::Op(take_trx(tx)?)),
                    None => {
                        super::metrics::failed(BACKEND, &e);
                        return Err(TxError::Store(e));
                    }
                },
                Err(user) => return Err(user),
            };
            let past_deadline = deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
            match fdb_errors::next_step(&error, attempts, options.retry_limit, past_deadline, || {
                StoreError::backend(error)
            }) {
                Next::Fail(e) => {
                    super::metrics::failed(BACKEND, &e);
                    return Err(TxError::Store(e));
                }
                Next::Retry => {
                    super::metrics::retry(BACKEND, &map_err(error));
                    tracing::trace!(attempts, code = error.code(), "retrying transaction");
                    // FoundationDB's backoff; it resets the transaction (options
                    // persist) or reports why it will not retry.
                    trx = match failed {
                        Failed::Commit(e) => e.on_error().await,
                        Failed::Op(t) => t.on_error(error).await,
                    }
                    .map_err(map_err)?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mapping against the real client library's predicates (runs wherever
    /// tests with `--features fdb` link, i.e. where libfdb_c is installed; no
    /// cluster needed).
    #[test]
    fn error_mapping_follows_the_binding_predicates() {
        // A few well-known codes first, so the test cannot pass vacuously.
        let future_version = FdbError::from_code(1009);
        let process_behind = FdbError::from_code(1037);
        let unknown_result = FdbError::from_code(1021);
        let too_large = FdbError::from_code(2101);
        assert!(future_version.is_retryable() && process_behind.is_retryable());
        assert!(unknown_result.is_maybe_committed());
        assert!(!too_large.is_retryable());
        let mut retried = 0;
        for code in (1000..1300).chain(2000..2200) {
            let e = FdbError::from_code(code);
            let next = fdb_errors::next_step(&e, 1, Some(100), false, || StoreError::backend(e));
            if e.is_maybe_committed() {
                assert!(matches!(map_err(e), StoreError::CommitUnknownResult), "{code}");
            }
            match next {
                Next::Retry => {
                    assert!(e.is_retryable(), "{code}");
                    retried += 1;
                }
                Next::Fail(_) => assert!(!e.is_retryable(), "{code}"),
            }
        }
        assert!(retried >= 5, "only {retried} retryable codes");
    }
}

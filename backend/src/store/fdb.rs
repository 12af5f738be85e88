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
//! `get_versionstamp`, `watch`. FoundationDB error codes become typed
//! [`StoreError`]s (1020 `not_committed` → `Conflict`, 1007 → `TransactionTooOld`,
//! 1021 → `CommitUnknownResult`, 2101/2102/2103 → size errors, 1031 → `Timeout`).
//! Limits are also checked by this layer as each write is made, exactly as on the
//! embedded backend, so errors surface at the same call on both.
//!
//! The retry loop creates a fresh transaction per attempt and backs off with the
//! same jittered exponential schedule as the embedded backend (rather than
//! `fdb_transaction_on_error`), so both backends retry identically. As in the
//! `foundationdb` crate's own `run`, the closure must not keep a clone of the
//! transaction past its future: committing needs sole ownership.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use foundationdb::options::{MutationType, StreamingMode};
use foundationdb::{Database, FdbError, KeySelector, RangeOption};

use super::error::{check_key, check_value};
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
}

/// A FoundationDB [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct FdbStore {
    db: Arc<Database>,
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
        let path = match &config.cluster_file {
            Some(p) => Some(p.to_str().ok_or(FdbOpenError::ClusterFilePath)?),
            None => None,
        };
        let db = Database::new(path).map_err(FdbOpenError::Open)?;
        Ok(FdbStore { db: Arc::new(db) })
    }
}

/// Maps a FoundationDB error to a [`StoreError`].
fn map_err(e: FdbError) -> StoreError {
    match e.code() {
        1020 => StoreError::Conflict,
        1007 => StoreError::TransactionTooOld,
        1021 => StoreError::CommitUnknownResult,
        1031 => StoreError::Timeout,
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
        _ => StoreError::backend(e),
    }
}

struct FdbTxInner {
    trx: foundationdb::Transaction,
    size: AtomicUsize,
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

    async fn read(&self, key: &[u8], snapshot: bool) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        Ok(self
            .0
            .trx
            .get(key, snapshot)
            .await
            .map_err(map_err)?
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
                .map_err(map_err)?;
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

impl FdbStore {
    async fn commit(tx: FdbTx) -> Result<(), StoreError> {
        let inner = Arc::try_unwrap(tx.0).map_err(|_| {
            StoreError::backend(std::io::Error::other(
                "a clone of the transaction outlived its closure; cannot commit",
            ))
        })?;
        inner
            .trx
            .commit()
            .await
            .map(|_| ())
            .map_err(|e| map_err(FdbError::from(e)))
    }
}

impl Store for FdbStore {
    type Tx = FdbTx;

    async fn transact<T, E, F, Fut>(&self, options: TransactOptions, mut f: F) -> Result<T, TxError<E>>
    where
        F: FnMut(Self::Tx) -> Fut + Send,
        Fut: std::future::Future<Output = Result<T, TxError<E>>> + Send,
        T: Send,
        E: Send,
    {
        let deadline = options.timeout.map(|t| tokio::time::Instant::now() + t);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let trx = self.db.create_trx().map_err(map_err)?;
            let tx = FdbTx(Arc::new(FdbTxInner {
                trx,
                size: AtomicUsize::new(0),
            }));
            let run = f(tx.clone());
            let outcome = match deadline {
                Some(d) => tokio::time::timeout_at(d, run)
                    .await
                    .unwrap_or(Err(TxError::Store(StoreError::Timeout))),
                None => run.await,
            };
            let result = match outcome {
                Ok(value) => Self::commit(tx).await.map(|()| value).map_err(TxError::Store),
                Err(e) => Err(e),
            };
            match result {
                Err(TxError::Store(e)) if e.is_retryable() => {
                    if options.retry_limit.is_some_and(|l| attempts >= l) {
                        return Err(TxError::Store(StoreError::RetryLimitReached {
                            attempts,
                            last: Box::new(e),
                        }));
                    }
                    if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                        return Err(TxError::Store(StoreError::Timeout));
                    }
                    super::embedded::backoff(attempts).await;
                }
                other => return other,
            }
        }
    }
}

//! The embedded backend: fjall 3 in a data directory, owned by one process.
//!
//! # Design
//!
//! fjall provides the storage: an LSM keyspace (`data`) with atomic write batches,
//! MVCC snapshots and a journal. fjall's own `OptimisticTxDatabase` tracks point
//! writes only, applies writes as they were made (so no atomic ops without a read
//! conflict, no blind range clears of keys other transactions insert, no
//! versionstamps) and has no transaction age limit. So this layer implements
//! FoundationDB's transaction model itself on top of plain fjall batches and
//! snapshots, the way FoundationDB's proxies and resolvers do:
//!
//! - **Versions.** Every committed write transaction gets the next commit version
//!   (a `u64`, persisted in every batch under `meta/version`, so versions and
//!   versionstamps keep increasing across restarts). A transaction's read version is
//!   the last commit version when it began, taken together with a fjall snapshot
//!   under the commit lock (or, when a commit stalled in fjall holds the lock,
//!   read from the snapshot's own `meta/version`), so the snapshot holds exactly
//!   the commits up to it.
//! - **Conflicts** ([`conflict`]): transactions record point and range reads; a
//!   bounded log of recent commits records written keys and cleared ranges. At
//!   commit, under the commit lock, a transaction fails with `Conflict` if a commit
//!   newer than its read version wrote into its read set. The log keeps commits of
//!   the last [`limits::MAX_TRANSACTION_AGE`] (+1 s) and at most
//!   [`EmbeddedConfig::max_conflict_log`] entries; a transaction whose read version
//!   fell out of it, or older than 5 s, fails with `TransactionTooOld`.
//! - **Applying** happens under the commit lock, against the latest data: cleared
//!   ranges are expanded to the keys present *now*, atomic adds read the value
//!   present *now*, versionstamps are filled with the commit version. The result is
//!   one fjall batch (atomic in the journal and in memory) (the commit path is
//!   `commit.rs`).
//! - **Watches** ([`watch`]) are checked against every written key under the same
//!   lock; they fire when the change becomes visible (for durable commits, possibly
//!   just before the writer's commit returns).
//! - **Durability** ([`group_commit`]): in [`PersistMode::Durable`] a commit returns
//!   only after its journal entry is fsync'd; concurrent commits share one fsync
//!   (under load the flusher lingers, at most `group_commit_linger_us` and by
//!   default only until as many commits wait as the last fsync released, so more
//!   share it). Read-only transactions wait until the data they read is durable, so nothing a
//!   crash could undo is ever returned — except what [`Durability::Relaxed`](crate::store::Durability::Relaxed)
//!   commits wrote: they return at once, do not make readers wait, and become
//!   durable with the next durable commit's fsync.
//!
//! The critical section (conflict check, apply, journal write into fjall's buffer)
//! takes microseconds and runs on the calling task; point and range reads are
//! served from fjall's memtables and block cache on the calling task too. The
//! fsync (the long wait) runs on a dedicated thread. fjall can stall a commit
//! inside the lock (a flush holding its locks through an fsync; its write
//! backpressure, which sleeps while flushes fall behind): a task that cannot
//! have the lock within 200 µs hands its commit to the [`committer`] thread
//! rather than stop its runtime worker, so such a stall stops one runtime
//! worker at most. Reads still take the tree's version lock for a moment and
//! wait while someone holds it for writing. The lsm-tree under fjall is
//! patched (`third_party/lsm-tree.patch`) so that flushes and compactions hold
//! it only to install a new version, not through their fsyncs or a flushed
//! memtable's free, which stopped both runtime workers for 100-165 ms at
//! flushes (`benches/store_stall.rs` measures how long the runtime stops).
//!
//! This backend never produces `CommitUnknownResult` except when an fsync fails
//! (the store then refuses every further write until it is reopened) or when its
//! fault mode ([`faults`], off by default) injects FoundationDB's failure modes.

pub mod background;
mod commit;
pub mod committer;
pub mod conflict;
pub mod faults;
pub mod group_commit;
pub mod holder;
mod tx;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use rand::Rng;
use serde::Deserialize;

use self::committer::Committer;
use self::conflict::CommitLog;
use self::faults::{CommitFault, FaultConfig, FaultConfigError, FaultCounts, FaultInjector};
use self::group_commit::GroupCommit;
use self::watch::WatchRegistry;
use super::{limits, Store, StoreError, TransactOptions, TxError};
pub use tx::EmbeddedTx;

const VERSION_KEY: &[u8] = b"version";

/// When a commit counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersistMode {
    /// The commit returns once its journal entry is on disk (`fdatasync`), shared
    /// with concurrent commits (group commit). Survives power loss. The default:
    /// use it for anything a player would miss.
    #[default]
    Durable,
    /// The commit returns once its journal entry is handed to the OS (`write`).
    /// Survives the process crashing or being killed, not an OS crash or power
    /// loss. Much lower latency with one writer; for caches, tests and benchmarks.
    Buffered,
}

/// Configuration of the embedded store. Validated by [`EmbeddedConfig::validate`]
/// (called by [`EmbeddedStore::open`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedConfig {
    /// Data directory; created if missing. One process may open it at a time.
    pub path: PathBuf,
    /// Commit durability. Default: [`PersistMode::Durable`].
    #[serde(default)]
    pub persist: PersistMode,
    /// fjall block cache size, in bytes. Default: 64 MiB. More cache means fewer
    /// disk reads on a cold working set, at the cost of resident memory.
    #[serde(default = "default_cache_bytes")]
    pub cache_bytes: u64,
    /// Maximum number of recent commits kept for conflict checks (each holds its
    /// written keys). Default: 1,000,000. Commits are also dropped after about 6 s;
    /// this bound only matters above ~170,000 commits/s, where transactions that
    /// started before the oldest kept commit fail with `TransactionTooOld`.
    #[serde(default = "default_max_conflict_log")]
    pub max_conflict_log: usize,
    /// Group commit linger, in µs (durable mode): when the last fsync covered more
    /// than one commit, the next one first waits up to this long for more commits
    /// to join it. Trades up to this much latency per durable commit under load for
    /// fewer fsyncs (each costs ~90 µs of CPU in a VM). Never applies to a lone
    /// commit on an idle store. Default 1,000 (1 ms, small beside a network round
    /// trip); 0 turns it off. With [`group_commit_adaptive`](Self::group_commit_adaptive)
    /// (the default) this is only the upper bound.
    #[serde(default = "default_group_commit_linger_us")]
    pub group_commit_linger_us: u64,
    /// Adaptive group commit (durable mode). `true` (the default): the linger ends
    /// as soon as as many commits wait as the last fsync released (everyone that
    /// fsync woke is back, so waiting longer adds latency and no sharing), at the
    /// latest after `group_commit_linger_us`. Writers in a closed loop then pay no
    /// idle linger (the fixed linger cut durable throughput 2.3–3× at 16–64
    /// writers), while commits that trickle in (a gateway's) still share fsyncs.
    /// Cost: when the number of concurrent writers drops, one fsync waits the whole
    /// linger. `false`: always wait the whole linger (the behaviour before; for A/B
    /// runs). See `group_commit.rs`.
    #[serde(default = "default_group_commit_adaptive")]
    pub group_commit_adaptive: bool,
    /// Nice value of fjall's background threads (memtable flushes and
    /// compactions; Linux), 0–19. Default 10: while the cores are busy, a flush
    /// (about 0.3 s of CPU at once) waits for the threads that serve requests
    /// instead of delaying them (see [`background`]). Cost: under saturation
    /// longer than a flush, flushes fall behind and fjall stalls writes, as on
    /// a slow disk. 0: the threads keep the process's priority. It applies to
    /// this store's own threads.
    #[serde(default = "default_background_nice")]
    pub background_nice: i32,
    /// Fault mode (see [`faults`]): injects FoundationDB's failure modes at the
    /// given rates. Default: none (off, and free). For tests and chaos runs only:
    /// it makes commits fail on purpose.
    #[serde(default)]
    pub faults: Option<FaultConfig>,
}

fn default_cache_bytes() -> u64 {
    64 << 20
}

fn default_max_conflict_log() -> usize {
    1_000_000
}

fn default_group_commit_linger_us() -> u64 {
    1_000
}

fn default_group_commit_adaptive() -> bool {
    true
}

fn default_background_nice() -> i32 {
    10
}

/// An invalid [`EmbeddedConfig`].
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedConfigError {
    /// `path` is empty.
    #[error("embedded store: `path` must not be empty")]
    EmptyPath,
    /// `max_conflict_log` is zero.
    #[error("embedded store: `max_conflict_log` must be at least 1")]
    ZeroConflictLog,
    /// `background_nice` is outside 0–19.
    #[error("embedded store: `background_nice` must be 0-19 (got {0})")]
    BackgroundNice(i32),
    /// The `faults` table is invalid.
    #[error(transparent)]
    Faults(#[from] FaultConfigError),
}

impl EmbeddedConfig {
    /// A durable store in `path` with default settings.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        EmbeddedConfig {
            path: path.into(),
            persist: PersistMode::Durable,
            cache_bytes: default_cache_bytes(),
            max_conflict_log: default_max_conflict_log(),
            group_commit_linger_us: default_group_commit_linger_us(),
            group_commit_adaptive: default_group_commit_adaptive(),
            background_nice: default_background_nice(),
            faults: None,
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), EmbeddedConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(EmbeddedConfigError::EmptyPath);
        }
        if self.max_conflict_log == 0 {
            return Err(EmbeddedConfigError::ZeroConflictLog);
        }
        if !(0..=background::MAX_NICE).contains(&self.background_nice) {
            return Err(EmbeddedConfigError::BackgroundNice(self.background_nice));
        }
        if let Some(f) = &self.faults {
            f.validate()?;
        }
        Ok(())
    }
}

/// Error opening an [`EmbeddedStore`].
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] EmbeddedConfigError),
    /// fjall could not open or recover the data directory.
    #[error("opening embedded store at {path}: {source}")]
    Fjall {
        /// The data directory.
        path: PathBuf,
        /// fjall's error.
        source: fjall::Error,
    },
    /// Another process (or another open store of this one) holds the directory.
    #[error("embedded store at {path} is locked {holder}")]
    Locked {
        /// The data directory.
        path: PathBuf,
        /// Who holds it, from its pid file.
        holder: holder::Holder,
    },
    /// Starting the flusher thread or reading the directory failed.
    #[error("opening embedded store: {0}")]
    Io(#[from] std::io::Error),
    /// The stored commit version is malformed.
    #[error("embedded store at {0}: corrupt commit version record")]
    CorruptVersion(PathBuf),
}

/// What commits share, under the commit lock.
struct CommitState {
    /// Last commit version applied (visible).
    version: u64,
    /// Recent commits' written keys and cleared ranges, for conflict checks.
    log: CommitLog,
    /// Watches waiting for a write of their key.
    watches: WatchRegistry,
}

pub(super) struct Inner {
    db: Database,
    pub(super) data: Keyspace,
    meta: Keyspace,
    persist: PersistMode,
    /// The commit lock: commits apply one at a time, in version order.
    /// parking_lot's, for its timed lock (see `commit::LOCK_PATIENCE`).
    commit: parking_lot::Mutex<CommitState>,
    /// Runs the commits that would otherwise wait for the commit lock on a
    /// runtime worker (see [`committer`]).
    committer: Committer,
    /// The fault injector; `None` (the default) costs one check per commit/watch.
    faults: Option<FaultInjector>,
    /// Present in durable mode. Declared last: dropped after the keyspaces, and it
    /// flushes everything pending before its thread exits.
    group: Option<GroupCommit>,
}

/// The embedded [`Store`]: fjall in a data directory (see the [module docs](self)).
/// Cheap to clone; the database closes when the last clone is dropped.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("persist", &self.inner.persist)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (creating or recovering) the store described by `config`. The disk
    /// work runs on tokio's blocking pool.
    pub async fn open(config: EmbeddedConfig) -> Result<Self, OpenError> {
        config.validate()?;
        tokio::task::spawn_blocking(move || Self::open_blocking(&config))
            .await
            .map_err(|e| OpenError::Io(std::io::Error::other(e)))?
    }

    fn open_blocking(config: &EmbeddedConfig) -> Result<Self, OpenError> {
        let fjall_err = |source| OpenError::Fjall {
            path: config.path.clone(),
            source,
        };
        let workers_before = background::worker_tids();
        let db = Database::builder(&config.path)
            .cache_size(config.cache_bytes)
            .worker_threads(background::WORKER_COUNT.get())
            .open()
            .map_err(|e| holder::open_error(e, &config.path))?;
        holder::record(&config.path);
        // Not worth failing the open for.
        if let Err(e) = background::lower_new_workers(config.background_nice, &workers_before) {
            tracing::warn!(error = %e, "cannot lower the priority of the store's background threads");
        }
        let data = db
            .keyspace("data", KeyspaceCreateOptions::default)
            .map_err(fjall_err)?;
        let meta = db
            .keyspace("meta", KeyspaceCreateOptions::default)
            .map_err(fjall_err)?;
        let version = match meta.get(VERSION_KEY).map_err(fjall_err)? {
            None => 0,
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| OpenError::CorruptVersion(config.path.clone()))?,
            ),
        };
        let group = match config.persist {
            PersistMode::Durable => Some(GroupCommit::start(
                db.clone(),
                absolute(&config.path),
                version,
                std::time::Duration::from_micros(config.group_commit_linger_us),
                if config.group_commit_adaptive {
                    group_commit::LingerPolicy::Adaptive
                } else {
                    group_commit::LingerPolicy::Fixed
                },
            )?),
            PersistMode::Buffered => None,
        };
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                db,
                data,
                meta,
                persist: config.persist,
                commit: parking_lot::Mutex::new(CommitState {
                    version,
                    log: CommitLog::new(
                        config.max_conflict_log,
                        limits::MAX_TRANSACTION_AGE + Duration::from_secs(1),
                    ),
                    watches: WatchRegistry::default(),
                }),
                committer: Committer::start()?,
                faults: config.faults.clone().map(FaultInjector::new),
                group,
            }),
        })
    }

    /// What the fault mode has injected so far (`None`: fault mode off).
    pub fn fault_counts(&self) -> Option<FaultCounts> {
        self.inner.faults.as_ref().map(FaultInjector::counts)
    }

    /// Makes the next write commits meet `faults`, one each, in order, ahead of
    /// the drawn ones: a test forces, say, "applied, then result unknown" on
    /// exactly the commit it is about. Returns `false` (and scripts nothing) if
    /// the fault mode is off; open the store with a default
    /// [`FaultConfig`] (every rate 0) to script faults only.
    pub fn script_commit_faults(&self, faults: impl IntoIterator<Item = CommitFault>) -> bool {
        match &self.inner.faults {
            Some(f) => {
                f.script(faults);
                true
            }
            None => false,
        }
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Waits before retry `attempt` (1-based count of failed attempts): a yield first,
/// then jittered exponential backoff from 1 ms up to 100 ms.
pub(crate) async fn backoff(attempt: u32) {
    if attempt <= 1 {
        tokio::task::yield_now().await;
        return;
    }
    let base = Duration::from_millis(1 << (attempt - 2).min(7)).min(Duration::from_millis(100));
    let jitter = rand::thread_rng().gen_range(0.5..1.0);
    tokio::time::sleep(base.mul_f64(jitter)).await;
}

/// The `backend` label of this backend's metrics.
const BACKEND: &str = "embedded";

impl Store for EmbeddedStore {
    type Tx = EmbeddedTx;

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
            let tx = match self.begin() {
                Ok(tx) => tx,
                Err(e) => {
                    super::metrics::failed(BACKEND, &e);
                    return Err(TxError::Store(e));
                }
            };
            let run = f(tx.clone());
            // The timeout bounds the closure; a commit that started is awaited
            // to the end, so a timeout never hides a successful commit.
            let outcome = match deadline {
                Some(d) => tokio::time::timeout_at(d, run)
                    .await
                    .unwrap_or(Err(TxError::Store(StoreError::Timeout))),
                None => run.await,
            };
            let result = match outcome {
                Ok(value) => {
                    let started = std::time::Instant::now();
                    let committed = self.commit(&tx, options.durability).await;
                    super::metrics::commit(BACKEND, started.elapsed(), committed.is_ok());
                    committed.map(|()| value).map_err(TxError::Store)
                }
                Err(e) => Err(e),
            };
            drop(tx);
            let give_up = |e: StoreError| {
                super::metrics::failed(BACKEND, &e);
                Err(TxError::Store(e))
            };
            match result {
                Err(TxError::Store(e)) if e.is_retryable() => {
                    if options.retry_limit.is_some_and(|l| attempts >= l) {
                        return give_up(StoreError::RetryLimitReached {
                            attempts,
                            last: Box::new(e),
                        });
                    }
                    if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                        return give_up(StoreError::Timeout);
                    }
                    super::metrics::retry(BACKEND, &e);
                    tracing::trace!(attempts, error = %e, "retrying transaction");
                    backoff(attempts).await;
                }
                Err(TxError::Store(e)) => return give_up(e),
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod committer_tests;
#[cfg(test)]
mod lsm_patch_tests;
#[cfg(test)]
mod tests;

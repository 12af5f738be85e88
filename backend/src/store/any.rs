//! [`AnyStore`]: the backend chosen at runtime from a [`StoreConfig`].

use std::future::Future;
use std::path::PathBuf;

use serde::Deserialize;

use super::embedded::{EmbeddedConfig, EmbeddedConfigError, EmbeddedStore, EmbeddedTx, OpenError};
use super::{KeyValue, Store, StoreError, TransactOptions, Transaction, TxError, VersionstampFuture, Watch};

/// Which backend a [`StoreConfig`] selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// fjall in a local data directory (default).
    #[default]
    Embedded,
    /// A FoundationDB cluster; needs a binary built with cargo feature `fdb`.
    Fdb,
}

/// Settings of the FoundationDB backend. Parsed whether or not the `fdb` feature is
/// compiled in, so one config file works with every build. Validated by
/// [`FdbConfig::validate`].
///
/// The retry loop's own bounds come from each call's
/// [`TransactOptions`](super::TransactOptions) (default: 100 attempts, 10 s); the
/// settings here cap them for the whole process and are passed to FoundationDB as
/// transaction options, so its client enforces them too.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FdbConfig {
    /// Path of the cluster file. Default (`None`): FoundationDB's own default,
    /// i.e. `$FDB_CLUSTER_FILE` or `/etc/foundationdb/fdb.cluster`.
    #[serde(default)]
    pub cluster_file: Option<PathBuf>,
    /// Upper bound, in ms, of a transaction's timeout (all attempts together;
    /// FoundationDB option `timeout`). A call asking for longer, or for none, gets
    /// this. Default: none (each call's own timeout). Lower values shed load faster
    /// when the cluster is unhealthy; too low fails slow-but-healthy transactions.
    #[serde(default)]
    pub transaction_timeout_ms: Option<u64>,
    /// Upper bound of the attempts per transaction (FoundationDB option
    /// `retry_limit`, which counts retries: this minus one). Default: none (each
    /// call's own limit).
    #[serde(default)]
    pub retry_limit: Option<u32>,
    /// Largest transaction, in bytes (FoundationDB option `size_limit`).
    /// Default and maximum 10,000,000 (FoundationDB's own); at least 32.
    #[serde(default = "default_size_limit")]
    pub size_limit_bytes: u32,
    /// Longest backoff between attempts, in ms (FoundationDB option
    /// `max_retry_delay`). Default 1,000 (FoundationDB's own). Lower retries
    /// sooner under contention, at the cost of more conflicting load.
    #[serde(default = "default_max_retry_delay_ms")]
    pub max_retry_delay_ms: u32,
}

fn default_size_limit() -> u32 {
    10_000_000
}

fn default_max_retry_delay_ms() -> u32 {
    1_000
}

impl Default for FdbConfig {
    fn default() -> Self {
        FdbConfig {
            cluster_file: None,
            transaction_timeout_ms: None,
            retry_limit: None,
            size_limit_bytes: default_size_limit(),
            max_retry_delay_ms: default_max_retry_delay_ms(),
        }
    }
}

impl FdbConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), StoreConfigError> {
        let bad = |m: &'static str| Err(StoreConfigError::Fdb(m));
        if self.transaction_timeout_ms == Some(0) {
            return bad("`transaction_timeout_ms` must be at least 1");
        }
        if self.retry_limit == Some(0) {
            return bad("`retry_limit` must be at least 1");
        }
        if !(32..=10_000_000).contains(&self.size_limit_bytes) {
            return bad("`size_limit_bytes` must be within 32..=10000000");
        }
        if self.max_retry_delay_ms == 0 {
            return bad("`max_retry_delay_ms` must be at least 1");
        }
        Ok(())
    }
}

/// Where a keyspace lives. Validated once by [`StoreConfig::validate`] (called by
/// [`AnyStore::open`]).
///
/// ```toml
/// backend = "embedded"            # or "fdb"
/// [embedded]
/// path = "./data/eu-west"
/// persist = "durable"             # or "buffered"
/// [fdb]
/// cluster_file = "/etc/foundationdb/fdb.cluster"
/// transaction_timeout_ms = 5000   # optional caps, see FdbConfig
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Backend to use. Default: [`BackendKind::Embedded`].
    #[serde(default)]
    pub backend: BackendKind,
    /// Embedded settings; required when `backend` is `embedded`.
    #[serde(default)]
    pub embedded: Option<EmbeddedConfig>,
    /// FoundationDB settings; used when `backend` is `fdb`.
    #[serde(default)]
    pub fdb: FdbConfig,
}

impl StoreConfig {
    /// An embedded, durable store in `path`.
    pub fn embedded(path: impl Into<PathBuf>) -> Self {
        StoreConfig {
            backend: BackendKind::Embedded,
            embedded: Some(EmbeddedConfig::new(path)),
            fdb: FdbConfig::default(),
        }
    }

    /// Checks that the selected backend is configured and compiled in.
    pub fn validate(&self) -> Result<(), StoreConfigError> {
        match self.backend {
            BackendKind::Embedded => self
                .embedded
                .as_ref()
                .ok_or(StoreConfigError::MissingEmbedded)?
                .validate()
                .map_err(StoreConfigError::Embedded),
            BackendKind::Fdb if cfg!(feature = "fdb") => self.fdb.validate(),
            BackendKind::Fdb => Err(StoreConfigError::FdbNotCompiled),
        }
    }
}

/// An invalid [`StoreConfig`].
#[derive(Debug, thiserror::Error)]
pub enum StoreConfigError {
    /// `backend = "embedded"` without an `[embedded]` section.
    #[error("store config: backend is `embedded` but the `embedded` section is missing")]
    MissingEmbedded,
    /// The `[embedded]` section is invalid.
    #[error(transparent)]
    Embedded(EmbeddedConfigError),
    /// `backend = "fdb"` in a build without the `fdb` feature.
    #[error(
        "store config: backend is `fdb` but this build lacks the `fdb` cargo feature \
         (rebuild with `cargo build --release --features fdb`)"
    )]
    FdbNotCompiled,
    /// The `[fdb]` section is invalid.
    #[error("store config: fdb: {0}")]
    Fdb(&'static str),
}

/// Error opening an [`AnyStore`].
#[derive(Debug, thiserror::Error)]
pub enum OpenStoreError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] StoreConfigError),
    /// The embedded store failed to open.
    #[error(transparent)]
    Embedded(#[from] OpenError),
    /// The FoundationDB database handle could not be created.
    #[cfg(feature = "fdb")]
    #[error(transparent)]
    Fdb(#[from] super::fdb::FdbOpenError),
}

/// A [`Store`] whose backend is chosen at runtime; what binaries and services hold.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AnyStore {
    /// The embedded backend.
    Embedded(EmbeddedStore),
    /// The FoundationDB backend.
    #[cfg(feature = "fdb")]
    Fdb(super::fdb::FdbStore),
}

impl AnyStore {
    /// Validates `config` and opens the backend it selects.
    pub async fn open(config: &StoreConfig) -> Result<Self, OpenStoreError> {
        config.validate()?;
        match config.backend {
            BackendKind::Embedded => {
                let embedded = config.embedded.clone().ok_or(StoreConfigError::MissingEmbedded)?;
                Ok(AnyStore::Embedded(EmbeddedStore::open(embedded).await?))
            }
            #[cfg(feature = "fdb")]
            BackendKind::Fdb => Ok(AnyStore::Fdb(super::fdb::FdbStore::open(&config.fdb)?)),
            #[cfg(not(feature = "fdb"))]
            BackendKind::Fdb => Err(StoreConfigError::FdbNotCompiled.into()),
        }
    }
}

impl AnyStore {
    /// The backend's name, as in the `backend` label of [`super::metrics`].
    pub fn backend_name(&self) -> &'static str {
        match self {
            AnyStore::Embedded(_) => "embedded",
            #[cfg(feature = "fdb")]
            AnyStore::Fdb(_) => "fdb",
        }
    }
}

/// The transaction of an [`AnyStore`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AnyTx {
    /// An embedded transaction.
    Embedded(EmbeddedTx),
    /// A FoundationDB transaction.
    #[cfg(feature = "fdb")]
    Fdb(super::fdb::FdbTx),
}

macro_rules! delegate {
    ($self:ident, $tx:ident => $e:expr) => {
        match $self {
            AnyTx::Embedded($tx) => $e,
            #[cfg(feature = "fdb")]
            AnyTx::Fdb($tx) => $e,
        }
    };
}

impl Store for AnyStore {
    type Tx = AnyTx;

    async fn transact<T, E, F, Fut>(&self, options: TransactOptions, mut f: F) -> Result<T, TxError<E>>
    where
        F: FnMut(Self::Tx) -> Fut + Send,
        Fut: Future<Output = Result<T, TxError<E>>> + Send,
        T: Send,
        E: Send,
    {
        match self {
            AnyStore::Embedded(s) => s.transact(options, |tx| f(AnyTx::Embedded(tx))).await,
            #[cfg(feature = "fdb")]
            AnyStore::Fdb(s) => s.transact(options, |tx| f(AnyTx::Fdb(tx))).await,
        }
    }
}

impl Transaction for AnyTx {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        delegate!(self, tx => tx.get(key).await)
    }

    async fn get_snapshot(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        delegate!(self, tx => tx.get_snapshot(key).await)
    }

    async fn get_range(
        &self,
        begin: &[u8],
        end: &[u8],
        limit: Option<usize>,
        reverse: bool,
    ) -> Result<Vec<KeyValue>, StoreError> {
        delegate!(self, tx => tx.get_range(begin, end, limit, reverse).await)
    }

    async fn get_range_snapshot(
        &self,
        begin: &[u8],
        end: &[u8],
        limit: Option<usize>,
        reverse: bool,
    ) -> Result<Vec<KeyValue>, StoreError> {
        delegate!(self, tx => tx.get_range_snapshot(begin, end, limit, reverse).await)
    }

    fn set(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        delegate!(self, tx => tx.set(key, value))
    }

    fn clear(&self, key: &[u8]) -> Result<(), StoreError> {
        delegate!(self, tx => tx.clear(key))
    }

    fn clear_range(&self, begin: &[u8], end: &[u8]) -> Result<(), StoreError> {
        delegate!(self, tx => tx.clear_range(begin, end))
    }

    fn atomic_add(&self, key: &[u8], delta: i64) -> Result<(), StoreError> {
        delegate!(self, tx => tx.atomic_add(key, delta))
    }

    fn set_versionstamped_key(&self, key_with_offset: &[u8], value: &[u8]) -> Result<(), StoreError> {
        delegate!(self, tx => tx.set_versionstamped_key(key_with_offset, value))
    }

    fn versionstamp(&self) -> VersionstampFuture {
        delegate!(self, tx => tx.versionstamp())
    }

    fn watch(&self, key: &[u8]) -> Result<Watch, StoreError> {
        delegate!(self, tx => tx.watch(key))
    }
}

//! The [`Store`]: an ordered key-value store with FoundationDB's transaction
//! semantics, and its backends.
//!
//! # Semantics (the same on every backend)
//!
//! - **Serializable optimistic transactions.** [`Store::transact`] runs a closure
//!   against a fresh [`Transaction`]; reads see a consistent snapshot at the
//!   transaction's *read version* plus the transaction's own writes. At commit, if
//!   another transaction committed a write to a key or range this one read (after
//!   the read version), the commit fails with [`StoreError::Conflict`] and the
//!   closure **runs again** with a new transaction. The closure may therefore run
//!   more than once: it must not have side effects outside the transaction (send
//!   messages, bump in-memory counters, ...) unless they are idempotent.
//! - **Snapshot reads** ([`Transaction::get_snapshot`],
//!   [`Transaction::get_range_snapshot`]) add no read conflict.
//! - **Blind writes** (set, clear, clear_range without reading) and **atomic adds**
//!   never cause a conflict for the writer; they do conflict with *other*
//!   transactions that read the keys.
//! - **Versionstamped keys** ([`Transaction::set_versionstamped_key`]) are
//!   conflict-free ordered appends: the commit fills a 10-byte versionstamp (8-byte
//!   big-endian commit version + 2-byte batch order) into the key; stamps increase
//!   with commit order. [`Transaction::versionstamp`] resolves to it after commit.
//! - **Watches** ([`Transaction::watch`]) resolve once the key's value differs from
//!   the value the transaction saw, after the transaction commits.
//! - **Limits** (see [`limits`]): key 10,000 bytes, value 100,000 bytes, transaction
//!   10,000,000 bytes, about 5 s per transaction. They are checked as each operation
//!   is made, on every backend, so nothing that passes locally fails on a cluster.
//! - **Commit result unknown.** On FoundationDB a commit can fail in a way that
//!   leaves its outcome unknown; the retry loop retries it like FoundationDB's own
//!   `run` does. Every write that must not happen twice therefore carries an
//!   idempotency key checked inside its own transaction. The embedded backend
//!   produces this error only in its fault mode ([`embedded::faults`]), which CI
//!   turns on for every service suite; code must not rely on its absence.
//!
//! # Backends
//!
//! - [`embedded::EmbeddedStore`]: fjall 3 in a data directory, one process
//!   (default). Durable (fsync'd, group-committed) commits by default.
//! - `fdb::FdbStore` (cargo feature `fdb`): a FoundationDB cluster, API 7.3.
//!
//! [`AnyStore`] picks one at runtime from a [`StoreConfig`]; code outside this
//! module is written against [`Store`] (generic) or [`AnyStore`] and never knows
//! which backend runs.
//!
//! # Example
//!
//! ```
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use outpost_backend::store::{AnyStore, Store, StoreConfig, Transaction, TxError};
//!
//! let dir = tempfile::tempdir()?;
//! let store = AnyStore::open(&StoreConfig::embedded(dir.path())).await?;
//! let count = store
//!     .run(|tx| async move {
//!         tx.atomic_add(b"visits", 1)?;
//!         let before = tx.get_snapshot(b"greeting").await?;
//!         if before.is_none() {
//!             tx.set(b"greeting", b"hello")?;
//!         }
//!         Ok::<_, TxError>(before.is_none())
//!     })
//!     .await?;
//! assert!(count);
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

mod any;
#[doc(hidden)]
pub mod conformance;
pub mod embedded;
mod error;
#[cfg(feature = "fdb")]
pub mod fdb;
// Used by `fdb`; compiled (and tested) in every build. Unused without the feature.
#[cfg_attr(not(feature = "fdb"), allow(dead_code))]
mod fdb_errors;
pub mod metrics;
#[doc(hidden)]
pub mod testing;

pub use any::{AnyStore, AnyTx, BackendKind, FdbConfig, OpenStoreError, StoreConfig, StoreConfigError};
pub use error::{limits, StoreError, TxError};

/// A key and its value, as returned by range reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
}

/// A transaction's 10-byte versionstamp: the 8-byte big-endian commit version
/// followed by the 2-byte big-endian batch order (FoundationDB layout).
pub type TxVersionstamp = [u8; 10];

/// Options for one [`Store::transact`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactOptions {
    /// How many times the closure may run in total before the loop gives up with
    /// [`StoreError::RetryLimitReached`]. `None`: no limit (then set a timeout).
    /// Default: 100.
    pub retry_limit: Option<u32>,
    /// Wall-clock limit for all attempts together; exceeding it fails with
    /// [`StoreError::Timeout`]. `None`: no limit. Default: 10 s.
    pub timeout: Option<Duration>,
    /// When the commit counts as done. Default: [`Durability::Durable`].
    pub durability: Durability,
}

/// When a commit returns (see [`TransactOptions::durability`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// After the commit is durable (fsync'd, or replicated to FoundationDB's logs).
    #[default]
    Durable,
    /// As soon as the commit is applied: it is atomic, isolated and ordered like any
    /// other and visible to every later transaction, but it may be lost if the
    /// process or machine crashes before the next durable commit, which makes every
    /// earlier commit durable too. For soft state whose loss in such a crash is
    /// harmless, e.g. the presence of sessions that the crashed process itself held.
    /// Read-only transactions do not wait for relaxed commits to become durable.
    ///
    /// On a **read-only** transaction it means: return what was read without
    /// waiting for it to become durable. A durable read-only transaction waits
    /// until every durable commit at or below its read version is on disk (so it
    /// never returns what a crash could undo), which under a stream of durable
    /// commits (a login storm creating accounts) costs a wait for the next fsync
    /// even when the keys read were never written durably. Soft-state readers
    /// (presence) do not need that guarantee.
    ///
    /// FoundationDB commits are always durable and its reads only ever see
    /// committed data: there this changes nothing.
    Relaxed,
}

impl Default for TransactOptions {
    fn default() -> Self {
        TransactOptions {
            retry_limit: Some(100),
            timeout: Some(Duration::from_secs(10)),
            durability: Durability::Durable,
        }
    }
}

/// A store with FoundationDB's transaction semantics (see the [module docs](self)).
///
/// Cheap to clone (an `Arc` inside); clones share the same database.
pub trait Store: Clone + Send + Sync + 'static {
    /// The transaction handle passed to [`transact`](Self::transact) closures. It is
    /// owned and cheap to clone, so the closure's future needs no borrow.
    type Tx: Transaction;

    /// Runs `f` in a retry loop until its transaction commits, and returns what `f`
    /// returned.
    ///
    /// **`f` may run more than once.** Every retryable error
    /// ([`StoreError::is_retryable`]: conflict, transaction too old, commit result
    /// unknown) from the closure's own reads or from the commit runs `f` again with
    /// a fresh transaction, until `options.retry_limit` attempts or
    /// `options.timeout` are used up. A caller error ([`TxError::User`]) or a
    /// non-retryable store error aborts without committing and is returned as is.
    fn transact<T, E, F, Fut>(
        &self,
        options: TransactOptions,
        f: F,
    ) -> impl Future<Output = Result<T, TxError<E>>> + Send
    where
        F: FnMut(Self::Tx) -> Fut + Send,
        Fut: Future<Output = Result<T, TxError<E>>> + Send,
        T: Send,
        E: Send;

    /// [`transact`](Self::transact) with [`TransactOptions::default`].
    fn run<T, E, F, Fut>(&self, f: F) -> impl Future<Output = Result<T, TxError<E>>> + Send
    where
        F: FnMut(Self::Tx) -> Fut + Send,
        Fut: Future<Output = Result<T, TxError<E>>> + Send,
        T: Send,
        E: Send,
    {
        self.transact(TransactOptions::default(), f)
    }
}

/// One attempt of a transaction (see the [module docs](self) for semantics).
///
/// Writes are buffered in the transaction and applied atomically at commit; they
/// return `Err` at once if they break a [limit](limits).
pub trait Transaction: Clone + Send + Sync + 'static {
    /// Reads a key (adds a read conflict on it).
    fn get(&self, key: &[u8]) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// Reads a key without adding a read conflict.
    fn get_snapshot(&self, key: &[u8]) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// Reads the keys in `[begin, end)` in key order (descending if `reverse`), at
    /// most `limit` of them (`None`: all). Adds a read conflict on the part of the
    /// range actually read (all of it unless the limit cut it short).
    fn get_range(
        &self,
        begin: &[u8],
        end: &[u8],
        limit: Option<usize>,
        reverse: bool,
    ) -> impl Future<Output = Result<Vec<KeyValue>, StoreError>> + Send;

    /// [`get_range`](Self::get_range) without adding a read conflict.
    fn get_range_snapshot(
        &self,
        begin: &[u8],
        end: &[u8],
        limit: Option<usize>,
        reverse: bool,
    ) -> impl Future<Output = Result<Vec<KeyValue>, StoreError>> + Send;

    /// Sets `key` to `value`.
    fn set(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;

    /// Removes `key`.
    fn clear(&self, key: &[u8]) -> Result<(), StoreError>;

    /// Removes every key in `[begin, end)`, including keys other transactions commit
    /// before this one (it is a blind range write).
    fn clear_range(&self, begin: &[u8], end: &[u8]) -> Result<(), StoreError>;

    /// Adds `delta` to the key's value, read as a little-endian integer (FoundationDB
    /// `ADD` with an 8-byte parameter: a missing value counts as zero, a shorter one
    /// is zero-extended, the result is 8 bytes, overflow wraps). No read conflict.
    fn atomic_add(&self, key: &[u8], delta: i64) -> Result<(), StoreError>;

    /// Sets a key that contains a versionstamp filled in at commit.
    /// `key_with_offset` is laid out as produced by
    /// `foundationdb_tuple::Subspace::pack_with_versionstamp` /
    /// `foundationdb_tuple::pack_with_versionstamp`: the key, with a 10-byte
    /// placeholder somewhere in it, followed by a 4-byte little-endian offset of that
    /// placeholder. The key is not readable in this transaction.
    fn set_versionstamped_key(&self, key_with_offset: &[u8], value: &[u8]) -> Result<(), StoreError>;

    /// This transaction's versionstamp; the future resolves after a successful
    /// commit (return it from the closure and await it after `transact`), or fails
    /// with [`StoreError::Cancelled`] if this attempt never committed.
    fn versionstamp(&self) -> VersionstampFuture;

    /// Watches `key`: the returned future resolves once the key's value differs from
    /// the value this transaction saw (including its own writes), after this
    /// transaction commits. Return it from the closure and await it afterwards.
    fn watch(&self, key: &[u8]) -> Result<Watch, StoreError>;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Resolves to a transaction's versionstamp once it has committed.
pub struct VersionstampFuture(BoxFuture<Result<TxVersionstamp, StoreError>>);

impl VersionstampFuture {
    pub(crate) fn new(f: impl Future<Output = Result<TxVersionstamp, StoreError>> + Send + 'static) -> Self {
        VersionstampFuture(Box::pin(f))
    }
}

impl Future for VersionstampFuture {
    type Output = Result<TxVersionstamp, StoreError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for VersionstampFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VersionstampFuture")
    }
}

/// Resolves once a watched key's value changes (see [`Transaction::watch`]).
/// Dropping it cancels the watch.
pub struct Watch(BoxFuture<Result<(), StoreError>>);

impl Watch {
    pub(crate) fn new(f: impl Future<Output = Result<(), StoreError>> + Send + 'static) -> Self {
        Watch(Box::pin(f))
    }
}

impl Future for Watch {
    type Output = Result<(), StoreError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watch")
    }
}

/// A [`Watch`] on a service's change counter: resolves after the counter changes
/// (any writer, any process sharing the store), with the store error mapped into
/// the service's error type. `seq` is the counter's value when the watch was
/// registered. Dropping it cancels the watch. Services name it with a type alias
/// (`state::ChangeWatch`, `ledger::ChangeWatch`, `content::ContentWatch`,
/// `flags::FlagsWatch`).
pub struct CounterWatch<E> {
    /// The counter's value when the watch was registered.
    pub seq: u64,
    watch: Watch,
    _error: std::marker::PhantomData<fn() -> E>,
}

impl<E> CounterWatch<E> {
    /// Wraps `watch`, registered when the counter read `seq`.
    pub fn new(seq: u64, watch: Watch) -> Self {
        CounterWatch {
            seq,
            watch,
            _error: std::marker::PhantomData,
        }
    }

    /// Reads the counter at `key` in `tx` and registers a watch on it there,
    /// so the watch fires for every change committed after that read.
    pub async fn register<T: Transaction>(tx: &T, key: &[u8]) -> Result<Self, StoreError> {
        let seq = crate::codec::decode_counter(tx.get(key).await?.as_deref()) as u64;
        Ok(CounterWatch::new(seq, tx.watch(key)?))
    }

    /// [`register`](Self::register) in a transaction of its own (what a
    /// service's `watch_*` call does).
    pub async fn open<S: Store>(store: &S, key: &[u8]) -> Result<Self, StoreError>
    where
        E: Send,
    {
        let res = store
            .run(|tx| async move { Ok::<_, TxError>(Self::register(&tx, key).await?) })
            .await;
        res.map_err(|e| match e {
            TxError::Store(e) => e,
            TxError::User(never) => match never {},
        })
    }
}

impl<E: From<StoreError>> Future for CounterWatch<E> {
    type Output = Result<(), E>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.watch).poll(cx).map_err(E::from)
    }
}

impl<E> std::fmt::Debug for CounterWatch<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CounterWatch")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// Splits a versionstamped key (see [`Transaction::set_versionstamped_key`]) into
/// the key and the placeholder offset, checking that the placeholder fits.
pub(crate) fn split_versionstamped_key(key_with_offset: &[u8]) -> Result<(&[u8], usize), StoreError> {
    let Some(split) = key_with_offset.len().checked_sub(4) else {
        return Err(StoreError::InvalidVersionstamp("shorter than its 4-byte offset"));
    };
    let (key, off) = key_with_offset.split_at(split);
    let offset = u32::from_le_bytes([off[0], off[1], off[2], off[3]]) as usize;
    if offset.checked_add(10).is_none_or(|end| end > key.len()) {
        return Err(StoreError::InvalidVersionstamp(
            "offset + 10 is past the end of the key",
        ));
    }
    Ok((key, offset))
}

/// Applies FoundationDB's `ADD` mutation with an 8-byte little-endian parameter.
pub(crate) fn apply_add(existing: Option<&[u8]>, delta: i64) -> [u8; 8] {
    let mut cur = [0u8; 8];
    if let Some(v) = existing {
        let n = v.len().min(8);
        cur[..n].copy_from_slice(&v[..n]);
    }
    i64::from_le_bytes(cur).wrapping_add(delta).to_le_bytes()
}

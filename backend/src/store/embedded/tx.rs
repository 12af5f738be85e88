//! The embedded backend's transaction: buffered writes with read-your-writes, reads
//! from a fjall snapshot at the read version, and the read set for conflict checks.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use fjall::Readable;
use tokio::sync::oneshot;

use super::conflict::ReadSet;
use super::Inner;
use crate::store::error::{check_key, check_value};
use crate::store::{
    apply_add, limits, split_versionstamped_key, KeyValue, StoreError, Transaction, TxVersionstamp,
    VersionstampFuture, Watch,
};

/// A key and value (or a `[begin, end)` range).
type Pair = (Vec<u8>, Vec<u8>);

/// A transaction's own writes in a range, in scan order.
type LocalWrites = Vec<(Vec<u8>, Pending)>;

/// A write buffered in the transaction, applied at commit.
#[derive(Debug, Clone)]
pub(super) enum Pending {
    Set(Vec<u8>),
    Clear,
    /// An atomic add on a value this transaction has not otherwise written: applied
    /// to the committed value at commit time, so it reads nothing and conflicts
    /// with nothing.
    Add(i64),
}

/// The mutable part of a transaction.
#[derive(Default)]
pub(super) struct TxState {
    pub(super) writes: BTreeMap<Vec<u8>, Pending>,
    /// Cleared `[begin, end)` ranges. Writes made after a clear live in `writes`
    /// (a clear removes earlier writes in its range), so a key without an entry in
    /// `writes` that falls in one of these ranges reads as absent.
    pub(super) cleared: Vec<(Vec<u8>, Vec<u8>)>,
    /// Versionstamped keys: (key, offset of the 10-byte placeholder, value).
    pub(super) stamped: Vec<(Vec<u8>, usize, Vec<u8>)>,
    pub(super) reads: ReadSet,
    /// The stored value (at the read version) of every key read *with* a
    /// conflict, for the commit's atomic adds: if the commit passes its
    /// conflict check, no newer commit wrote such a key, so this is also the
    /// latest value and the add needs no read under the commit lock (one
    /// memtable search fewer per add; see `commit::final_state`).
    pub(super) read_values: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    pub(super) size: usize,
    pub(super) watches: Vec<(Vec<u8>, oneshot::Sender<()>)>,
    pub(super) stamps: Vec<oneshot::Sender<TxVersionstamp>>,
    /// Set once the commit took the state; later use fails with `Cancelled`.
    pub(super) finished: bool,
}

impl TxState {
    fn in_cleared(&self, key: &[u8]) -> bool {
        self.cleared
            .iter()
            .any(|(b, e)| b.as_slice() <= key && key < e.as_slice())
    }

    fn grow(&mut self, bytes: usize) -> Result<(), StoreError> {
        let size = self.size + bytes;
        if size > limits::MAX_TRANSACTION_BYTES {
            return Err(StoreError::TransactionTooLarge {
                size,
                limit: limits::MAX_TRANSACTION_BYTES,
            });
        }
        self.size = size;
        Ok(())
    }
}

pub(super) struct TxInner {
    pub(super) store: Arc<Inner>,
    pub(super) read_version: u64,
    pub(super) snapshot: fjall::Snapshot,
    pub(super) started: Instant,
    pub(super) state: Mutex<TxState>,
}

/// A transaction on an [`EmbeddedStore`](super::EmbeddedStore). Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedTx(pub(super) Arc<TxInner>);

impl std::fmt::Debug for EmbeddedTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedTx")
            .field("read_version", &self.0.read_version)
            .finish_non_exhaustive()
    }
}

impl EmbeddedTx {
    pub(super) fn new(store: Arc<Inner>, read_version: u64, snapshot: fjall::Snapshot) -> Self {
        EmbeddedTx(Arc::new(TxInner {
            store,
            read_version,
            snapshot,
            started: Instant::now(),
            state: Mutex::new(TxState::default()),
        }))
    }

    /// Locks the state of a transaction that is still usable.
    fn state(&self) -> Result<MutexGuard<'_, TxState>, StoreError> {
        let st = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.finished {
            return Err(StoreError::Cancelled);
        }
        Ok(st)
    }

    /// Whether the transaction has written nothing (so far).
    pub(super) fn is_read_only(&self) -> bool {
        let st = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        st.writes.is_empty() && st.cleared.is_empty() && st.stamped.is_empty()
    }

    /// Ends the transaction without committing: its watches and versionstamp
    /// futures fail with `Cancelled`, later use of it too.
    pub(super) fn abandon(&self) {
        let mut st = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        *st = TxState {
            finished: true,
            ..TxState::default()
        };
    }

    pub(super) fn check_age(&self) -> Result<(), StoreError> {
        if self.0.started.elapsed() > limits::MAX_TRANSACTION_AGE {
            return Err(StoreError::TransactionTooOld);
        }
        Ok(())
    }

    fn read(&self, key: &[u8], snapshot: bool) -> Result<Option<Vec<u8>>, StoreError> {
        self.check_age()?;
        check_key(key)?;
        let pending_add = {
            let mut st = self.state()?;
            let pending = match st.writes.get(key) {
                Some(Pending::Set(v)) => return Ok(Some(v.clone())),
                Some(Pending::Clear) => return Ok(None),
                Some(Pending::Add(d)) => Some(*d),
                None if st.in_cleared(key) => return Ok(None),
                None => None,
            };
            if !snapshot {
                st.reads.add_point(key);
            }
            pending
        };
        let base = self
            .0
            .snapshot
            .get(&self.0.store.data, key)
            .map_err(StoreError::backend)?
            .map(|v| v.to_vec());
        if !snapshot {
            self.state()?.read_values.insert(key.to_vec(), base.clone());
        }
        Ok(match pending_add {
            Some(d) => Some(apply_add(base.as_deref(), d).to_vec()),
            None => base,
        })
    }

    fn read_range(
        &self,
        begin: &[u8],
        end: &[u8],
        limit: Option<usize>,
        reverse: bool,
        snapshot: bool,
    ) -> Result<Vec<KeyValue>, StoreError> {
        self.check_age()?;
        check_key(begin)?;
        check_key(end)?;
        if begin >= end || limit == Some(0) {
            return Ok(Vec::new());
        }
        let (mut local, cleared) = self.local_range(begin, end)?;
        let iter = self
            .0
            .snapshot
            .range(&self.0.store.data, begin.to_vec()..end.to_vec());
        let storage: Box<dyn Iterator<Item = fjall::Guard>> = if reverse {
            local.reverse();
            Box::new(iter.rev())
        } else {
            Box::new(iter)
        };
        let limit = limit.unwrap_or(usize::MAX);
        let out = merge_range(storage, local, &cleared, limit, reverse)?;
        if !snapshot {
            self.record_range_read(begin, end, &out, limit, reverse)?;
        }
        Ok(out)
    }

    /// This transaction's own writes in `[begin, end)`, in key order, and its
    /// cleared ranges that overlap it (copied: the state lock is not held while
    /// the snapshot is scanned).
    fn local_range(&self, begin: &[u8], end: &[u8]) -> Result<(LocalWrites, Vec<Pair>), StoreError> {
        let st = self.state()?;
        let local = st
            .writes
            .range::<[u8], _>((Bound::Included(begin), Bound::Excluded(end)))
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect();
        let cleared = st
            .cleared
            .iter()
            .filter(|(b, e)| b.as_slice() < end && begin < e.as_slice())
            .cloned()
            .collect();
        Ok((local, cleared))
    }

    /// Adds what a range read of `[begin, end)` depended on to the read set:
    /// the whole range, or, when `limit` cut the scan short, the range up to
    /// and including the last key returned (in scan order).
    fn record_range_read(
        &self,
        begin: &[u8],
        end: &[u8],
        out: &[KeyValue],
        limit: usize,
        reverse: bool,
    ) -> Result<(), StoreError> {
        let hit_limit = out.len() >= limit;
        let mut st = self.state()?;
        match out.last() {
            Some(last) if hit_limit && !reverse => {
                let mut stop = last.key.clone();
                stop.push(0);
                st.reads.add_range(begin, &stop);
            }
            Some(last) if hit_limit => st.reads.add_range(&last.key, end),
            _ => st.reads.add_range(begin, end),
        }
        Ok(())
    }
}

/// Merges a snapshot scan (`storage`) with the transaction's own writes in the
/// same range (`local`, in the same scan order), up to `limit` pairs: a local
/// write replaces the stored value of its key (an add applies to it), and a
/// stored key inside one of the `cleared` ranges reads as absent.
fn merge_range(
    mut storage: impl Iterator<Item = fjall::Guard>,
    local: LocalWrites,
    cleared: &[Pair],
    limit: usize,
    reverse: bool,
) -> Result<Vec<KeyValue>, StoreError> {
    let in_cleared = |key: &[u8]| {
        cleared
            .iter()
            .any(|(b, e)| b.as_slice() <= key && key < e.as_slice())
    };
    let mut next_stored = || -> Result<Option<Pair>, StoreError> {
        match storage.next() {
            None => Ok(None),
            Some(g) => {
                let (k, v) = g.into_inner().map_err(StoreError::backend)?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
        }
    };
    // "Comes first in scan order".
    let before = |a: &[u8], b: &[u8]| if reverse { a > b } else { a < b };

    let mut out = Vec::new();
    let mut stored = next_stored()?;
    let mut local = local.into_iter().peekable();
    while out.len() < limit {
        let take_local = match (&stored, local.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some((sk, _)), Some((lk, _))) => !before(sk, lk),
        };
        if !take_local {
            if let Some((k, v)) = stored.take() {
                if !in_cleared(&k) {
                    out.push(KeyValue { key: k, value: v });
                }
            }
            stored = next_stored()?;
            continue;
        }
        let Some((lk, pending)) = local.next() else {
            break;
        };
        // The stored value of the same key, if the storage cursor is on it.
        let base = match &stored {
            Some((sk, _)) if *sk == lk => {
                let v = stored.take().map(|(_, v)| v);
                stored = next_stored()?;
                v
            }
            _ => None,
        };
        match pending {
            Pending::Set(v) => out.push(KeyValue { key: lk, value: v }),
            Pending::Clear => {}
            // (An add on a key in a cleared range became a Set.)
            Pending::Add(d) => out.push(KeyValue {
                value: apply_add(base.as_deref(), d).to_vec(),
                key: lk,
            }),
        }
    }
    Ok(out)
}

impl Transaction for EmbeddedTx {
    fn get(&self, key: &[u8]) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send {
        std::future::ready(self.read(key, false))
    }

    fn get_snapshot(&self, key: &[u8]) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send {
        std::future::ready(self.read(key, true))
    }

    fn get_range(
        &self,
        begin: &[u8],
        end: &[u8],
        limit: Option<usize>,
        reverse: bool,
    ) -> impl Future<Output = Result<Vec<KeyValue>, StoreError>> + Send {
        std::future::ready(self.read_range(begin, end, limit, reverse, false))
    }

    fn get_range_snapshot(
        &self,
        begin: &[u8],
        end: &[u8],
        limit: Option<usize>,
        reverse: bool,
    ) -> impl Future<Output = Result<Vec<KeyValue>, StoreError>> + Send {
        std::future::ready(self.read_range(begin, end, limit, reverse, true))
    }

    fn set(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        check_key(key)?;
        check_value(value)?;
        let mut st = self.state()?;
        st.grow(key.len() + value.len())?;
        st.writes.insert(key.to_vec(), Pending::Set(value.to_vec()));
        Ok(())
    }

    fn clear(&self, key: &[u8]) -> Result<(), StoreError> {
        check_key(key)?;
        let mut st = self.state()?;
        st.grow(key.len())?;
        st.writes.insert(key.to_vec(), Pending::Clear);
        Ok(())
    }

    fn clear_range(&self, begin: &[u8], end: &[u8]) -> Result<(), StoreError> {
        check_key(begin)?;
        check_key(end)?;
        if begin >= end {
            return Ok(());
        }
        let mut st = self.state()?;
        st.grow(begin.len() + end.len())?;
        let doomed: Vec<Vec<u8>> = st
            .writes
            .range::<[u8], _>((Bound::Included(begin), Bound::Excluded(end)))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            st.writes.remove(&k);
        }
        st.cleared.push((begin.to_vec(), end.to_vec()));
        Ok(())
    }

    fn atomic_add(&self, key: &[u8], delta: i64) -> Result<(), StoreError> {
        check_key(key)?;
        let mut st = self.state()?;
        st.grow(key.len() + 8)?;
        let next = match st.writes.get(key) {
            Some(Pending::Set(v)) => Pending::Set(apply_add(Some(v), delta).to_vec()),
            Some(Pending::Clear) => Pending::Set(apply_add(None, delta).to_vec()),
            Some(Pending::Add(d)) => Pending::Add(d.wrapping_add(delta)),
            None if st.in_cleared(key) => Pending::Set(apply_add(None, delta).to_vec()),
            None => Pending::Add(delta),
        };
        st.writes.insert(key.to_vec(), next);
        Ok(())
    }

    fn set_versionstamped_key(&self, key_with_offset: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let (key, offset) = split_versionstamped_key(key_with_offset)?;
        check_key(key)?;
        check_value(value)?;
        let mut st = self.state()?;
        st.grow(key.len() + value.len())?;
        st.stamped.push((key.to_vec(), offset, value.to_vec()));
        Ok(())
    }

    fn versionstamp(&self) -> VersionstampFuture {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut st) = self.state() {
            st.stamps.push(tx);
        }
        VersionstampFuture::new(async move { rx.await.map_err(|_| StoreError::Cancelled) })
    }

    fn watch(&self, key: &[u8]) -> Result<Watch, StoreError> {
        check_key(key)?;
        let (tx, rx) = oneshot::channel();
        self.state()?.watches.push((key.to_vec(), tx));
        let late = self.0.store.faults.as_ref().and_then(|f| f.plan_watch());
        Ok(Watch::new(async move {
            rx.await.map_err(|_| StoreError::Cancelled)?;
            if let Some(late) = late {
                tokio::time::sleep(late).await;
            }
            Ok(())
        }))
    }
}

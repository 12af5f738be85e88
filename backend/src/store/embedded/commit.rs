//! The embedded backend's commit path (see the [module docs](super)): begin a
//! transaction at the latest version, then at commit run the fault plan,
//! check conflicts, apply the writes as one fjall batch and register the
//! transaction's watches under the commit lock (on the caller's task, or on
//! the [committer thread](super::committer) when the lock is busy), and wait
//! for durability.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fjall::Readable;
use parking_lot::MutexGuard;
use tokio::sync::oneshot;

use super::conflict::CommitRecord;
use super::faults::CommitFault;
use super::group_commit;
use super::tx::{Pending, TxState};
use super::{CommitState, EmbeddedStore, EmbeddedTx, PersistMode, VERSION_KEY};
use crate::store::{apply_add, Durability, StoreError, TxVersionstamp};

/// The final value of every key a commit changes (`None`: deleted), against
/// the latest data.
type FinalState = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Watches a transaction set: the key and the sender that fires it.
type TxWatches = Vec<(Vec<u8>, oneshot::Sender<()>)>;

/// The stored values of the keys a transaction read with a conflict
/// ([`TxState::read_values`]).
type ReadValues = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A watch's starting point: the value its transaction saw, the value now.
type WatchStart = (Option<Vec<u8>>, Option<Vec<u8>>);

/// How long a runtime task waits for the commit lock before it hands its
/// commit to the [committer thread](super::committer) (or begins its
/// transaction without the lock). A commit holds the lock for a few
/// microseconds; one that holds it longer is stalled inside fjall, and
/// waiting for it would stop the task's runtime worker.
const LOCK_PATIENCE: Duration = Duration::from_micros(200);

/// How many commits back (under the commit lock) a watch's registration
/// looks for a write of its key before reading the key's latest value
/// instead: a few lookups in the log are cheaper than a store read, a long
/// walk is not.
const WATCH_LOG_LOOKBACK: usize = 64;

/// Who holds the commit lock for a commit: the `on` label of
/// [`COMMIT_LOCK_HELD_SECONDS`](crate::store::metrics::COMMIT_LOCK_HELD_SECONDS).
#[derive(Debug, Clone, Copy)]
pub(super) enum HeldBy {
    /// The committing task, on a runtime worker (it had the lock at once).
    Caller,
    /// The [committer thread](super::committer).
    Committer,
}

impl HeldBy {
    fn label(self) -> &'static str {
        match self {
            HeldBy::Caller => "caller",
            HeldBy::Committer => "committer",
        }
    }
}

/// What the synchronous part of a commit leaves to do.
pub(super) struct Applied {
    /// What the commit waits for before it is done.
    wait: DurableWait,
    /// The commit's versionstamp (none for read-only transactions) ...
    stamp: Option<TxVersionstamp>,
    /// ... and the futures waiting for it.
    stamps: Vec<oneshot::Sender<TxVersionstamp>>,
}

/// What a commit waits for before it returns.
enum DurableWait {
    /// Nothing: a relaxed commit, a relaxed read, or a buffered store.
    Nothing,
    /// A durable-mode commit at this version: its own journal sync.
    Commit(u64),
    /// A durable read at this read version: until what it read is durable.
    Read(u64),
}

/// How a commit's outcome reaches its caller.
pub(super) type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

impl Applied {
    /// Finishes the commit: once what it waits for is durable (on the flusher
    /// thread then, or at once), completes its versionstamp futures and calls
    /// `done`. Called under the commit lock for writes, so that durable
    /// commits reach the flusher in version order.
    pub(super) fn finish(self, group: Option<&group_commit::GroupCommit>, done: Done) {
        let Applied { wait, stamp, stamps } = self;
        let complete = move |r: group_commit::Durable| {
            if r.is_ok() {
                if let Some(stamp) = stamp {
                    for s in stamps {
                        let _ = s.send(stamp);
                    }
                }
            }
            done(r.map_err(|()| StoreError::CommitUnknownResult));
        };
        match (wait, group) {
            (DurableWait::Commit(v), Some(g)) => g.written(v, Box::new(complete)),
            (DurableWait::Read(v), Some(g)) => g.wait_durable(v, Box::new(complete)),
            _ => complete(Ok(())),
        }
    }
}

impl EmbeddedStore {
    pub(super) fn lock_commit(&self) -> MutexGuard<'_, CommitState> {
        self.inner.commit.lock()
    }

    /// The commit lock, if it can be had within [`LOCK_PATIENCE`] and no
    /// commit is queued (see [`committer`](super::committer)): a commit holds
    /// it for microseconds, unless fjall stalls inside it.
    fn try_lock_commit(&self) -> Option<MutexGuard<'_, CommitState>> {
        if !self.inner.committer.is_idle() {
            return None;
        }
        self.inner.commit.try_lock_for(LOCK_PATIENCE)
    }

    /// Starts a transaction at the latest commit version.
    ///
    /// With the commit lock (when it can be had within [`LOCK_PATIENCE`]) the
    /// snapshot is paired with the lock's last version, as every commit
    /// applies under it. So a transaction does not begin just before the
    /// commit in progress becomes visible (and then conflict with it: the
    /// ledger bench's one-hot-player escrow grants retried 0.28 times per
    /// grant when transactions began without the lock, 0.02 with it).
    ///
    /// When the lock is held longer (fjall stalled inside a commit) the
    /// transaction begins without waiting, and reads its version from the
    /// snapshot itself: every commit writes its version in the same fjall
    /// batch as its data (atomic, one sequence number), so the snapshot holds
    /// exactly the commits up to the version it reads.
    pub(super) fn begin(&self) -> Result<EmbeddedTx, StoreError> {
        if let Some(cs) = self.try_lock_commit() {
            let snapshot = self.inner.db.snapshot();
            let version = cs.version;
            drop(cs);
            return Ok(EmbeddedTx::new(self.inner.clone(), version, snapshot));
        }
        let snapshot = self.inner.db.snapshot();
        let version =
            match snapshot
                .get(&self.inner.meta, VERSION_KEY)
                .map_err(StoreError::backend)?
            {
                None => 0,
                Some(v) => u64::from_be_bytes(v.as_ref().try_into().map_err(|_| {
                    StoreError::backend(std::io::Error::other("corrupt commit version record"))
                })?),
            };
        Ok(EmbeddedTx::new(self.inner.clone(), version, snapshot))
    }

    /// Commits `tx`: conflict check and apply (synchronously, under the commit
    /// lock, on this task or the committer thread), then wait for durability.
    pub(super) async fn commit(&self, tx: &EmbeddedTx, durability: Durability) -> Result<(), StoreError> {
        let mut unknown_after = false;
        let mut stall = None;
        if let Some(faults) = &self.inner.faults {
            let plan = faults.plan_commit(tx.is_read_only(), tx.0.started.elapsed());
            if let Some(d) = plan.delay {
                tokio::time::sleep(d).await;
            }
            match plan.fault {
                None => {}
                Some(CommitFault::UnknownApplied) => unknown_after = true,
                Some(CommitFault::Stall(d)) => stall = Some(d),
                Some(fault) => {
                    // Not applied: its watches and versionstamp are cancelled.
                    tx.abandon();
                    return Err(match fault {
                        CommitFault::Conflict => StoreError::Conflict,
                        CommitFault::TooOld => StoreError::TransactionTooOld,
                        _ => StoreError::CommitUnknownResult,
                    });
                }
            }
        }
        self.commit_now(tx, durability, stall).await?;
        if unknown_after {
            return Err(StoreError::CommitUnknownResult);
        }
        Ok(())
    }

    /// The commit without the fault plan; `stall`: a scripted stall under the
    /// commit lock first (see [`CommitFault::Stall`]).
    async fn commit_now(
        &self,
        tx: &EmbeddedTx,
        durability: Durability,
        stall: Option<Duration>,
    ) -> Result<(), StoreError> {
        let (reply, done) = oneshot::channel();
        let reply: Done = Box::new(move |r| {
            let _ = reply.send(r);
        });
        let plain = match stall {
            None => self.apply_plain_read(tx, durability)?,
            Some(_) => None,
        };
        if let Some(applied) = plain {
            applied.finish(self.inner.group.as_ref(), reply);
        } else if let Some(mut cs) = self.try_lock_commit() {
            self.apply_and_finish(&mut cs, tx, durability, stall, reply, HeldBy::Caller);
        } else {
            self.inner.committer.submit(tx.clone(), durability, stall, reply);
        }
        // A dropped sender: the commit path panicked, the result is unknown.
        done.await.map_err(|_| StoreError::CommitUnknownResult)?
    }

    /// Applies `tx` under the commit lock `cs` (held by `by`) and finishes
    /// it: `done` gets the outcome once the commit is done (durable, if it
    /// asked to be). A write commit records how long it held the lock.
    pub(super) fn apply_and_finish(
        &self,
        cs: &mut CommitState,
        tx: &EmbeddedTx,
        durability: Durability,
        stall: Option<Duration>,
        done: Done,
        by: HeldBy,
    ) {
        let started = Instant::now();
        if let Some(stall) = stall {
            std::thread::sleep(stall);
        }
        match self.apply(cs, tx, durability) {
            // Under the lock: durable commits reach the flusher in order.
            Ok(applied) => {
                let wrote = applied.stamp.is_some();
                applied.finish(self.inner.group.as_ref(), done);
                if wrote {
                    crate::store::metrics::commit_lock_held(by.label(), started.elapsed());
                }
            }
            Err(e) => done(Err(e)),
        }
    }

    /// The synchronous part of a commit, under the commit lock `cs`: takes the
    /// transaction's state, checks conflicts, writes the batch, logs the
    /// commit and registers the watches.
    fn apply(
        &self,
        cs: &mut CommitState,
        tx: &EmbeddedTx,
        durability: Durability,
    ) -> Result<Applied, StoreError> {
        let st = take_state(tx)?;
        tx.check_age()?;
        let TxState {
            writes,
            cleared,
            stamped,
            reads,
            read_values,
            watches,
            stamps,
            ..
        } = st;
        let read_only = writes.is_empty() && cleared.is_empty() && stamped.is_empty();

        if read_only {
            return self.apply_read_only(cs, tx, &read_values, watches, durability);
        }

        cs.log.check(tx.0.read_version, &reads)?;
        let version = cs.version + 1;
        let stamp = versionstamp(version);
        let (fin, points) = self.final_state(&cleared, writes, &read_values, stamped, &stamp)?;
        self.write_batch(&fin, version)?;

        cs.version = version;
        cs.log.push(CommitRecord {
            version,
            at: Instant::now(),
            points,
            ranges: cleared,
        });
        for (k, v) in &fin {
            cs.watches.key_written(k, v.as_deref());
        }
        self.register_written_watches(cs, tx, &fin, &read_values, watches)?;
        // A relaxed commit waits for nothing: its journal entry is made durable by
        // the next durable commit's flush (the journal is one ordered log).
        let wait = match durability {
            Durability::Durable => DurableWait::Commit(version),
            Durability::Relaxed => DurableWait::Nothing,
        };
        Ok(Applied {
            wait,
            stamp: Some(stamp),
            stamps,
        })
    }

    /// The commit of a transaction that wrote nothing and set no watch, on the
    /// caller's task: it needs nothing of the commit state, so it does not
    /// queue behind the committer. `None` (and the transaction untouched): it
    /// wrote or watched something, and the committer must run it.
    fn apply_plain_read(
        &self,
        tx: &EmbeddedTx,
        durability: Durability,
    ) -> Result<Option<Applied>, StoreError> {
        {
            let mut st = tx.0.state.lock().unwrap_or_else(|p| p.into_inner());
            if st.finished {
                return Err(StoreError::Cancelled);
            }
            if !(st.writes.is_empty()
                && st.cleared.is_empty()
                && st.stamped.is_empty()
                && st.watches.is_empty())
            {
                return Ok(None);
            }
            // Dropped here: a plain read has no versionstamp futures to
            // complete (they fail, as for any read-only commit).
            *st = super::tx::TxState {
                finished: true,
                ..Default::default()
            };
        }
        tx.check_age()?;
        Ok(Some(Applied {
            wait: read_wait(tx, durability),
            stamp: None,
            stamps: Vec::new(),
        }))
    }

    /// The commit of a transaction that wrote nothing: serializable at its read
    /// version, so nothing to check or apply; only its watches are registered.
    /// No versionstamp without writes: its versionstamp futures are dropped
    /// (they fail). A durable one waits until what it read is durable.
    fn apply_read_only(
        &self,
        cs: &mut CommitState,
        tx: &EmbeddedTx,
        read_values: &ReadValues,
        watches: TxWatches,
        durability: Durability,
    ) -> Result<Applied, StoreError> {
        for (key, fire) in watches {
            let (seen, current) = self.watch_start(cs, tx, read_values, &key)?;
            cs.watches.register(key, seen, current.as_deref(), fire);
        }
        Ok(Applied {
            wait: read_wait(tx, durability),
            stamp: None,
            stamps: Vec::new(),
        })
    }

    /// The final state of every key the commit changes, against the latest
    /// data (cleared ranges expanded to the keys present now, adds applied to
    /// the values present now, versionstamped keys completed with `stamp`), and
    /// the written keys (sorted, deduplicated) for the conflict log.
    ///
    /// Runs after the conflict check passed: a key in `read_values` (read with
    /// a conflict) was written by no commit since the read version, so its
    /// value there is the value present now, and an add to it is applied to
    /// that without reading the store again (e.g. a ledger credit adds to the
    /// escrow shard it just read).
    fn final_state(
        &self,
        cleared: &[(Vec<u8>, Vec<u8>)],
        writes: BTreeMap<Vec<u8>, Pending>,
        read_values: &ReadValues,
        stamped: Vec<(Vec<u8>, usize, Vec<u8>)>,
        stamp: &TxVersionstamp,
    ) -> Result<(FinalState, Vec<Vec<u8>>), StoreError> {
        let mut fin = FinalState::new();
        for (b, e) in cleared {
            for kv in self.inner.data.range(b.clone()..e.clone()) {
                let key = kv.key().map_err(StoreError::backend)?;
                fin.insert(key.to_vec(), None);
            }
        }
        let mut points: Vec<Vec<u8>> = Vec::with_capacity(writes.len() + stamped.len());
        for (k, p) in writes {
            let v = match p {
                Pending::Set(v) => Some(v),
                Pending::Clear => None,
                Pending::Add(d) => {
                    let base = match read_values.get(&k) {
                        Some(read) => read.clone(),
                        None => self.latest_value(&k)?,
                    };
                    Some(apply_add(base.as_deref(), d).to_vec())
                }
            };
            points.push(k.clone());
            fin.insert(k, v);
        }
        for (mut k, offset, v) in stamped {
            k[offset..offset + 10].copy_from_slice(stamp);
            points.push(k.clone());
            fin.insert(k, Some(v));
        }
        points.sort();
        points.dedup();
        Ok((fin, points))
    }

    /// Writes `fin` and the new commit `version` as one fjall batch (atomic in
    /// the journal and in memory).
    fn write_batch(&self, fin: &FinalState, version: u64) -> Result<(), StoreError> {
        let mut batch = self.inner.db.batch().durability(match self.inner.persist {
            PersistMode::Buffered => Some(fjall::PersistMode::Buffer),
            PersistMode::Durable => None, // the group-commit flusher persists
        });
        for (k, v) in fin {
            match v {
                Some(v) => batch.insert(&self.inner.data, k.as_slice(), v.as_slice()),
                None => batch.remove(&self.inner.data, k.as_slice()),
            }
        }
        batch.insert(&self.inner.meta, VERSION_KEY, version.to_be_bytes());
        batch.commit().map_err(StoreError::backend)
    }

    /// Registers the watches of a writing transaction: a watch on a key it
    /// wrote starts from the value it wrote (its own write never fires it);
    /// any other starts from the value the transaction read.
    fn register_written_watches(
        &self,
        cs: &mut CommitState,
        tx: &EmbeddedTx,
        fin: &FinalState,
        read_values: &ReadValues,
        watches: TxWatches,
    ) -> Result<(), StoreError> {
        for (key, fire) in watches {
            let (seen, current) = match fin.get(&key) {
                Some(v) => (v.clone(), v.clone()),
                None => self.watch_start(cs, tx, read_values, &key)?,
            };
            cs.watches.register(key, seen, current.as_deref(), fire);
        }
        Ok(())
    }

    /// Where a watch on `key` (not written by `tx`) starts: the value `tx`
    /// saw at its read version and the value present now. Neither needs a
    /// store read in the common case: `tx` read the key with a conflict
    /// (a counter watch does), and no commit since its read version wrote it
    /// (the conflict log tells, looking back at most [`WATCH_LOG_LOOKBACK`]
    /// commits), so the two are the same.
    fn watch_start(
        &self,
        cs: &CommitState,
        tx: &EmbeddedTx,
        read_values: &ReadValues,
        key: &[u8],
    ) -> Result<WatchStart, StoreError> {
        let seen = match read_values.get(key) {
            Some(v) => v.clone(),
            None => self.snapshot_value(tx, key)?,
        };
        let current = match cs.log.written_since(tx.0.read_version, key, WATCH_LOG_LOOKBACK) {
            Some(false) => seen.clone(),
            _ => self.latest_value(key)?,
        };
        Ok((seen, current))
    }

    fn latest_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .inner
            .data
            .get(key)
            .map_err(StoreError::backend)?
            .map(|v| v.to_vec()))
    }

    fn snapshot_value(&self, tx: &EmbeddedTx, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(tx
            .0
            .snapshot
            .get(&self.inner.data, key)
            .map_err(StoreError::backend)?
            .map(|v| v.to_vec()))
    }
}

/// What a read-only commit waits for: a durable one, until what it read is
/// durable.
fn read_wait(tx: &EmbeddedTx, durability: Durability) -> DurableWait {
    match durability {
        Durability::Relaxed => DurableWait::Nothing,
        Durability::Durable => DurableWait::Read(tx.0.read_version),
    }
}

/// Takes the state of `tx` for its commit, marking it finished (later use of
/// the transaction fails with `Cancelled`, and so does a second commit).
fn take_state(tx: &EmbeddedTx) -> Result<TxState, StoreError> {
    let mut guard = tx.0.state.lock().unwrap_or_else(|p| p.into_inner());
    if guard.finished {
        return Err(StoreError::Cancelled);
    }
    let st = std::mem::take(&mut *guard);
    guard.finished = true;
    Ok(st)
}

/// The FoundationDB-layout versionstamp of a commit version: 8 bytes big-endian
/// version, 2 bytes batch order (always 0: one transaction per version here).
fn versionstamp(version: u64) -> TxVersionstamp {
    let mut s = [0u8; 10];
    s[..8].copy_from_slice(&version.to_be_bytes());
    s
}

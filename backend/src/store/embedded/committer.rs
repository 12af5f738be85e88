//! The committer thread: where a commit goes when it would otherwise wait
//! for the commit lock on a runtime worker.
//!
//! # Why
//!
//! A commit's synchronous part (conflict check, the fjall batch, the commit
//! log, watches) runs under the commit lock, and fjall's `WriteBatch::commit`
//! can block for as long as fjall's maintenance likes: it takes the journal's
//! lock (held through an fsync when a journal is sealed), the tree's version
//! lock (held for writing while a flush or a compaction installs its tables,
//! which fsyncs the new version file and its directory), and when flushing
//! falls behind it **sleeps** on purpose, 100 ms at a time, until fewer than 4
//! sealed memtables wait. When every commit waited for the lock on its
//! caller's thread, one commit stuck in fjall stopped every runtime worker
//! that committed next (and every one that began a transaction, which took
//! the lock too): a gateway's two workers were both stopped for about half a
//! second at a memtable flush in the hour-long steady run (no QUIC, no
//! heartbeats; docs/PERFORMANCE.md).
//!
//! # How
//!
//! A commit runs on its caller's task, as before, when the lock can be had
//! within 200 µs and no commit is queued here: the common case pays nothing
//! (parking_lot's timed lock parks the task's thread for those 200 µs at
//! most). Otherwise it is queued to this thread, and the caller's task waits
//! for the reply asynchronously: the thread, not a runtime worker, waits for
//! the lock. So at most one runtime worker is ever stuck in a commit (the one
//! holding the lock when fjall stalls), and the runtime's other workers go
//! on. While commits are queued, new ones queue behind them too: they stay in
//! order, and the thread is not starved by workers taking the lock first.
//! Transactions begin under the lock on the same 200 µs terms, and without it
//! past them (the read version then comes from the snapshot itself, see
//! `EmbeddedStore::begin`); read-only transactions without watches commit
//! without it.
//!
//! What this does not fix: fjall's reads take the same version lock for a
//! moment, so a read on a runtime worker can still wait while a flush holds
//! it for writing (only to install its new version, since the lsm-tree patch
//! in `third_party/`).
//!
//! # Shutdown
//!
//! Each job holds its transaction, which holds the store, so the store cannot
//! close while a commit is queued. When the last handle drops, the queue's
//! sender drops with it and the thread ends after the job in hand (if the
//! last handle was dropped *on* this thread, by a job whose caller gave up
//! waiting, the thread is detached instead of joining itself).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use super::commit::{Done, HeldBy};
use super::{EmbeddedStore, EmbeddedTx};
use crate::store::Durability;

/// One commit to run.
struct Job {
    tx: EmbeddedTx,
    durability: Durability,
    /// The fault mode's scripted stall ([`CommitFault::Stall`](super::faults::CommitFault::Stall)).
    stall: Option<Duration>,
    /// Gets the commit's outcome (dropped unrun: an unknown result).
    done: Done,
}

/// The committer thread and its queue.
pub(super) struct Committer {
    /// `None` only while dropping.
    queue: Option<mpsc::Sender<Job>>,
    /// Jobs queued and not yet finished: while any are, commits queue.
    queued: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
    thread_id: ThreadId,
}

impl Committer {
    pub(super) fn start() -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::channel::<Job>();
        let queued = Arc::new(AtomicUsize::new(0));
        let thread = std::thread::Builder::new()
            .name("outpost-store-commit".into())
            .spawn({
                let queued = queued.clone();
                move || {
                    while let Ok(job) = jobs.recv() {
                        run(job);
                        queued.fetch_sub(1, Ordering::AcqRel);
                    }
                }
            })?;
        Ok(Committer {
            queue: Some(queue),
            queued,
            thread_id: thread.thread().id(),
            thread: Some(thread),
        })
    }

    /// Whether no commit is queued (a commit may then take the lock on its
    /// caller's thread, if it is free).
    pub(super) fn is_idle(&self) -> bool {
        self.queued.load(Ordering::Acquire) == 0
    }

    /// Queues the commit of `tx` (`stall`: a scripted fault); `done` gets its
    /// outcome. `done` is dropped without being called only if the commit
    /// path panicked or the thread is gone: the commit's result is then
    /// unknown.
    pub(super) fn submit(&self, tx: EmbeddedTx, durability: Durability, stall: Option<Duration>, done: Done) {
        if let Some(queue) = &self.queue {
            self.queued.fetch_add(1, Ordering::AcqRel);
            let job = Job {
                tx,
                durability,
                stall,
                done,
            };
            if queue.send(job).is_err() {
                // The thread is gone; the job (and `done`) dropped with the
                // error, which the caller sees as an unknown result.
                self.queued.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

/// Runs one queued commit: waits for the lock (on this thread), then applies
/// it as a caller's task would.
fn run(job: Job) {
    let Job {
        tx,
        durability,
        stall,
        done,
    } = job;
    let store = EmbeddedStore {
        inner: tx.0.store.clone(),
    };
    // A panic in the commit path is a bug. Caught, it fails this commit only
    // (`done` drops uncalled: an unknown result, it may have been applied)
    // instead of every later one.
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut cs = store.lock_commit();
        store.apply_and_finish(&mut cs, &tx, durability, stall, done, HeldBy::Committer);
    }));
    if ran.is_err() {
        tracing::error!("the store's commit path panicked; the commit's result is unknown");
    }
    // The caller holds the transaction too while it waits, so these are
    // rarely the last handles (see Shutdown).
    drop((tx, store));
}

impl Drop for Committer {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            if std::thread::current().id() != self.thread_id {
                let _ = thread.join();
            }
        }
    }
}

//! Group commit: durable commits share one fsync.
//!
//! A commit in durable mode writes its batch to fjall's journal buffer without
//! flushing (under the commit lock), then registers with the flusher thread and
//! waits. The flusher repeatedly takes the highest version written so far, makes the
//! journal durable once, and wakes every waiter at or below that version. While one
//! fsync runs, further commits pile up and are covered by the next one, so durable
//! throughput grows with concurrency instead of being capped at one fsync per
//! transaction (about 8,000/s at ~125 µs per fsync).
//!
//! # Linger under load, adaptive
//!
//! An fsync costs CPU as well as time (in a VM, ~90 µs of it: the virtio kick,
//! the ext4 journal commit, interrupts and wake-ups; see docs/PERFORMANCE.md).
//! When the device is fast, each fsync covers only the few commits that arrived
//! while the previous one ran. So when the last fsync covered more than one
//! commit (commits are arriving concurrently), the flusher first waits for the
//! batch to grow; a lone commit on an idle store never waits.
//!
//! A fixed wait (the `linger`, 1 ms by default) is right when commits trickle in
//! while the CPU does other work (a gateway: handshakes, QUIC, the ledger), and
//! wrong when every writer is already waiting for this very fsync (a closed loop
//! of writers, the store bench): then nobody else can arrive, and the store sits
//! idle for the rest of the linger (it cut durable throughput 2.3–3× at 16–64
//! writers). So by default (`LingerPolicy::Adaptive`) the linger ends as soon
//! as **as many commits wait as the last fsync released** (the writers that
//! fsync woke are all back: waiting longer would only add latency), and at the
//! latest after `linger`. The batch size is the queue depth the store itself
//! observes, so it follows the load without tuning: a population of writers
//! that shrinks costs one full linger, after which the target is the new, smaller
//! batch; one that grows is covered by the commits that arrive during the fsync
//! (they join the next batch, which is then larger). Read-only transactions
//! waiting for durability ride along but are not counted. `LingerPolicy::Fixed`
//! always waits the full linger (the behaviour before; kept for A/B runs).
//! The flusher is only woken (a futex syscall) when it is actually idle, or
//! lingering and the batch just reached its target: at most once per fsync.
//! Each sync is recorded (`store::metrics`: syncs, their duration, commits per
//! sync), after its waiters are woken.
//!
//! # How the journal is made durable without blocking writers
//!
//! `fjall::Database::persist(SyncData)` holds fjall's journal lock for the whole
//! fsync, which would stall every committer (and the tokio worker it runs on) for
//! the fsync's duration. Instead the flusher calls `persist(Buffer)` (hands the
//! journal's user-space buffer to the OS: a short `write`, under the lock) and then
//! `fdatasync`s the active journal file through **its own file handle**, without
//! fjall's lock. On Linux, `fdatasync` on any descriptor of a file flushes all of
//! that file's dirty pages, so everything handed to the OS before the sync began is
//! durable when it returns. The active journal is the `<n>.jnl` file with the highest
//! `n` in the data directory (fjall's layout; fjall fsyncs a journal when it seals
//! it, and names its successor `<n + 1>.jnl`): the flusher scans the directory once,
//! then checks at each flush only whether the successor exists. When a new journal
//! appears, the flusher also fsyncs the directory so the new file's entry is
//! durable. If no journal file can be found (a future fjall layout), the flusher
//! falls back to `persist(SyncData)`, which is correct but slower.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fjall::{Database, PersistMode};

/// When a lingering flush stops waiting for its batch to grow (see the module
/// docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LingerPolicy {
    /// Until as many commits wait as the last fsync released, at most the linger.
    Adaptive,
    /// Always the whole linger.
    Fixed,
}

/// Outcome delivered to a waiter: `Ok` once its version is durable, `Err` if the
/// flush failed (the commit's durability is then unknown).
pub(super) type Durable = Result<(), ()>;

/// What a waiter runs when its version is durable (or the flush failed): on
/// the flusher thread, so it must be short (it completes the commit's
/// futures). A callback rather than a channel, so that a commit applied on the
/// committer thread hands its completion straight to the flusher, and the
/// caller's task is woken once per commit wherever the commit ran.
pub(super) type OnDurable = Box<dyn FnOnce(Durable) + Send>;

struct State {
    /// Highest version written to the journal (buffered).
    written: u64,
    /// Highest version known durable.
    durable: u64,
    /// `(version, is a commit, callback)`: commits and durable reads waiting.
    waiters: Vec<(u64, bool, OnDurable)>,
    /// Commits among `waiters`.
    commits_waiting: usize,
    /// Journal syncs done so far (tests check which commits cause one).
    syncs: u64,
    failed: bool,
    shutdown: bool,
    /// The flusher waits on the condvar (nothing to sync): commits must wake it.
    flusher_idle: bool,
    /// The flusher lingers (adaptive policy): a commit that brings
    /// `commits_waiting` to `last_batch` must wake it.
    flusher_lingering: bool,
    /// How many commits the last fsync released (linger only when > 1).
    last_batch: usize,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// The flusher thread and its queue of waiters.
pub(super) struct GroupCommit {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl GroupCommit {
    /// Starts the flusher for `db`, whose files live in `dir`; `version` is the
    /// highest version already durable (recovered at open); `linger` and
    /// `policy`: see the module docs.
    pub(super) fn start(
        db: Database,
        dir: PathBuf,
        version: u64,
        linger: Duration,
        policy: LingerPolicy,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                written: version,
                durable: version,
                waiters: Vec::new(),
                commits_waiting: 0,
                syncs: 0,
                failed: false,
                shutdown: false,
                flusher_idle: false,
                flusher_lingering: false,
                last_batch: 0,
            }),
            wake: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("outpost-store-flush".into())
            .spawn({
                let shared = shared.clone();
                move || flusher(&shared, &db, JournalSyncer::new(dir), linger, policy)
            })?;
        Ok(GroupCommit {
            shared,
            thread: Some(thread),
        })
    }

    /// Records that `version` was written (call with the commit lock held, so
    /// versions arrive in order); `done` runs once it is durable.
    pub(super) fn written(&self, version: u64, done: OnDurable) {
        let mut st = lock(&self.shared.state);
        if st.failed {
            drop(st);
            done(Err(()));
            return;
        }
        st.written = st.written.max(version);
        st.waiters.push((version, true, done));
        st.commits_waiting += 1;
        let wake = st.flusher_idle || (st.flusher_lingering && st.commits_waiting == st.last_batch);
        drop(st);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Runs `done` once every durable-mode commit up to `version` is durable
    /// (at once, on this thread, if that is already so). Read-only transactions
    /// use it so they never return data a crash could undo. Relaxed commits
    /// (which never call [`written`](Self::written)) are not waited for:
    /// `written` is the newest durable-mode commit, so versions above it were
    /// all relaxed.
    pub(super) fn wait_durable(&self, version: u64, done: OnDurable) {
        let mut st = lock(&self.shared.state);
        let version = version.min(st.written);
        if st.durable >= version {
            drop(st);
            done(Ok(()));
        } else if st.failed {
            drop(st);
            done(Err(()));
        } else {
            st.waiters.push((version, false, done));
        }
    }
}

#[cfg(test)]
impl GroupCommit {
    /// Journal syncs done so far.
    pub(super) fn syncs(&self) -> u64 {
        lock(&self.shared.state).syncs
    }

    /// Commits the last sync released.
    pub(super) fn last_batch(&self) -> usize {
        lock(&self.shared.state).last_batch
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        lock(&self.shared.state).shutdown = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn flusher(
    shared: &Shared,
    db: &Database,
    mut syncer: JournalSyncer,
    linger: Duration,
    policy: LingerPolicy,
) {
    loop {
        let target = {
            let mut st = lock(&shared.state);
            while st.written <= st.durable && !st.shutdown {
                st.flusher_idle = true;
                st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                st.flusher_idle = false;
            }
            if st.written <= st.durable {
                return; // shutdown with nothing pending
            }
            if st.last_batch > 1 && !linger.is_zero() && !st.shutdown {
                match policy {
                    LingerPolicy::Fixed => {
                        drop(st);
                        std::thread::sleep(linger);
                        st = lock(&shared.state);
                    }
                    LingerPolicy::Adaptive => {
                        let until = Instant::now() + linger;
                        while st.commits_waiting < st.last_batch && !st.shutdown {
                            let Some(left) = until.checked_duration_since(Instant::now()) else {
                                break;
                            };
                            st.flusher_lingering = true;
                            st = shared
                                .wake
                                .wait_timeout(st, left)
                                .unwrap_or_else(|p| p.into_inner())
                                .0;
                            st.flusher_lingering = false;
                        }
                    }
                }
            }
            st.written
        };
        let started = Instant::now();
        let result = syncer.sync(db);
        let took = started.elapsed();
        let mut st = lock(&shared.state);
        match result {
            Ok(()) => {
                st.durable = target;
                st.syncs += 1;
                let (done, pending): (Vec<_>, Vec<_>) =
                    st.waiters.drain(..).partition(|(v, _, _)| *v <= target);
                st.waiters = pending;
                let released = done.iter().filter(|(_, commit, _)| *commit).count();
                st.commits_waiting -= released;
                st.last_batch = released;
                drop(st);
                for (_, _, w) in done {
                    w(Ok(()));
                }
                // After the wake-ups: the waiters do not wait for the bookkeeping.
                crate::store::metrics::journal_synced(took, released);
            }
            Err(e) => {
                tracing::error!(error = %e, "store journal fsync failed; the store refuses further durable commits");
                st.failed = true;
                // Nothing is durable any more; fail every waiter, then stop.
                st.commits_waiting = 0;
                let failed = std::mem::take(&mut st.waiters);
                st.durable = st.written;
                let stop = st.shutdown;
                drop(st);
                for (_, _, w) in failed {
                    w(Err(()));
                }
                if stop {
                    return;
                }
            }
        }
    }
}

/// Makes fjall's active journal durable (see the module docs).
struct JournalSyncer {
    dir: PathBuf,
    /// The active journal's id and a handle on it ...
    active: Option<(u64, File)>,
    /// ... and the path its successor will have (`<id + 1>.jnl`).
    next: PathBuf,
    /// Directory scans so far (tests check that a flush without a rotation
    /// does not scan).
    scans: u64,
}

impl JournalSyncer {
    fn new(dir: PathBuf) -> Self {
        JournalSyncer {
            dir,
            active: None,
            next: PathBuf::new(),
            scans: 0,
        }
    }

    fn sync(&mut self, db: &Database) -> Result<(), String> {
        db.persist(PersistMode::Buffer).map_err(|e| e.to_string())?;
        match self.active_journal() {
            Ok(Some(file)) => file.sync_data().map_err(|e| e.to_string()),
            Ok(None) | Err(_) => db.persist(PersistMode::SyncData).map_err(|e| e.to_string()),
        }
    }

    /// The active journal. fjall rotates journal `n` to `n + 1` (its
    /// `journal::writer::Writer::rotate`), so while `<n + 1>.jnl` does not
    /// exist, `n` is still the active one: one `stat` per flush. The directory
    /// is scanned only when a successor appeared (or at the first flush); a
    /// scan per flush cost about 10 µs of a fresh-device login's CPU
    /// (docs/PERFORMANCE.md, "A directory scan per group-commit flush").
    fn active_journal(&mut self) -> std::io::Result<Option<&File>> {
        if self.active.is_some() && !self.next.try_exists()? {
            return Ok(self.active.as_ref().map(|(_, f)| f));
        }
        self.scans += 1;
        let Some(newest) = newest_journal(&self.dir)? else {
            return Ok(None);
        };
        if self.active.as_ref().map(|(id, _)| *id) != Some(newest) {
            let file = File::open(journal_path(&self.dir, newest))?;
            // The new journal's directory entry must be durable too.
            File::open(&self.dir)?.sync_all()?;
            self.active = Some((newest, file));
            self.next = journal_path(&self.dir, newest + 1);
        }
        Ok(self.active.as_ref().map(|(_, f)| f))
    }
}

/// fjall's name for journal `id` in `dir`.
fn journal_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id}.jnl"))
}

fn newest_journal(dir: &Path) -> std::io::Result<Option<u64>> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".jnl"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        newest = newest.max(Some(id));
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active_id(s: &mut JournalSyncer) -> Option<u64> {
        s.active_journal().unwrap();
        s.active.as_ref().map(|(id, _)| *id)
    }

    /// The syncer follows fjall's journal rotations (`n.jnl` to `n+1.jnl`,
    /// several between two flushes too), and scans the directory only when a
    /// successor appeared.
    #[test]
    fn the_syncer_follows_rotations_and_scans_only_when_one_happened() {
        let dir = tempfile::tempdir().unwrap();
        let touch = |id: u64| File::create(journal_path(dir.path(), id)).unwrap();
        let mut s = JournalSyncer::new(dir.path().to_path_buf());
        assert_eq!(active_id(&mut s), None, "no journal yet");

        touch(0);
        assert_eq!(active_id(&mut s), Some(0));
        let scans = s.scans;
        for _ in 0..10 {
            assert_eq!(active_id(&mut s), Some(0));
        }
        assert_eq!(s.scans, scans, "no rotation, no scan");

        touch(1);
        assert_eq!(active_id(&mut s), Some(1));
        touch(2);
        touch(3);
        assert_eq!(active_id(&mut s), Some(3), "two rotations between flushes");
        // fjall deletes sealed journals once flushed; the active one stays.
        for id in 0..3 {
            std::fs::remove_file(journal_path(dir.path(), id)).unwrap();
        }
        let scans = s.scans;
        assert_eq!(active_id(&mut s), Some(3));
        assert_eq!(s.scans, scans);
    }

    /// With real fjall: once its journal passes 64 MB, a memtable flush
    /// rotates it to the next id, in the database's directory, and the syncer
    /// moves to the new journal (the layout the module docs rely on).
    #[test]
    fn a_real_fjall_rotation_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path()).open().unwrap();
        let ks = db
            .keyspace("data", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let mut s = JournalSyncer::new(dir.path().to_path_buf());
        s.sync(&db).unwrap();
        let first = s.active.as_ref().map(|(id, _)| *id).expect("a journal at open");

        // 70 MB that does not compress (fjall may compress journal entries).
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut value = vec![0u8; 64 * 1024];
        for i in 0u32..1_100 {
            for b in value.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.copy_from_slice(&x.to_le_bytes());
            }
            ks.insert(i.to_be_bytes(), &value).unwrap();
        }
        ks.rotate_memtable_and_wait().unwrap();
        assert!(
            journal_path(dir.path(), first + 1).exists(),
            "fjall rotated its journal to the next id"
        );
        s.sync(&db).unwrap();
        assert_eq!(s.active.as_ref().map(|(id, _)| *id), Some(first + 1));
    }
}

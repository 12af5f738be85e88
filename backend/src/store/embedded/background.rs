//! fjall's background threads (memtable flushes and compactions, and the
//! threads they start, such as the lsm-tree patch's `lsm-version-drop`) run at
//! a lower CPU priority than the threads that serve requests
//! ([`EmbeddedConfig::background_nice`](super::EmbeddedConfig::background_nice)).
//!
//! # Why
//!
//! A flush takes about 0.3 s of CPU on one thread (a 64 MiB memtable written
//! out as a table), and freeing the flushed memtable about 0.1 s more, both
//! within a second (a system-wide profile of live-50k, docs/PERFORMANCE.md,
//! session 23). On a box about 60% busy, that second had no idle CPU left, and
//! the gateway's QUIC socket queued what its receive path could not take yet:
//! at 4 of 13 journal rotations measured, 4–17 MiB of datagrams within 3 s;
//! twice it overflowed, and the gateway and its clients dropped datagrams and
//! retransmitted for tens of seconds. A thread at
//! nice 10 gets about a tenth of the CPU share of a nice-0 thread while both
//! want the CPU, and all of a CPU that nobody else wants: the flush finishes a
//! little later, and requests go first. RocksDB lowers its background pool the
//! same way (`Env::LowerThreadPoolCPUPriority`).
//!
//! # Cost
//!
//! Under CPU saturation that lasts longer than a flush takes, flushes fall
//! behind; fjall then stalls writes (at 4 sealed memtables, in 100 ms sleeps),
//! the backpressure a slow disk causes too. The group-commit flusher (the
//! fsyncs that durable commits wait for) keeps its priority.
//!
//! # How
//!
//! fjall starts its worker threads (`fjall:worker`) itself when the database
//! opens, so they are found by name in `/proc/self/task` and reniced with
//! `setpriority(2)` on their thread ids (on Linux a thread's nice value is its
//! own). A thread takes its name only once it first runs, which can be after
//! `open` returned (a live run's gateway had one of its two workers still
//! unnamed, and left at nice 0). So the store sets fjall's worker count
//! itself ([`WORKER_COUNT`], fjall's own default) and waits, at most
//! [`NAMING_WAIT`], until that many named workers exist that did not before
//! it opened. The threads the workers start inherit their nice value. A thread
//! already at that nice value or above is left as it is (raising a priority
//! needs privileges). Only threads that were not there before the open are
//! touched, so other stores' (and other fjall databases') workers keep theirs,
//! except one opened at the same moment. Elsewhere than Linux this does nothing.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

/// The name fjall gives its worker threads (flushes and compactions).
pub const WORKER_THREAD: &str = "fjall:worker";

/// fjall's worker threads per database: fjall's own default (one per core, at
/// most 4), set explicitly so that [`lower_new_workers`] knows how many to
/// wait for.
pub static WORKER_COUNT: std::sync::LazyLock<NonZeroUsize> = std::sync::LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    NonZeroUsize::new(cores.min(4)).unwrap_or(NonZeroUsize::MIN)
});

/// How long [`lower_new_workers`] waits for a new database's workers to take
/// their name. They do within microseconds of being scheduled.
pub const NAMING_WAIT: Duration = Duration::from_secs(1);

/// The highest nice value (the lowest priority) Linux has.
pub const MAX_NICE: i32 = 19;

/// After a database opened with [`WORKER_COUNT`] workers (`before`: the
/// [`worker_tids`] from before it opened), lowers the workers not in
/// `before` to `nice` (those already there or lower left alone) once that
/// many carry their name, waiting at most [`NAMING_WAIT`] for them; returns
/// how many it lowered. New threads, not a count: another store's workers may
/// end meanwhile; and only new ones, so other stores' (and other fjall
/// databases') workers keep their own priority. 0: leaves them alone.
pub fn lower_new_workers(nice: i32, before: &[i32]) -> std::io::Result<usize> {
    if nice == 0 || !cfg!(target_os = "linux") {
        return Ok(0);
    }
    let deadline = Instant::now() + NAMING_WAIT;
    let mut lowered = 0;
    loop {
        // One listing serves both: every worker counted is also lowered.
        let workers = workers()?;
        let mut new = 0;
        for &(tid, current) in workers.iter().filter(|(tid, _)| !before.contains(tid)) {
            new += 1;
            if current < nice && set_nice(tid, nice)? {
                lowered += 1;
            }
        }
        if new >= WORKER_COUNT.get() {
            return Ok(lowered);
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                new,
                expected = WORKER_COUNT.get(),
                "the store's background threads did not all take their name in time; some keep their priority"
            );
            return Ok(lowered);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sets thread `tid`'s nice value; `false` if the thread has ended.
#[cfg(target_os = "linux")]
fn set_nice(tid: i32, nice: i32) -> std::io::Result<bool> {
    use rustix::process::{setpriority_process, Pid};
    let Some(pid) = Pid::from_raw(tid) else {
        return Ok(false);
    };
    match setpriority_process(Some(pid), nice) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::SRCH) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Elsewhere than Linux a thread has no priority of its own.
#[cfg(not(target_os = "linux"))]
fn set_nice(_tid: i32, _nice: i32) -> std::io::Result<bool> {
    Ok(false)
}

/// The thread ids of this process's threads named [`WORKER_THREAD`] (none
/// where `/proc` cannot be read).
pub fn worker_tids() -> Vec<i32> {
    workers()
        .unwrap_or_default()
        .into_iter()
        .map(|(tid, _)| tid)
        .collect()
}

/// The nice value of each of this process's threads named [`WORKER_THREAD`]
/// (none where `/proc` cannot be read).
pub fn worker_nice_values() -> Vec<i32> {
    workers()
        .unwrap_or_default()
        .into_iter()
        .map(|(_, nice)| nice)
        .collect()
}

/// (thread id, nice value) of each of this process's threads named
/// [`WORKER_THREAD`]; a thread that ends while it is read is skipped.
fn workers() -> std::io::Result<Vec<(i32, i32)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task")?.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let path = entry.path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        if comm.trim_end() != WORKER_THREAD {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // Field 19 is the nice value; the name (field 2) may hold spaces, so
        // count from the closing parenthesis.
        let nice = stat
            .rfind(')')
            .and_then(|end| stat.get(end + 2..))
            .and_then(|after| after.split(' ').nth(16))
            .and_then(|field| field.parse().ok());
        if let Some(nice) = nice {
            found.push((tid, nice));
        }
    }
    Ok(found)
}

//! The embedded store's commit-lock metric
//! (`outpost_store_commit_lock_held_seconds{on}`) on the real store in a temp
//! dir, seen through a recorder installed for this test binary alone (its own
//! process, so no other test's commits land in it): a commit stalled inside the
//! store is recorded as a long hold by its caller, and the commit queued
//! behind it as a short hold by the committer thread (the hold, not the wait
//! for the lock).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use outpost_backend::store::embedded::faults::{CommitFault, FaultConfig};
use outpost_backend::store::embedded::{EmbeddedConfig, EmbeddedStore};
use outpost_backend::store::metrics::COMMIT_LOCK_HELD_SECONDS;
use outpost_backend::store::{Store, Transaction, TxError};

/// Samples of the commit-lock histogram: (`on` label, seconds).
type Samples = Arc<Mutex<Vec<(String, f64)>>>;

/// Records the samples of [`COMMIT_LOCK_HELD_SECONDS`]; everything else is
/// dropped.
struct LockHeldRecorder(Samples);

struct LockHeld {
    on: String,
    samples: Samples,
}

impl HistogramFn for LockHeld {
    fn record(&self, value: f64) {
        self.samples.lock().unwrap().push((self.on.clone(), value));
    }
}

impl Recorder for LockHeldRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        if key.name() != COMMIT_LOCK_HELD_SECONDS {
            return Histogram::noop();
        }
        let on = key
            .labels()
            .find(|l| l.key() == "on")
            .map(|l| l.value().to_string())
            .unwrap_or_default();
        Histogram::from_arc(Arc::new(LockHeld {
            on,
            samples: self.0.clone(),
        }))
    }
}

fn samples() -> Samples {
    static SAMPLES: OnceLock<Samples> = OnceLock::new();
    SAMPLES
        .get_or_init(|| {
            let samples = Samples::default();
            metrics::set_global_recorder(LockHeldRecorder(samples.clone())).expect("the only recorder");
            samples
        })
        .clone()
}

async fn put(store: &EmbeddedStore, k: &'static [u8]) -> Result<(), TxError> {
    store
        .run(|tx| async move {
            tx.set(k, b"v")?;
            Ok::<_, TxError>(())
        })
        .await
}

const STALL: Duration = Duration::from_millis(400);

/// The gateway's shape of runtime: two workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_commit_is_a_long_hold_by_its_caller_and_the_one_queued_behind_it_a_short_one() {
    let samples = samples();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = EmbeddedConfig::new(dir.path());
    config.faults = Some(FaultConfig::default());
    let store = EmbeddedStore::open(config).await.expect("open");

    put(&store, b"plain").await.expect("commit");
    {
        let s = samples.lock().unwrap();
        assert_eq!(s.len(), 1, "one write commit, one sample: {s:?}");
        assert_eq!(
            s[0].0, "caller",
            "an uncontended commit runs on its caller's task"
        );
        assert!(
            s[0].1 < STALL.as_secs_f64() / 2.0,
            "an unstalled hold is short: {s:?}"
        );
    }
    // A read-only transaction holds nothing worth recording.
    store
        .run(|tx| async move { Ok::<_, TxError>(tx.get(b"plain").await?) })
        .await
        .expect("read");
    assert_eq!(samples.lock().unwrap().len(), 1, "reads record no hold");

    assert!(store.script_commit_faults([CommitFault::Stall(STALL)]));
    let stalled = tokio::spawn({
        let store = store.clone();
        async move { put(&store, b"stalled").await }
    });
    while store.fault_counts().expect("fault mode").commit_delay < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The lock is held by the stalled commit: this one goes to the committer
    // thread and waits there for the rest of the stall.
    put(&store, b"queued").await.expect("queued commit");
    stalled.await.expect("join").expect("stalled commit");

    let s = samples.lock().unwrap().clone();
    assert_eq!(s.len(), 3, "three write commits: {s:?}");
    let caller_long: Vec<_> = s
        .iter()
        .filter(|(on, v)| on == "caller" && *v >= STALL.as_secs_f64())
        .collect();
    assert_eq!(caller_long.len(), 1, "the stall is the caller's hold: {s:?}");
    let committer: Vec<_> = s.iter().filter(|(on, _)| on == "committer").collect();
    assert_eq!(
        committer.len(),
        1,
        "the queued commit ran on the committer: {s:?}"
    );
    assert!(
        committer[0].1 < STALL.as_secs_f64() / 2.0,
        "the committer's hold excludes its wait for the lock: {s:?}"
    );
}

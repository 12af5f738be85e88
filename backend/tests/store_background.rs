//! fjall's flush and compaction threads run at `background_nice` once an
//! embedded store has opened (`store::embedded::background`), checked in a
//! process of its own so that no other test's store is half-open while it
//! looks: every `fjall:worker` thread of the process is the stores' own.

#![cfg(target_os = "linux")]

use outpost_backend::store::embedded::background::{worker_nice_values, WORKER_COUNT};
use outpost_backend::store::embedded::{EmbeddedConfig, EmbeddedStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_of_every_store_runs_at_the_configured_nice_value() {
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    // The default (10), then a store of its own value: each lowers its own
    // workers once they are named.
    let first = EmbeddedStore::open(EmbeddedConfig::new(dirs[0].path()))
        .await
        .expect("open");
    let values = worker_nice_values();
    assert_eq!(
        values.len(),
        WORKER_COUNT.get(),
        "one store's workers: {values:?}"
    );
    assert!(values.iter().all(|&n| n == 10), "nice values: {values:?}");

    let second = EmbeddedStore::open(EmbeddedConfig {
        background_nice: 15,
        ..EmbeddedConfig::new(dirs[1].path())
    })
    .await
    .expect("open");
    let values = worker_nice_values();
    assert_eq!(
        values.len(),
        2 * WORKER_COUNT.get(),
        "two stores' workers: {values:?}"
    );
    // Each store's own workers at its own value: the second open touches only
    // the threads it started.
    let mut values = values;
    values.sort_unstable();
    let expected: Vec<i32> = [10, 15]
        .iter()
        .flat_map(|&n| vec![n; WORKER_COUNT.get()])
        .collect();
    assert_eq!(values, expected, "nice values");
    drop((first, second));
}

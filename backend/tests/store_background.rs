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
    // workers once they are named, and leaves threads already lower alone.
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
    // Every named worker of the process is lowered to at least 15 by the
    // second open (the first store's too: fjall's threads carry no store's name).
    assert!(values.iter().all(|&n| n == 15), "nice values: {values:?}");
    drop((first, second));
}

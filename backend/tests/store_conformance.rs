//! Runs the shared conformance suite against the embedded backend (durable and
//! buffered) and, with `--features fdb` and `FDB_CLUSTER_FILE` set, FoundationDB.

use outpost_backend::store::conformance;
use outpost_backend::store::embedded::{EmbeddedConfig, EmbeddedStore, PersistMode};

async fn open(dir: &std::path::Path, persist: PersistMode) -> EmbeddedStore {
    let mut config = EmbeddedConfig::new(dir);
    config.persist = persist;
    EmbeddedStore::open(config).await.expect("open embedded store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_durable_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), PersistMode::Durable).await;
    let root = b"conformance";
    conformance::read_your_writes(&store, root).await;
    conformance::point_read_conflict(&store, root).await;
    conformance::range_read_conflict(&store, root).await;
    conformance::no_conflict_for_snapshot_blind_and_atomic(&store, root).await;
    conformance::retry_reruns_closure(&store, root).await;
    conformance::versionstamp_order(&store, root).await;
    conformance::watches_fire_on_change(&store, root).await;
    conformance::limits_are_enforced(&store, root).await;
    // 64 x 1,000 durable increments of one key: group commit keeps this quick.
    conformance::concurrent_increments(&store, root, 64, 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_buffered_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), PersistMode::Buffered).await;
    conformance::run_all(&store, b"conformance").await;
}

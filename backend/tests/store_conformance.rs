//! Runs the shared conformance suite against the embedded backend (durable and
//! buffered) and, with `--features fdb` and `--ignored`, FoundationDB.
//!
//! These stores never run in fault mode: the suite asserts the store's exact
//! behaviour (how often a closure runs, which commit conflicts), so it opens them
//! with `EmbeddedConfig` directly, not through `store::testing`.

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
    conformance::adds_after_reads(&store, root).await;
    conformance::adds_after_a_range_clear(&store, root).await;
    conformance::retry_reruns_closure(&store, root).await;
    conformance::versionstamp_order(&store, root).await;
    conformance::watches_fire_on_change(&store, root).await;
    conformance::watches_see_changes_before_their_commit(&store, root).await;
    conformance::limits_are_enforced(&store, root).await;
    conformance::relaxed_commits_are_transactions(&store, root).await;
    // 64 x 1,000 durable increments of one key: group commit keeps this quick.
    conformance::concurrent_increments(&store, root, 64, 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_buffered_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), PersistMode::Buffered).await;
    conformance::run_all(&store, b"conformance").await;
}

/// FoundationDB: needs the client library (libfdb_c 7.3) and a cluster, which our
/// build machines do not have, so it is ignored by default. Run it with:
///
/// ```text
/// FDB_CLUSTER_FILE=/etc/foundationdb/fdb.cluster \
///   cargo test -p outpost-backend --features fdb --test store_conformance -- --ignored fdb_conforms
/// ```
///
/// Without `FDB_CLUSTER_FILE` it fails rather than pass without testing anything.
#[cfg(feature = "fdb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a FoundationDB cluster: FDB_CLUSTER_FILE=<cluster file> cargo test -p outpost-backend --features fdb --test store_conformance -- --ignored fdb_conforms"]
async fn fdb_conforms() {
    use outpost_backend::store::{AnyStore, BackendKind, FdbConfig, StoreConfig};
    let cluster_file = std::env::var_os("FDB_CLUSTER_FILE")
        .expect("fdb_conforms needs FDB_CLUSTER_FILE naming a reachable FoundationDB cluster");
    // SAFETY: the network guard lives until the end of this test, and this is the
    // only test in the binary that starts the FoundationDB network.
    #[allow(unsafe_code)]
    let _network = unsafe { foundationdb::boot() };
    let store = AnyStore::open(&StoreConfig {
        backend: BackendKind::Fdb,
        embedded: None,
        fdb: FdbConfig {
            cluster_file: Some(cluster_file.into()),
            ..FdbConfig::default()
        },
    })
    .await
    .expect("open FoundationDB");
    // A per-run root so concurrent runs against one cluster do not collide.
    let root = format!("outpost-conformance-{}", std::process::id());
    conformance::run_all(&store, root.as_bytes()).await;
}

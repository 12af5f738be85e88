//! The per-region service objects the channels use (player state, ledger),
//! built once per region and shared by every request and subscription.
//!
//! Building a ledger validates (and used to clone) the whole item catalog, and
//! every service validates its region name; before this cache the `State` and
//! `Inventory` channels did that on every request. Now the gateway's own region
//! is built when the router is made, and any other home region a session
//! addresses (serve-via-home, transfers) on its first use. The objects are
//! cheap to clone (`Arc`s and a store handle) and hold no per-request state.
//! Region names come from accounts (validated, written by the server), so the
//! map stays as small as the set of regions; a region that fails to build is
//! not cached, and is tried again on the next request.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use outpost_backend::ledger::{Catalog, Ledger, LedgerError};
use outpost_backend::state::{PlayerState, StateError};
use outpost_backend::store::AnyStore;
use outpost_schema::ErrorCode;

use super::errors::wire_error;
use super::ServiceError;
use crate::regions::Regions;

/// The services of one region.
#[derive(Clone)]
pub struct RegionServices {
    pub state: PlayerState<AnyStore>,
    pub ledger: Ledger<AnyStore>,
}

/// Why a region's services could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl RegionServices {
    fn build(store: AnyStore, region: &str, catalog: &Catalog) -> Result<Self, BuildError> {
        Ok(RegionServices {
            state: PlayerState::new(store.clone(), region)?,
            ledger: Ledger::new(store, region, catalog.clone())?,
        })
    }
}

/// Region name → its services, built on first use.
pub struct ServiceCache {
    regions: Arc<Regions>,
    catalog: Arc<Catalog>,
    built: RwLock<HashMap<String, Arc<RegionServices>>>,
}

impl ServiceCache {
    /// A cache with the local region's services built now. (If they cannot be
    /// built, which the gateway's startup checks of its region name and catalog
    /// rule out, each request reports why, as for any other region.)
    pub fn new(regions: Arc<Regions>, catalog: Arc<Catalog>) -> Self {
        let cache = ServiceCache {
            regions,
            catalog,
            built: RwLock::default(),
        };
        let _ = cache.get(cache.regions.local());
        cache
    }

    fn insert(&self, region: &str, services: RegionServices) -> Arc<RegionServices> {
        let mut built = self.built.write().expect("service cache lock");
        built
            .entry(region.to_owned())
            .or_insert_with(|| Arc::new(services))
            .clone()
    }

    /// The services of `region` (a player's home region): `Unavailable` if this
    /// gateway cannot reach its store, else the class of the build error (an
    /// invalid region name, an invalid catalog) if they cannot be built.
    pub fn get(&self, region: &str) -> Result<Arc<RegionServices>, ServiceError> {
        if let Some(s) = self.built.read().expect("service cache lock").get(region) {
            return Ok(s.clone());
        }
        let store = self.regions.store(region).ok_or_else(|| {
            ServiceError::new(
                ErrorCode::Unavailable,
                format!("home region {region} is not reachable from this gateway"),
            )
        })?;
        let services = RegionServices::build(store, region, &self.catalog).map_err(|e| match e {
            BuildError::State(e) => wire_error(e),
            BuildError::Ledger(e) => wire_error(e),
        })?;
        Ok(self.insert(region, services))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use outpost_backend::store::StoreConfig;

    use super::*;

    async fn cache(catalog: Catalog) -> (tempfile::TempDir, ServiceCache) {
        let dir = tempfile::tempdir().unwrap();
        let store = AnyStore::open(&StoreConfig::embedded(dir.path().join("store")))
            .await
            .unwrap();
        let regions = Arc::new(Regions::new("eu", store, true));
        (dir, ServiceCache::new(regions, Arc::new(catalog)))
    }

    #[tokio::test]
    async fn services_are_built_once_per_region() {
        let dev = Catalog::from_toml_str(include_str!("../dev_catalog.toml")).unwrap();
        let (_dir, cache) = cache(dev).await;
        assert_eq!(cache.built.read().unwrap().len(), 1, "the local region, at once");
        let a = cache.get("eu").unwrap();
        assert!(Arc::ptr_eq(&a, &cache.get("eu").unwrap()));
        let b = cache.get("apac").unwrap();
        assert!(Arc::ptr_eq(&b, &cache.get("apac").unwrap()));
        assert_eq!(b.ledger.region(), "apac");
        let Err(e) = cache.get("Not A Region") else {
            panic!("an invalid region name is refused")
        };
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert_eq!(cache.built.read().unwrap().len(), 2, "failures are not cached");
    }

    /// What a request used to pay (build the services: clone and validate the
    /// catalog, validate the region) against a cache hit. Run with
    /// `cargo test -p outpost-gateway --lib measure_ -- --ignored --nocapture`.
    #[tokio::test]
    #[ignore = "a measurement, not a check"]
    async fn measure_build_against_cache_hit() {
        for items in [6usize, 1_000] {
            let mut toml = String::new();
            for i in 0..items {
                toml.push_str(&format!("[items.item_{i}]\nmax_stack = 99\n"));
            }
            let catalog = Catalog::from_toml_str(&toml).unwrap();
            let (_dir, cache) = cache(catalog.clone()).await;
            let store = cache.regions.store("eu").unwrap();
            let n = 2_000u32;
            let t = Instant::now();
            for _ in 0..n {
                std::hint::black_box(RegionServices::build(store.clone(), "eu", &catalog).unwrap());
            }
            let build = t.elapsed() / n;
            let t = Instant::now();
            for _ in 0..n {
                std::hint::black_box(cache.get("eu").unwrap());
            }
            let hit = t.elapsed() / n;
            eprintln!("{items} items: build {build:?} per request, cache hit {hit:?}");
        }
    }
}

//! The region stores a gateway can reach: its own region's, and any other
//! region's it is configured to serve players of (serve-via-home and transfer).
//!
//! With the embedded default every region's keyspace lives in the one local store
//! (regions are key prefixes), so every region is "reachable". With FoundationDB a
//! gateway lists the clusters of the regions it may reach.

use std::collections::HashMap;

use outpost_backend::store::AnyStore;

/// Region name → store holding that region's keyspace.
#[derive(Clone)]
pub struct Regions {
    local: String,
    stores: HashMap<String, AnyStore>,
    /// Used for any region not listed: the embedded single-store layout.
    fallback: Option<AnyStore>,
}

impl Regions {
    /// `local` is served from `store`. With `shared_keyspaces`, other regions
    /// resolve to the same store (the embedded layout).
    pub fn new(local: &str, store: AnyStore, shared_keyspaces: bool) -> Self {
        let fallback = shared_keyspaces.then(|| store.clone());
        Regions {
            local: local.to_owned(),
            stores: HashMap::from([(local.to_owned(), store)]),
            fallback,
        }
    }

    /// Adds another region's store.
    pub fn insert(&mut self, region: &str, store: AnyStore) {
        self.stores.insert(region.to_owned(), store);
    }

    pub fn local(&self) -> &str {
        &self.local
    }

    /// The store of `region`, if this gateway can reach it.
    pub fn store(&self, region: &str) -> Option<AnyStore> {
        self.stores.get(region).cloned().or_else(|| self.fallback.clone())
    }

    /// Every explicitly configured region with its store.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &AnyStore)> {
        self.stores.iter().map(|(k, v)| (k.as_str(), v))
    }
}

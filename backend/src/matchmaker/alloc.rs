//! Game-server allocation: the [`ServerAllocator`] trait and the default
//! [`StaticAllocator`] (a fixed list of server addresses per region, handed out
//! round-robin).
//!
//! The store-backed worker allocates a server for each match *before* the
//! match's commit transaction and calls [`ServerAllocator::release`] if the
//! commit then fails (a ticket was cancelled or taken meanwhile, or the worker
//! lost its lease). A fleet allocator (Agones, GameLift, an in-house fleet
//! service) should key its allocations by match id so that a retried
//! allocation for the same match returns the same server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::BoxFuture;

use super::types::{Match, ServerAssignment};

/// No server could be allocated for a match; the match is not committed and its
/// tickets stay in the pool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AllocError {
    /// No server is configured or available in the region.
    #[error("no game server available in region {0:?}")]
    NoCapacity(String),
    /// The allocator's backend failed.
    #[error("server allocation failed: {0}")]
    Failed(String),
}

/// Finds a game server for a match.
pub trait ServerAllocator: Send + Sync + 'static {
    /// Allocates a server for `m` (in `m.region`).
    fn allocate<'a>(&'a self, m: &'a Match) -> BoxFuture<'a, Result<ServerAssignment, AllocError>>;

    /// Returns a server allocated for a match that was not committed. Default:
    /// nothing to do.
    fn release<'a>(&'a self, _m: &'a Match, _server: &'a ServerAssignment) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// A fixed list of server addresses per region, handed out round-robin (the
/// default; game servers that host many matches each, or development).
#[derive(Debug, Default)]
pub struct StaticAllocator {
    servers: HashMap<String, (Vec<String>, AtomicUsize)>,
}

impl StaticAllocator {
    /// An allocator over `servers`: region name → addresses (`host:port`).
    pub fn new(servers: impl IntoIterator<Item = (String, Vec<String>)>) -> Self {
        StaticAllocator {
            servers: servers
                .into_iter()
                .map(|(r, a)| (r, (a, AtomicUsize::new(0))))
                .collect(),
        }
    }

    /// The next address for `region`, round-robin.
    pub fn next(&self, region: &str) -> Option<&str> {
        let (list, next) = self.servers.get(region)?;
        if list.is_empty() {
            return None;
        }
        let i = next.fetch_add(1, Ordering::Relaxed) % list.len();
        Some(&list[i])
    }
}

impl ServerAllocator for StaticAllocator {
    fn allocate<'a>(&'a self, m: &'a Match) -> BoxFuture<'a, Result<ServerAssignment, AllocError>> {
        let r = self
            .next(&m.region)
            .map(|a| ServerAssignment {
                address: a.to_owned(),
            })
            .ok_or_else(|| AllocError::NoCapacity(m.region.clone()));
        Box::pin(async move { r })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_per_region() {
        let a = StaticAllocator::new([
            ("eu".to_string(), vec!["a:1".to_string(), "b:1".to_string()]),
            ("us".to_string(), vec![]),
        ]);
        assert_eq!(a.next("eu"), Some("a:1"));
        assert_eq!(a.next("eu"), Some("b:1"));
        assert_eq!(a.next("eu"), Some("a:1"));
        assert_eq!(a.next("us"), None);
        assert_eq!(a.next("asia"), None);
    }
}

//! The per-address bound on queue places (`queue.max_places_per_address`,
//! PROTOCOL.md 3.7): how many places the connections from one address (an
//! IPv4 address, or an IPv6 /64, the smallest block one subscriber usually
//! gets) may hold through this gateway. A place counts from the `Queued`
//! that created or resumed it here until it is admitted, or, once its
//! connection is lost, for the place grace (the place survives that long and
//! could be taken back from anywhere). A login from an address at its bound
//! is treated as one that does not accept the queue: admitted if there is
//! room, else `Reject { ServerBusy }`. Accounts already counted for the
//! address (a reconnect with the token) are not refused.
//!
//! The count is this gateway's: an address spread over the region's gateways
//! may hold up to the bound at each. A place taken back through another
//! gateway keeps counting here until its grace ends (over-counting, never
//! under-counting). Memory: one entry per counted place, swept every grace.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The key an address is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum AddrKey {
    V4(u32),
    /// The /64 prefix.
    V6(u64),
}

impl AddrKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => AddrKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey::V4(u32::from(v4)),
                None => AddrKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Per address: the accounts counted, `None` while their connection is
    /// here, else when it was lost.
    places: HashMap<AddrKey, HashMap<Arc<str>, Option<Instant>>>,
    last_sweep: Option<Instant>,
}

/// The places held per address through this gateway.
#[derive(Debug)]
pub(crate) struct AddressPlaces {
    /// 0: no bound.
    max: u32,
    grace: Duration,
    inner: Mutex<Inner>,
}

impl AddressPlaces {
    pub fn new(max: u32, grace: Duration) -> Arc<Self> {
        Arc::new(Self {
            max,
            grace,
            inner: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `player` from `key` may hold a place at `now`.
    pub fn allows(&self, key: AddrKey, player: &str, now: Instant) -> bool {
        if self.max == 0 {
            return true;
        }
        let grace = self.grace;
        let mut inner = self.lock();
        let Some(held) = inner.places.get_mut(&key) else {
            return true;
        };
        held.retain(|_, lost| lost.is_none_or(|at| now.duration_since(at) < grace));
        held.contains_key(player) || held.len() < self.max as usize
    }

    /// Counts a place `player` holds from `key`; the guard ends the count
    /// (see [`AddressHold`]).
    pub fn hold(self: &Arc<Self>, key: AddrKey, player: &str, now: Instant) -> AddressHold {
        let player: Arc<str> = player.into();
        let mut inner = self.lock();
        if inner
            .last_sweep
            .is_none_or(|s| now.duration_since(s) >= self.grace)
        {
            inner.last_sweep = Some(now);
            let grace = self.grace;
            inner.places.retain(|_, held| {
                held.retain(|_, lost| lost.is_none_or(|at| now.duration_since(at) < grace));
                !held.is_empty()
            });
        }
        inner.places.entry(key).or_default().insert(player.clone(), None);
        AddressHold {
            places: self.clone(),
            key,
            player,
            admitted: false,
        }
    }

    /// Places counted for `key` right now.
    #[cfg(test)]
    pub fn count(&self, key: AddrKey) -> usize {
        self.lock().places.get(&key).map_or(0, HashMap::len)
    }
}

/// A counted place. Dropped after [`AddressHold::admitted`], the count ends;
/// dropped otherwise (connection lost, login refused), the place keeps
/// counting for the grace.
#[derive(Debug)]
pub(crate) struct AddressHold {
    places: Arc<AddressPlaces>,
    key: AddrKey,
    player: Arc<str>,
    admitted: bool,
}

impl AddressHold {
    /// The place was admitted: it stops counting when the guard drops.
    pub fn admitted(&mut self) {
        self.admitted = true;
    }
}

impl Drop for AddressHold {
    fn drop(&mut self) {
        let mut inner = self.places.lock();
        let Some(held) = inner.places.get_mut(&self.key) else {
            return;
        };
        if self.admitted {
            held.remove(&self.player);
            if held.is_empty() {
                inner.places.remove(&self.key);
            }
        } else if let Some(lost) = held.get_mut(&self.player) {
            *lost = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> AddrKey {
        AddrKey::of(s.parse().unwrap())
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(v4("2001:db8:1:2::1"), v4("2001:db8:1:2:ffff::9"));
        assert_ne!(v4("2001:db8:1:2::1"), v4("2001:db8:1:3::1"));
        assert_eq!(v4("::ffff:10.0.0.1"), v4("10.0.0.1"));
        assert_ne!(v4("10.0.0.1"), v4("10.0.0.2"));
    }

    #[test]
    fn an_address_holds_at_most_max_places_and_lost_ones_count_for_the_grace() {
        let grace = Duration::from_secs(120);
        let places = AddressPlaces::new(2, grace);
        let (a, b) = (v4("10.0.0.1"), v4("10.0.0.2"));
        let t0 = Instant::now();
        let mut h1 = places.hold(a, "p1", t0);
        let h2 = places.hold(a, "p2", t0);
        assert!(!places.allows(a, "p3", t0), "a third place from the same address");
        assert!(
            places.allows(a, "p1", t0),
            "an account already counted comes back"
        );
        assert!(places.allows(b, "p3", t0), "another address is not affected");
        // A lost connection keeps its place counted for the grace.
        drop(h2);
        assert!(!places.allows(a, "p3", t0 + Duration::from_secs(1)));
        assert!(places.allows(a, "p3", t0 + grace + Duration::from_secs(1)));
        // An admitted place stops counting at once.
        let _h3 = places.hold(a, "p3", t0 + grace + Duration::from_secs(1));
        h1.admitted();
        drop(h1);
        assert_eq!(places.count(a), 1, "p2 swept or expired, p1 admitted, p3 held");
        // No bound.
        let open = AddressPlaces::new(0, grace);
        let _k: Vec<_> = (0..10).map(|i| open.hold(a, &format!("x{i}"), t0)).collect();
        assert!(open.allows(a, "y", t0));
    }
}

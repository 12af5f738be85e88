//! The in-memory ticket pool of one queue: a slab of compact entries plus one
//! rating-ordered index per home region (`BTreeSet<(rating key, slot)>`), so
//! insert and remove are O(log n) and a round walks each region in rating order
//! in O(n).

use std::collections::BTreeSet;

use super::types::TicketId;

/// A ticket in compact form (regions as indices into the core's region table).
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub id: TicketId,
    pub players: Vec<String>,
    pub rating: f64,
    pub uncertainty: f64,
    pub home: u16,
    /// `(region index, rtt ms)`, for regions the core knows.
    pub latencies: Box<[(u16, u32)]>,
    /// The ticket's own latency bound (`u32::MAX`: none).
    pub max_latency_ms: u32,
    pub created_ms: u64,
    /// Owned by another partition (see [`super::core`]).
    pub borrowed: bool,
}

impl Entry {
    pub fn size(&self) -> u32 {
        self.players.len() as u32
    }

    pub fn latency_to(&self, region: u16) -> Option<u32> {
        self.latencies.iter().find(|(r, _)| *r == region).map(|(_, l)| *l)
    }
}

/// Maps a rating to an `i64` whose order is `f64::total_cmp`'s.
pub(crate) fn rating_key(r: f64) -> i64 {
    let b = r.to_bits() as i64;
    b ^ (((b >> 63) as u64) >> 1) as i64
}

/// One queue's tickets.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    by_region: Vec<BTreeSet<(i64, u32)>>,
}

impl Pool {
    pub fn new(regions: usize) -> Self {
        Pool {
            by_region: vec![BTreeSet::new(); regions],
            ..Pool::default()
        }
    }

    pub fn region_len(&self, region: u16) -> usize {
        self.by_region[region as usize].len()
    }

    /// Inserts an entry and returns its slot.
    pub fn insert(&mut self, e: Entry) -> u32 {
        let key = (rating_key(e.rating), 0);
        let home = e.home as usize;
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(e);
                s
            }
            None => {
                self.slots.push(Some(e));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_region[home].insert((key.0, slot));
        slot
    }

    /// Removes the entry in `slot`.
    pub fn remove(&mut self, slot: u32) -> Option<Entry> {
        let e = self.slots.get_mut(slot as usize)?.take()?;
        self.by_region[e.home as usize].remove(&(rating_key(e.rating), slot));
        self.free.push(slot);
        Some(e)
    }

    pub fn get(&self, slot: u32) -> &Entry {
        self.slots[slot as usize].as_ref().expect("live slot")
    }

    /// Up to `n` slots of `region`'s home tickets rated below `rating`
    /// (closest first) and up to `n` rated at or above it (closest first).
    pub fn region_near(&self, region: u16, rating: f64, n: usize) -> (Vec<u32>, Vec<u32>) {
        let set = &self.by_region[region as usize];
        let key = (rating_key(rating), 0);
        let below = set.range(..key).rev().take(n).map(|&(_, s)| s).collect();
        let above = set.range(key..).take(n).map(|&(_, s)| s).collect();
        (below, above)
    }

    /// Slots of `region`'s home tickets in rating order.
    pub fn region_slots(&self, region: u16) -> impl Iterator<Item = u32> + '_ {
        self.by_region[region as usize].iter().map(|&(_, s)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rating_key_orders_like_total_cmp() {
        let mut v = [-3.5, 0.0, -0.0, 1e9, -1e9, 2.25, 1500.0, 1499.999];
        let mut keys: Vec<_> = v.iter().map(|&r| rating_key(r)).collect();
        v.sort_by(f64::total_cmp);
        keys.sort();
        let back: Vec<_> = v.iter().map(|&r| rating_key(r)).collect();
        assert_eq!(keys, back);
    }
}

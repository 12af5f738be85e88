//! Which players are hot in this process: how reads of balance shards are made.
//!
//! The store keeps every version of a key until compaction, and a range read
//! steps over all of them, while a point read seeks to the one it needs. For a
//! player with many concurrent writes (thousands of versions of the same few
//! shards) one range read over the shards cost ~80% of a grant's CPU; for a
//! player written now and then, one range read over a few adjacent keys is
//! cheaper than a point read per shard (each may search several files). So a
//! write whose player already has another write in flight **in this process**
//! reads shards by point reads ([`super::projection`]); others, and balance
//! reads of players with no write in flight, by one range read. Both reads
//! return the same values and register the same conflicts: this only picks the
//! cheaper one. A player hot in *another* process (several gateways) still gets
//! range reads here; that costs time, never correctness.

use std::collections::HashMap;
use std::sync::Mutex;

/// Writes in flight per player (shared by a ledger handle's clones).
#[derive(Debug, Default)]
pub(super) struct InFlight(Mutex<HashMap<String, u32>>);

/// Holds a write's players as in flight until dropped.
pub(super) struct Entered<'a> {
    map: &'a InFlight,
    players: Vec<String>,
    /// Another write of one of the players was in flight when this one entered.
    pub(super) hot: bool,
}

impl InFlight {
    /// Registers a write of `players` (deduplicated by the caller or not).
    pub(super) fn enter<'a>(&'a self, players: impl IntoIterator<Item = &'a str>) -> Entered<'a> {
        let players: Vec<String> = players.into_iter().map(str::to_owned).collect();
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut hot = false;
        for p in &players {
            let n = map.entry(p.clone()).or_default();
            hot |= *n > 0;
            *n += 1;
        }
        Entered {
            map: self,
            players,
            hot,
        }
    }

    /// Whether `player` has a write in flight.
    pub(super) fn is_busy(&self, player: &str) -> bool {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(player).is_some_and(|n| *n > 0)
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        let mut map = self.map.0.lock().unwrap_or_else(|p| p.into_inner());
        for p in &self.players {
            if let Some(n) = map.get_mut(p) {
                *n -= 1;
                if *n == 0 {
                    map.remove(p);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_player_is_hot_while_another_write_of_it_is_in_flight() {
        let m = InFlight::default();
        let a = m.enter(["p1"]);
        assert!(!a.hot);
        assert!(m.is_busy("p1"));
        let b = m.enter(["p2", "p1"]);
        assert!(b.hot);
        let c = m.enter(["p2"]);
        assert!(c.hot);
        drop((a, b, c));
        assert!(!m.is_busy("p1") && !m.is_busy("p2"));
        assert!(m.0.lock().unwrap().is_empty());
    }
}

//! The ledger's keys in a **region** keyspace.
//!
//! # Key Schema
//!
//! Every key is a FoundationDB tuple under `("r", region, "inv", player)`
//! ([`player`]), the family a cross-region transfer moves
//! ([`LedgerFamily`](super::LedgerFamily)). Nothing after that prefix depends on
//! the region.
//!
//! ```text
//! (.., "inv", player, "ev", gen, vs)       -> v1 event: [1] ++ JSON
//!        {kind, source, idem, changes: [{asset: {kind, id}, delta}], at_ms,
//!         counterparty?, offer?, reason?}
//!        gen: u32 ledger generation; vs: 12-byte tuple versionstamp (10-byte
//!        commit stamp + user version 0), filled in at commit: conflict-free
//!        ordered appends
//! (.., "inv", player, "idem", key, vs)     -> v1 receipt: [1] ++ JSON
//!        {fingerprint, gen, kind, changes, at_ms}; vs is the stamp of the same
//!        commit as the event, so (gen, vs) is the event id. Looked up by the
//!        prefix (.., "idem", key): at most one key below it
//! (.., "inv", player, "rcur")              -> v1: [1][gen u32 BE][stamp 10 bytes]:
//!        receipt retention's cursor, the id of the last event whose receipt
//!        retention has dealt with (receipts are collected walking the events,
//!        which are in commit order, from here; see `retention`)
//! (.., "inv", player, "dup", key)          -> v1 duplicate record: [1] ++ JSON
//!        {idempotency_key, count, first_seen_ms, last_seen_ms, ops}; ops (absent
//!        in older records): op ids of the latest calls counted, at most 16
//! (.., "inv", player, "bal", kind, id, s)  -> 8-byte LE i64 (atomic add, no schema
//!        byte): escrow shard s (u16) of the balance of asset (kind "i" | "c", id);
//!        the balance is the sum of the shards; unlimited assets use shard 0 only
//! (.., "inv", player, "held", kind, id)    -> v1: [1]: the player has a balance
//!        key for asset (kind, id) (written, blindly, with the asset's first
//!        credit; never removed): lets balances be read by point reads instead
//!        of a range read over "bal", which steps over every stored version of a
//!        hot player's shards
//! (.., "inv", player, "held_all")          -> v1: [1]: "held" lists every asset
//!        under "bal" (written with the first write after "held" existed, which
//!        indexes the assets found by one range read); without it, balances are
//!        read by the range read over "bal"
//! (.., "inv", player, "tot", 1, kind, id)  -> 8-byte LE i64 (atomic add; the
//!        schema version is the key's `1`, atomic-add values carry none): the
//!        asset's total, the sum of its "bal" shards, added to in the same
//!        transaction as every shard (blind, conflict-free); lets the
//!        inventory-changed push read one key per asset instead of every shard
//! (.., "inv", player, "tot_all")           -> v1: [1]: every asset's "tot" equals
//!        the sum of its shards (written by the player's first write after
//!        "tot" existed, which sets each total from one range read of the
//!        shards, with conflicts); without it, totals are not read
//! (.., "inv", player, "indexed")           -> v1: [1]: "held_all" and "tot_all"
//!        are both set (written by a write that found or set both, before its
//!        balance changes); lets a write and the balance read check one key
//!        instead of two; without it, they check the two (see `marks`)
//! (.., "inv", player, "escrow", kind, id)  -> v1: [1][limit u64 BE][shards u16 BE]:
//!        the escrow layout every shard of the limited asset (kind, id) is
//!        within: each shard s holds 0..=capacity(limit, shards, s). Written by
//!        a credit's exact path when the layout differs from its catalog's,
//!        cleared by a write that leaves a shard outside it; lets a credit read
//!        just the shard it adds to, and skip the "held" check (the asset was
//!        indexed when the record was first set; see `escrow`)
//! (.., "inv", player, "chg")               -> 8-byte LE counter, +1 (atomic add) in
//!        every transaction that appends an event for the player; watched
//! (.., "inv", player, "gen")               -> v1: [1][gen u32 BE][region utf-8]:
//!        the ledger generation and the region that wrote it; a write that finds
//!        another region's name (the ledger was copied in by a transfer) bumps gen
//! ```

use foundationdb_tuple::{Subspace, Versionstamp};

use super::types::{Asset, EventId};
use crate::keyspace::RegionName;

/// The ledger subspace of a region, `("r", region, "inv")` (every player's
/// ledger; the region audit pages through it).
pub fn ledgers(region: &RegionName) -> Subspace {
    crate::keyspace::region_family(region, "inv")
}

/// Everything the ledger keeps for `player` in `region`: `("r", region, "inv", player)`.
pub fn player(region: &RegionName, player: &str) -> Subspace {
    ledgers(region).subspace(&(player,))
}

/// The player's events, `(.., "ev")`.
pub fn events(region: &RegionName, player_id: &str) -> Subspace {
    player(region, player_id).subspace(&("ev",))
}

/// A new event's key, with the versionstamp placeholder and offset (for
/// `set_versionstamped_key`).
pub fn new_event(region: &RegionName, player_id: &str, gen: u32) -> Vec<u8> {
    events(region, player_id).pack_with_versionstamp(&(gen, Versionstamp::incomplete(0)))
}

/// A stored event's key.
pub fn event(region: &RegionName, player_id: &str, id: &EventId) -> Vec<u8> {
    events(region, player_id).pack(&(id.gen, Versionstamp::complete(id.stamp, 0)))
}

/// Decodes an event key (below [`events`]) into its id.
pub fn event_id(events: &Subspace, key: &[u8]) -> Option<EventId> {
    let (gen, vs): (u32, Versionstamp) = events.unpack(key).ok()?;
    Some(EventId {
        gen,
        stamp: vs.transaction_version().try_into().ok()?,
    })
}

/// The prefix below which the receipt for idempotency key `key` lives.
pub fn idem(region: &RegionName, player_id: &str, key: &str) -> Subspace {
    player(region, player_id).subspace(&("idem", key))
}

/// A new receipt's key (versionstamp placeholder and offset).
pub fn new_idem(region: &RegionName, player_id: &str, key: &str) -> Vec<u8> {
    idem(region, player_id, key).pack_with_versionstamp(&(Versionstamp::incomplete(0),))
}

/// The receipt written by the same commit as event `id`, for idempotency key
/// `key`: `(.., "idem", key, vs)` with the event's stamp.
pub fn receipt(region: &RegionName, player_id: &str, key: &str, id: &EventId) -> Vec<u8> {
    idem(region, player_id, key).pack(&(Versionstamp::complete(id.stamp, 0),))
}

/// Receipt retention's cursor, `(.., "rcur")`.
pub fn receipt_cursor(region: &RegionName, player_id: &str) -> Vec<u8> {
    player(region, player_id).pack(&("rcur",))
}

/// The player's duplicate records, `(.., "dup")`.
pub fn dups(region: &RegionName, player_id: &str) -> Subspace {
    player(region, player_id).subspace(&("dup",))
}

/// `(.., "dup", key)`.
pub fn dup(region: &RegionName, player_id: &str, key: &str) -> Vec<u8> {
    dups(region, player_id).pack(&(key,))
}

/// The player's balances, `(.., "bal")`.
pub fn balances(region: &RegionName, player_id: &str) -> Subspace {
    player(region, player_id).subspace(&("bal",))
}

/// The shards of one asset's balance, `(.., "bal", kind, id)`.
pub fn asset(region: &RegionName, player_id: &str, asset: &Asset) -> Subspace {
    balances(region, player_id).subspace(&(asset.kind.tag(), asset.id.as_str()))
}

/// `(.., "bal", kind, id, shard)`.
pub fn shard(region: &RegionName, player_id: &str, a: &Asset, shard: u16) -> Vec<u8> {
    asset(region, player_id, a).pack(&(shard,))
}

/// The index of the assets the player has a balance key for, `(.., "held")`.
pub fn held(region: &RegionName, player_id: &str) -> Subspace {
    player(region, player_id).subspace(&("held",))
}

/// `(.., "held", kind, id)`.
pub fn held_asset(region: &RegionName, player_id: &str, a: &Asset) -> Vec<u8> {
    held(region, player_id).pack(&(a.kind.tag(), a.id.as_str()))
}

/// `(.., "held_all")`: present once [`held`] is complete for the player.
pub fn held_all(region: &RegionName, player_id: &str) -> Vec<u8> {
    player(region, player_id).pack(&("held_all",))
}

/// The schema version of the per-asset total keys (in the key: their values
/// are atomic-add counters).
pub const TOTALS_VERSION: i64 = 1;

/// The player's per-asset totals, `(.., "tot", 1)`.
pub fn totals(region: &RegionName, player_id: &str) -> Subspace {
    player(region, player_id).subspace(&("tot", TOTALS_VERSION))
}

/// `(.., "tot", 1, kind, id)`: the asset's total (the sum of its shards).
pub fn total(region: &RegionName, player_id: &str, a: &Asset) -> Vec<u8> {
    totals(region, player_id).pack(&(a.kind.tag(), a.id.as_str()))
}

/// `(.., "tot_all")`: present once every total of the player is kept.
pub fn totals_all(region: &RegionName, player_id: &str) -> Vec<u8> {
    player(region, player_id).pack(&("tot_all",))
}

/// `(.., "indexed")`: present once both [`held_all`] and [`totals_all`] are.
pub fn indexed(region: &RegionName, player_id: &str) -> Vec<u8> {
    player(region, player_id).pack(&("indexed",))
}

/// `(.., "escrow", kind, id)`: the escrow layout record of a limited asset.
pub fn escrow_layout(region: &RegionName, player_id: &str, a: &Asset) -> Vec<u8> {
    player(region, player_id).pack(&("escrow", a.kind.tag(), a.id.as_str()))
}

/// `(.., "chg")`: the player's change counter.
pub fn changes(region: &RegionName, player_id: &str) -> Vec<u8> {
    player(region, player_id).pack(&("chg",))
}

/// `(.., "gen")`: the player's ledger generation record.
pub fn generation(region: &RegionName, player_id: &str) -> Vec<u8> {
    player(region, player_id).pack(&("gen",))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inside(key: &[u8], (b, e): &(Vec<u8>, Vec<u8>)) -> bool {
        key > b.as_slice() && key < e.as_slice()
    }

    #[test]
    fn layout_matches_the_shared_keyspace_and_nests() {
        let eu = crate::keyspace::RegionName::new("eu").unwrap();
        assert_eq!(
            player(&eu, "p1").bytes(),
            crate::keyspace::region_family(&eu, "inv")
                .subspace(&("p1",))
                .bytes()
        );
        let p = player(&eu, "p1").range();
        let id = EventId {
            gen: 3,
            stamp: [7; 10],
        };
        let gold = Asset::currency("gold");
        for k in [
            event(&eu, "p1", &id),
            dup(&eu, "p1", "k"),
            shard(&eu, "p1", &gold, 5),
            changes(&eu, "p1"),
            generation(&eu, "p1"),
            held_asset(&eu, "p1", &gold),
            held_all(&eu, "p1"),
            escrow_layout(&eu, "p1", &gold),
            total(&eu, "p1", &gold),
            totals_all(&eu, "p1"),
        ] {
            assert!(inside(&k, &p));
        }
        assert!(!inside(&event(&eu, "p10", &id), &p));
        assert!(!inside(
            &shard(&eu, "p1", &Asset::currency("golden"), 0),
            &asset(&eu, "p1", &gold).range()
        ));
        assert!(!inside(
            &shard(&eu, "p1", &Asset::item("gold"), 0),
            &asset(&eu, "p1", &gold).range()
        ));
        // The layout record is not a balance key.
        assert!(!inside(
            &escrow_layout(&eu, "p1", &gold),
            &balances(&eu, "p1").range()
        ));
        // The markers are not inside the index and totals they vouch for,
        // and totals are not balance keys.
        assert!(!inside(&held_all(&eu, "p1"), &held(&eu, "p1").range()));
        assert!(!inside(&totals_all(&eu, "p1"), &totals(&eu, "p1").range()));
        assert!(!inside(&total(&eu, "p1", &gold), &balances(&eu, "p1").range()));
        assert_eq!(event_id(&events(&eu, "p1"), &event(&eu, "p1", &id)), Some(id));
        // Generations order before stamps.
        let later = EventId {
            gen: 4,
            stamp: [0; 10],
        };
        assert!(event(&eu, "p1", &id) < event(&eu, "p1", &later));
        // The versionstamped forms end in a 4-byte offset pointing at the stamp.
        let k = new_event(&eu, "p1", 3);
        let (body, off) = k.split_at(k.len() - 4);
        let off = u32::from_le_bytes(off.try_into().unwrap()) as usize;
        assert_eq!(&body[off..off + 10], &[0xff; 10]);
        assert!(body.starts_with(events(&eu, "p1").bytes()));
        // The fence is outside the family the transfer clears.
        assert!(!inside(&crate::fence::key(&eu, "p1"), &p));
    }
}

//! The matchmaker's keys in the pool region's keyspace, and the stored record
//! encodings.
//!
//! # Key Schema
//!
//! Every key is a FoundationDB tuple under `("r", pool, "mm")`, where `pool` is
//! the region whose keyspace (store) holds the matchmaking pool of a group of
//! regions that may fall back to each other (often just one region).
//!
//! ```text
//! ("r", pool, "mm", "q", queue, region, band, created_ms, ticket) -> v1 ticket
//!        the waiting index: present exactly while the ticket waits; one
//!        partition is the range ("r", pool, "mm", "q", queue, region, band);
//!        within it keys sort by creation time, so "tickets older than T" is a
//!        prefix range
//! ("r", pool, "mm", "fl", queue, region, band) -> v1 floor {created_ms, below}
//!        every ticket in that partition's waiting index created before
//!        created_ms is one of the (at most 32) listed in below (absent: 0, none);
//!        rounds read the listed keys and the index from created_ms, so they
//!        do not walk the deletes of tickets matched long ago (`floor`)
//! ("r", pool, "mm", "tk", ticket)      -> v1 ticket record: the ticket, its band,
//!                                         its state (waiting / matched + match id /
//!                                         cancelled / removed / timed_out + reason),
//!                                         updated_ms, holder,
//!                                         op (the call that removed / re-homed it)
//! ("r", pool, "mm", "pl", player)      -> v1 player entry: {ticket, state, match}
//!                                         of the player's latest ticket; rewritten
//!                                         on every state change, watched by the
//!                                         gateway to push the match
//! ("r", pool, "mm", "m", match)        -> v1 match record (the whole Match)
//! ("r", pool, "mm", "ls", queue, region, band) -> v1 lease {owner, token, expires_ms};
//!                                         never deleted, so token only grows
//! ("r", pool, "mm", "wk", owner)       -> v1 worker heartbeat {expires_ms}
//! ("r", pool, "mm", "d", queue, region) -> 8-byte LE counter: waiting tickets
//!                                         (pool depth), atomic add
//! ("r", pool, "mm", "hd", incarnation, ticket) -> [1]
//!        the holder index: present exactly while the ticket waits and a
//!        gateway incarnation (`liveness`) holds it; the orphan sweep reads
//!        one dead incarnation's range
//! ("r", pool, "mm", "op", "gc")        -> op marker (`crate::rerun`): the last
//!                                         retention batch's op id and answer
//! ("r", pool, "mm", "fin", updated_ms, ticket) -> [1]
//!        the finished index: a ticket that reached a final state at
//!        updated_ms; retention GC reads its prefix (oldest first) and deletes
//!        the ticket record, its match record and stale player entries
//! ("r", pool, "mm", "bf", backfill)    -> v1 backfill record (`backfill`): the
//!                                         request, its band, expires_ms, state
//!                                         (open / filled / cancelled / expired),
//!                                         updated_ms, the tickets placed, op
//! ("r", pool, "mm", "bq", queue, region, band, created_ms, backfill) -> v1 request
//!        the open-backfill index: present exactly while the request is open;
//!        the worker of partition (queue, region, band) reads its range
//! ("r", pool, "mm", "bm", match, backfill) -> v1 expires_ms
//!        a match's open requests (bounds them per match)
//! ("r", pool, "mm", "bd")              -> 8-byte LE counter: open requests in
//!                                         the pool (bounds them), atomic add
//! ("r", pool, "mm", "bfin", updated_ms, backfill) -> [1]
//!        the finished-backfill index: a request that reached a final state
//!        (filled / cancelled / expired) at updated_ms; retention GC reads its
//!        prefix (oldest first) and deletes the request record
//! ("r", pool, "mm", "op", "bgc")       -> op marker: the last backfill
//!                                         retention batch's op id and answer
//! ```
//!
//! `ticket` is the ticket id as an integer, `match` the match id as 32 hex
//! digits, `band` and `created_ms` integers. v1 values are the byte `1` followed
//! by JSON.

use foundationdb_tuple::Subspace;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::types::{MatchId, Ticket, TicketId};
use crate::keyspace::RegionName;

/// `("r", pool, "mm")`.
pub fn root(pool: &RegionName) -> Subspace {
    crate::keyspace::region_family(pool, "mm")
}

/// A partition of the pool: one queue, one home region, one skill band.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Partition {
    /// The queue.
    pub queue: String,
    /// The tickets' home region.
    pub region: String,
    /// The skill band (0-based; see `QueueConfig::skill_bands`).
    pub band: u32,
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.queue, self.region, self.band)
    }
}

/// `("r", pool, "mm", "q", queue, region, band)`: one partition's waiting tickets.
pub fn partition(pool: &RegionName, p: &Partition) -> Subspace {
    root(pool).subspace(&("q", p.queue.as_str(), p.region.as_str(), u64::from(p.band)))
}

/// A waiting ticket's index key.
pub fn waiting(pool: &RegionName, p: &Partition, created_ms: u64, ticket: TicketId) -> Vec<u8> {
    partition(pool, p).pack(&(created_ms, ticket.0))
}

/// `("r", pool, "mm", "tk", ticket)`.
pub fn ticket(pool: &RegionName, ticket: TicketId) -> Vec<u8> {
    root(pool).pack(&("tk", ticket.0))
}

/// `("r", pool, "mm", "fl", queue, region, band)`: the partition's floor
/// ([`super::floor`]).
pub fn floor(pool: &RegionName, p: &Partition) -> Vec<u8> {
    root(pool).pack(&("fl", p.queue.as_str(), p.region.as_str(), u64::from(p.band)))
}

/// `("r", pool, "mm", "pl", player)`.
pub fn player(pool: &RegionName, player: &str) -> Vec<u8> {
    root(pool).pack(&("pl", player))
}

/// `("r", pool, "mm", "m", match)`.
pub fn match_record(pool: &RegionName, id: MatchId) -> Vec<u8> {
    root(pool).pack(&("m", id.to_string()))
}

/// `("r", pool, "mm", "ls", queue, region, band)`.
pub fn lease(pool: &RegionName, p: &Partition) -> Vec<u8> {
    root(pool).pack(&("ls", p.queue.as_str(), p.region.as_str(), u64::from(p.band)))
}

/// `("r", pool, "mm", "wk")`: every worker's heartbeat.
pub fn workers(pool: &RegionName) -> Subspace {
    root(pool).subspace(&("wk",))
}

/// `("r", pool, "mm", "wk", owner)`.
pub fn worker(pool: &RegionName, owner: &str) -> Vec<u8> {
    workers(pool).pack(&(owner,))
}

/// `("r", pool, "mm", "hd", incarnation)`: tickets held by one gateway incarnation.
pub fn holders(pool: &RegionName, incarnation: u64) -> Subspace {
    root(pool).subspace(&("hd", incarnation))
}

/// `("r", pool, "mm", "hd", incarnation, ticket)`.
pub fn holder(pool: &RegionName, incarnation: u64, ticket: TicketId) -> Vec<u8> {
    holders(pool, incarnation).pack(&(ticket.0,))
}

/// `("r", pool, "mm", "op", "gc")`: the op marker of retention batches.
pub fn gc_marker(pool: &RegionName) -> Vec<u8> {
    root(pool).pack(&("op", "gc"))
}

/// `("r", pool, "mm", "fin")`: finished tickets by the time they finished.
pub fn finished_all(pool: &RegionName) -> Subspace {
    root(pool).subspace(&("fin",))
}

/// `("r", pool, "mm", "fin", updated_ms, ticket)`.
pub fn finished(pool: &RegionName, updated_ms: u64, ticket: TicketId) -> Vec<u8> {
    finished_all(pool).pack(&(updated_ms, ticket.0))
}

/// `("r", pool, "mm", "d", queue, region)`: the pool depth counter.
pub fn depth(pool: &RegionName, queue: &str, region: &str) -> Vec<u8> {
    root(pool).pack(&("d", queue, region))
}

/// `("r", pool, "mm", "bf", backfill)`.
pub fn backfill(pool: &RegionName, id: super::backfill::BackfillId) -> Vec<u8> {
    root(pool).pack(&("bf", id.0))
}

/// `("r", pool, "mm", "bq", queue, region, band)`: a partition's open backfill requests.
pub fn backfill_partition(pool: &RegionName, p: &Partition) -> Subspace {
    root(pool).subspace(&("bq", p.queue.as_str(), p.region.as_str(), u64::from(p.band)))
}

/// An open backfill request's index key.
pub fn backfill_open(
    pool: &RegionName,
    p: &Partition,
    created_ms: u64,
    id: super::backfill::BackfillId,
) -> Vec<u8> {
    backfill_partition(pool, p).pack(&(created_ms, id.0))
}

/// `("r", pool, "mm", "bm", match)`: a match's open backfill requests.
pub fn backfill_match(pool: &RegionName, m: MatchId) -> Subspace {
    root(pool).subspace(&("bm", m.to_string()))
}

/// `("r", pool, "mm", "bd")`: open backfill requests in the pool.
pub fn backfill_count(pool: &RegionName) -> Vec<u8> {
    root(pool).pack(&("bd",))
}

/// `("r", pool, "mm", "bfin")`: finished backfill requests by the time they finished.
pub fn backfill_finished_all(pool: &RegionName) -> Subspace {
    root(pool).subspace(&("bfin",))
}

/// `("r", pool, "mm", "bfin", updated_ms, backfill)`.
pub fn backfill_finished(pool: &RegionName, updated_ms: u64, id: super::backfill::BackfillId) -> Vec<u8> {
    backfill_finished_all(pool).pack(&(updated_ms, id.0))
}

/// `("r", pool, "mm", "op", "bgc")`: the op marker of backfill retention batches.
pub fn backfill_gc_marker(pool: &RegionName) -> Vec<u8> {
    root(pool).pack(&("op", "bgc"))
}

/// Where a ticket is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TicketState {
    /// In the pool.
    Waiting,
    /// Placed in a match (final).
    Matched {
        /// The match.
        #[serde(rename = "match")]
        match_id: MatchId,
    },
    /// Cancelled by the player (final).
    Cancelled,
    /// Removed because a player disconnected and did not resume (final).
    Removed,
    /// No match before the queue's deadline (final; see
    /// [`super::deadline`]).
    TimedOut {
        /// Why.
        reason: super::deadline::NoMatchReason,
    },
}

/// The stored ticket record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TicketRecord {
    pub ticket: Ticket,
    pub band: u32,
    #[serde(flatten)]
    pub state: TicketState,
    pub updated_ms: u64,
    /// The gateway incarnation holding the ticket's session (absent in records
    /// written before liveness, and for tickets created outside a gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<u64>,
    /// The random op id of the call that last removed or re-homed the ticket
    /// (`remove_player_tickets`, the orphan sweep), so that call's rerun after
    /// an unknown commit result recognises its own effect (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<u64>,
}

impl TicketRecord {
    pub fn partition(&self) -> Partition {
        Partition {
            queue: self.ticket.queue.clone(),
            region: self.ticket.home_region.clone(),
            band: self.band,
        }
    }
}

/// The stored player entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PlayerEntry {
    pub ticket: TicketId,
    #[serde(flatten)]
    pub state: TicketState,
}

/// The stored floor of a partition's waiting index ([`super::floor`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FloorRecord {
    /// Every ticket waiting in the partition that was created before this
    /// (ms) is in `below`.
    pub created_ms: u64,
    /// Tickets created before `created_ms` that may still wait (at most
    /// [`super::floor::MAX_BELOW`]; an entry whose ticket left is stale and
    /// harmless).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub below: Vec<BelowFloor>,
}

/// A ticket listed under a partition's floor: its waiting key's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct BelowFloor {
    pub created_ms: u64,
    pub ticket: TicketId,
}

/// The stored lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeaseRecord {
    pub owner: String,
    pub token: u64,
    pub expires_ms: u64,
}

/// The stored worker heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WorkerRecord {
    pub expires_ms: u64,
}

/// Encodes a v1 record ([`crate::codec::encode_v1`]).
pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    crate::codec::encode_v1(v)
}

/// Decodes a v1 record; the error names what is wrong.
pub(crate) fn decode<T: DeserializeOwned>(raw: &[u8]) -> Result<T, String> {
    crate::codec::decode_v1(raw).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_ordering() {
        let eu = RegionName::new("eu").unwrap();
        let p = Partition {
            queue: "q".into(),
            region: "eu".into(),
            band: 1,
        };
        let (b, e) = partition(&eu, &p).range();
        let k1 = waiting(&eu, &p, 1_000, TicketId(9));
        let k2 = waiting(&eu, &p, 2_000, TicketId(1));
        assert!(b < k1 && k1 < k2 && k2 < e, "waiting keys sort by creation time");
        let other = Partition { band: 2, ..p.clone() };
        assert!(waiting(&eu, &other, 0, TicketId(0)) >= e);
        let fl = floor(&eu, &p);
        assert!(
            fl < b || fl >= e,
            "a partition's floor is outside its waiting index"
        );
        assert_ne!(fl, floor(&eu, &other));
        assert!(crate::keyspace::region_family(&eu, "mm").is_start_of(&ticket(&eu, TicketId(1))));
        let rec = PlayerEntry {
            ticket: TicketId(5),
            state: TicketState::Matched { match_id: MatchId(7) },
        };
        let raw = encode(&rec);
        assert_eq!(raw[0], crate::codec::SCHEMA_V1);
        assert_eq!(decode::<PlayerEntry>(&raw).unwrap(), rec);
        assert!(decode::<PlayerEntry>(&[2, b'{', b'}']).is_err());
    }
}

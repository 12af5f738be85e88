//! The ledger's plain types (assets, quantities, events, receipts, reads), their
//! bounds, and the stored encodings of events, receipts and duplicate records.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::errors::LedgerError;
use crate::codec::CodecError;

/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;
/// Longest item, currency, offer or source id, in bytes.
pub const MAX_ID_BYTES: usize = 64;
/// Longest admin-correction reason, in bytes.
pub const MAX_REASON_BYTES: usize = 512;
/// Most distinct assets in one request (per trade side).
pub const MAX_ASSETS_PER_REQUEST: usize = 64;
/// Largest quantity of one asset in one request (10^12). Keeps every sum far
/// from `i64` overflow.
pub const MAX_AMOUNT: u64 = 1_000_000_000_000;
/// Largest page of [`history`](super::Ledger::history).
pub const MAX_HISTORY_PAGE: usize = 1000;

/// The schema version byte in front of every stored value (events, receipts,
/// duplicate records, generation records). Balance shards and the change
/// counter are raw 8-byte little-endian integers (atomic add), without it.
pub(crate) use crate::codec::SCHEMA_V1;

/// Whether an asset is an item or a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetKind {
    /// An item (sword, potion, skin...), with an optional max stack.
    Item,
    /// A currency (gold, gems...), with an optional max balance.
    Currency,
}

impl AssetKind {
    /// The short tag used in keys: `"i"` or `"c"`.
    pub(crate) fn tag(self) -> &'static str {
        match self {
            AssetKind::Item => "i",
            AssetKind::Currency => "c",
        }
    }

    pub(crate) fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "i" => Some(AssetKind::Item),
            "c" => Some(AssetKind::Currency),
            _ => None,
        }
    }
}

/// An item or currency, by catalog id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Asset {
    /// Item or currency.
    pub kind: AssetKind,
    /// Its catalog id.
    pub id: String,
}

impl Asset {
    /// An item.
    pub fn item(id: impl Into<String>) -> Self {
        Asset {
            kind: AssetKind::Item,
            id: id.into(),
        }
    }
    /// A currency.
    pub fn currency(id: impl Into<String>) -> Self {
        Asset {
            kind: AssetKind::Currency,
            id: id.into(),
        }
    }
}

impl fmt::Display for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            AssetKind::Item => write!(f, "item {}", self.id),
            AssetKind::Currency => write!(f, "currency {}", self.id),
        }
    }
}

/// A positive amount of one asset (grants, consumes, trade sides, prices).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quantity {
    /// The asset.
    pub asset: Asset,
    /// How many: 1..=[`MAX_AMOUNT`].
    pub amount: u64,
}

impl Quantity {
    /// `amount` of item `id`.
    pub fn item(id: impl Into<String>, amount: u64) -> Self {
        Quantity {
            asset: Asset::item(id),
            amount,
        }
    }
    /// `amount` of currency `id`.
    pub fn currency(id: impl Into<String>, amount: u64) -> Self {
        Quantity {
            asset: Asset::currency(id),
            amount,
        }
    }
}

/// A signed change of one asset's balance, as recorded in events (and requested
/// by admin corrections).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Change {
    /// The asset.
    pub asset: Asset,
    /// The change: positive adds, negative removes; never 0 in a stored event.
    pub delta: i64,
}

/// What an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Assets added (match reward, login bonus, ...).
    Grant,
    /// Assets removed (used, crafted away, ...).
    Consume,
    /// A catalog offer bought: its price removed, its items added, atomically.
    Purchase,
    /// One side of a trade between two players of this region (both players get
    /// a `trade` event with the same idempotency key and each other as
    /// `counterparty`).
    Trade,
    /// An operator's signed correction.
    AdminCorrection,
}

/// An event's position in a player's ledger: the player's ledger generation
/// (bumped when the ledger arrives in a new region, so events appended there
/// sort after the copied ones even though another store's versionstamps may be
/// smaller) and the commit's 10-byte versionstamp. Ordered; usable as a history
/// cursor. Its string form is `"{gen:08x}{stamp as 20 hex}"` (28 characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    /// Ledger generation.
    pub gen: u32,
    /// The committing transaction's versionstamp.
    pub stamp: [u8; 10],
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.gen)?;
        for b in self.stamp {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for EventId {
    type Err = LedgerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || LedgerError::InvalidCursor(s.chars().take(64).collect());
        if s.len() != 28 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let gen = u32::from_str_radix(&s[..8], 16).map_err(|_| bad())?;
        let mut stamp = [0u8; 10];
        for (i, b) in stamp.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[8 + 2 * i..10 + 2 * i], 16).map_err(|_| bad())?;
        }
        Ok(EventId { gen, stamp })
    }
}

/// One event of a player's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its position (ledger generation and versionstamp).
    pub id: EventId,
    /// What it did.
    pub kind: EventKind,
    /// Where it came from (`match_reward`, `purchase`, `trade`, `admin`, ...).
    pub source: String,
    /// The request's idempotency key (for a trade: the initiator's key, on both
    /// sides).
    pub idempotency_key: String,
    /// The signed balance changes, sorted by asset, one per asset, none zero.
    pub changes: Vec<Change>,
    /// When it was written (unix milliseconds, the writer's clock).
    pub at_ms: u64,
    /// The other player of a trade.
    pub counterparty: Option<String>,
    /// The purchased offer.
    pub offer: Option<String>,
    /// An admin correction's reason.
    pub reason: Option<String>,
}

/// What an operation returns, and what a duplicate of it returns again,
/// unchanged: the acting player's event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The acting player's event id.
    pub event: EventId,
    /// The acting player's event kind.
    pub kind: EventKind,
    /// The idempotency key.
    pub idempotency_key: String,
    /// The acting player's balance changes.
    pub changes: Vec<Change>,
    /// When the operation was applied (unix milliseconds).
    pub at_ms: u64,
}

/// The result of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The receipt of the first successful attempt with this idempotency key.
    pub receipt: Receipt,
    /// `true` if this request was a duplicate: nothing was applied, the
    /// receipt is the original one and the duplicate record was bumped.
    pub duplicate: bool,
}

/// A player's balances: every asset with a non-zero balance.
pub type Balances = BTreeMap<Asset, u64>;

/// A history query (see [`Ledger::history`](super::Ledger::history)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistoryQuery {
    /// Start after this event (exclusive), in the direction of the query.
    /// `None`: from the oldest (or, with `reverse`, the newest) event.
    pub after: Option<EventId>,
    /// Most events to return: 1..=[`MAX_HISTORY_PAGE`]; 0 means 100.
    pub limit: usize,
    /// Newest first.
    pub reverse: bool,
}

/// A page of history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// The events, oldest first (newest first with `reverse`).
    pub events: Vec<Event>,
    /// The cursor for the next page (`after`), if the page was full.
    pub next: Option<EventId>,
}

/// How often a request's idempotency key was seen again after it was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicateRecord {
    /// The idempotency key.
    pub idempotency_key: String,
    /// Duplicates seen (not counting the original).
    pub count: u64,
    /// First duplicate (unix milliseconds).
    pub first_seen_ms: u64,
    /// Latest duplicate (unix milliseconds).
    pub last_seen_ms: u64,
}

/// One side of a [`trade`](super::Ledger::trade).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeSide {
    /// The player.
    pub player: String,
    /// The player's home region, as identity names it (the gateway knows it from
    /// the session or the account). A trade is only done when both sides are
    /// homed in the ledger's region.
    pub home_region: String,
    /// What this player gives the other (may be empty for a gift).
    pub gives: Vec<Quantity>,
}

/// The stored form of an event (the id lives in the key).
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredEvent {
    pub kind: EventKind,
    pub source: String,
    pub idem: String,
    pub changes: Vec<Change>,
    pub at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterparty: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl StoredEvent {
    pub(crate) fn into_event(self, id: EventId) -> Event {
        Event {
            id,
            kind: self.kind,
            source: self.source,
            idempotency_key: self.idem,
            changes: self.changes,
            at_ms: self.at_ms,
            counterparty: self.counterparty,
            offer: self.offer,
            reason: self.reason,
        }
    }
}

/// The stored form of an applied request (the versionstamp lives in the key).
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredReceipt {
    /// SHA-256 (hex) of the normalized request, to refuse a key reused for a
    /// different request.
    pub fingerprint: String,
    pub gen: u32,
    pub kind: EventKind,
    pub changes: Vec<Change>,
    pub at_ms: u64,
    /// Random id of the call that wrote it (hex), so that the call's own rerun
    /// after an unknown commit result is not counted as a client's duplicate.
    /// Absent in receipts written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
}

/// `[SCHEMA_V1] ++ JSON` ([`crate::codec::encode_v1`]).
pub(crate) fn encode_json<T: Serialize>(v: &T) -> Vec<u8> {
    crate::codec::encode_v1(v)
}

/// Decodes `[SCHEMA_V1] ++ JSON`; `what` names the record in the error.
pub(crate) fn decode_json<T: for<'de> Deserialize<'de>>(
    raw: &[u8],
    what: &'static str,
) -> Result<T, LedgerError> {
    crate::codec::decode_v1(raw).map_err(|e| match e {
        CodecError::UnsupportedVersion(v) => LedgerError::UnsupportedSchema(v),
        CodecError::Empty | CodecError::Json(_) => LedgerError::Corrupt(format!("{what}: {e}")),
    })
}

/// The generation record: `[SCHEMA_V1][gen u32 BE][region utf-8]`.
pub(crate) fn encode_gen(gen: u32, region: &str) -> Vec<u8> {
    let mut out = vec![SCHEMA_V1];
    out.extend_from_slice(&gen.to_be_bytes());
    out.extend_from_slice(region.as_bytes());
    out
}

pub(crate) fn decode_gen(raw: &[u8]) -> Result<(u32, String), LedgerError> {
    match raw.first() {
        Some(&SCHEMA_V1) if raw.len() >= 5 => {
            let gen = u32::from_be_bytes(raw[1..5].try_into().expect("4 bytes"));
            let region = std::str::from_utf8(&raw[5..])
                .map_err(|_| LedgerError::Corrupt("generation record: region not utf-8".into()))?;
            Ok((gen, region.to_owned()))
        }
        Some(&SCHEMA_V1) => Err(LedgerError::Corrupt("generation record: too short".into())),
        Some(&v) => Err(LedgerError::UnsupportedSchema(v)),
        None => Err(LedgerError::Corrupt("generation record: empty".into())),
    }
}

/// Checks an id (item, currency, offer, source): 1..=64 bytes of `a-z 0-9 _ - .`.
pub fn check_id(what: &'static str, id: &str) -> Result<(), LedgerError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(LedgerError::InvalidId {
            what,
            id: id.chars().take(MAX_ID_BYTES).collect(),
        })
    }
}

/// Checks an idempotency key: 1..=128 bytes of printable ASCII without spaces.
pub fn check_idempotency_key(key: &str) -> Result<(), LedgerError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY_BYTES
        && key.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(LedgerError::InvalidIdempotencyKey(
            key.chars().take(MAX_IDEMPOTENCY_KEY_BYTES).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_string_round_trips_and_orders() {
        let a = EventId {
            gen: 1,
            stamp: [0, 0, 0, 0, 0, 0, 0, 9, 0, 0],
        };
        let b = EventId {
            gen: 2,
            stamp: [0; 10],
        };
        assert!(a < b, "generation orders first");
        let s = a.to_string();
        assert_eq!(s, "000000010000000000000009".to_owned() + "0000");
        assert_eq!(s.parse::<EventId>().unwrap(), a);
        assert!("zz".parse::<EventId>().is_err());
        assert!(s[1..].parse::<EventId>().is_err());
    }

    #[test]
    fn stored_values_carry_their_schema_byte() {
        let raw = encode_gen(3, "eu-west");
        assert_eq!(raw[0], SCHEMA_V1);
        assert_eq!(decode_gen(&raw).unwrap(), (3, "eu-west".to_owned()));
        assert!(matches!(
            decode_gen(&[2, 0, 0, 0, 0]),
            Err(LedgerError::UnsupportedSchema(2))
        ));
        let rec = DuplicateRecord {
            idempotency_key: "k".into(),
            count: 2,
            first_seen_ms: 1,
            last_seen_ms: 5,
        };
        let raw = encode_json(&rec);
        assert_eq!(raw[0], SCHEMA_V1);
        assert_eq!(decode_json::<DuplicateRecord>(&raw, "dup").unwrap(), rec);
        let mut bad = raw.clone();
        bad[0] = 9;
        assert!(matches!(
            decode_json::<DuplicateRecord>(&bad, "dup"),
            Err(LedgerError::UnsupportedSchema(9))
        ));
    }

    #[test]
    fn ids_and_keys() {
        assert!(check_id("item", "sword_2.big-x").is_ok());
        for bad in ["", "Sword", "a b", &"x".repeat(65)] {
            assert!(check_id("item", bad).is_err(), "{bad}");
        }
        assert!(check_idempotency_key("req:0f3a-1").is_ok());
        assert!(check_idempotency_key(&"k".repeat(128)).is_ok());
        for bad in ["", "has space", &"k".repeat(129), "é"] {
            assert!(check_idempotency_key(bad).is_err(), "{bad}");
        }
    }
}

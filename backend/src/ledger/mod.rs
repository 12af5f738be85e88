//! Inventory ledger (per region): every inventory change is an event appended to
//! the player's ledger; balances are a projection updated in the same
//! transaction; idempotency keys make repeated requests return their first
//! result; an audit folds the events and compares them with the projection.
//!
//! # Design
//!
//! A [`Ledger`] serves one region: its [`Store`], its name and a validated
//! [`Catalog`]. Everything of a player lives under `("r", region, "inv",
//! player)` ([`keys`] has the key schema); [`LedgerFamily`] registers that
//! subspace with the cross-region transfer so a move carries the ledger along.
//!
//! **One write = one transaction** that, for each player it touches:
//!
//! 1. reads the player fence ([`crate::fence`]): refused while a
//!    transfer moves the player ([`LedgerError::TransferInProgress`]) or after
//!    it left ([`LedgerError::PlayerMoved`]);
//! 2. (acting player only) looks up the idempotency key (below);
//! 3. reads the ledger generation (see "Order across regions");
//! 4. debits and credits the balances (never negative, never over the limit:
//!    any violation aborts the transaction, nothing is written), and adds the
//!    same amounts to the assets' totals (`totals`; the player's first write
//!    since totals existed sets them from the shards first, and since the
//!    held-asset index existed indexes the player's assets: one marker key,
//!    `marks`, says both are done);
//! 5. appends the event under a versionstamped key (conflict-free, ordered);
//! 6. stores the receipt under the idempotency key, stamped with the same
//!    versionstamp, so `(generation, versionstamp)` is the event id;
//! 7. atomically adds 1 to the player's change counter (watched by gateways
//!    for the inventory-changed push, like player state's).
//!
//! The closure is written to run any number of times: it keeps no state across
//! attempts, and (test-only) fault injection fails attempts after all writes.
//!
//! # Idempotency
//!
//! Every write carries an idempotency key (1..=128 printable ASCII bytes) in the
//! acting player's namespace. The lookup is a range read (with a read conflict)
//! of `(.., "idem", key)`, in the same transaction as the write, so two
//! concurrent requests with one key serialize: the second conflicts, re-runs,
//! and finds the first's receipt. A duplicate writes nothing but its
//! duplicate record (`count`, `first_seen_ms`, `last_seen_ms`, listed by
//! [`Ledger::duplicates`]) and returns the original [`Receipt`], unchanged, with
//! [`Outcome::duplicate`] set. When a commit's result is unknown and the store
//! re-runs the closure, the re-run is just such a duplicate: the caller gets the
//! original receipt (flagged duplicate) and the record shows the retry. A key
//! reused for a *different* request (another fingerprint: operation, players,
//! assets, source, offer) fails with [`LedgerError::IdempotencyKeyReused`].
//! Rejected requests (overdraw, limit, fence) store nothing: retrying them with
//! the same key re-evaluates them.
//!
//! Receipts and duplicate records are kept for the **idempotency window**
//! (`receipt_retention_ms`, default 7 days) and then deleted by the region's
//! sweep ([`retention`]): a key reused after the window is applied as a new
//! request. Events are never deleted.
//!
//! # Hot players
//!
//! Many concurrent grants to one player (match rewards, quest completions from
//! several servers) must not serialize on conflicts. The keys are designed so
//! that an ordinary grant conflicts with nothing:
//!
//! - events and receipts are versionstamped keys (blind appends, no conflict);
//! - the change counter is an atomic add (no conflict);
//! - so are the per-asset totals (`totals`); only a player's first write
//!   after totals existed reads the shards with conflicts, to set them;
//! - the idempotency lookup reads a key range unique to the request;
//! - the fence and generation keys are read with conflicts but written only
//!   by transfers and by a player's first write in a region;
//! - balances: **unlimited** assets take an atomic add, checked only against a
//!   snapshot read for a far ceiling ([`projection::UNLIMITED_CEILING`]), so they
//!   conflict with nothing. **Limited** assets (an item's max stack, a
//!   currency's max balance) cannot do that: two grants that each see room in a
//!   snapshot could together pass the limit. They use **escrow shards**: the
//!   balance is split over `n` keys, each with a capacity (the limit split
//!   evenly, adding up to the limit). While every shard is within its
//!   capacity, the sum is within the limit, so a grant needs to see only the
//!   shard it adds to: it picks one at random, reads *that* shard with a
//!   conflict and adds to it if it has room. Concurrent grants conflict only
//!   when they pick the same shard. "Every shard is within its capacity" is
//!   kept in a **layout record** per asset (`(limit, n)` of the catalog the
//!   shards are within; `escrow` has the argument): a grant reads it with a
//!   conflict and takes the fast path only if it equals its catalog's. When a
//!   few random shards have no room (near the limit, or a large grant), or the
//!   record is missing or differs (first credit, catalog change), the grant
//!   takes the **exact path**: it reads all shards with conflicts, checks the
//!   total against the limit, spreads the amount, and sets (or clears) the
//!   record: exact, but it conflicts with every concurrent writer of that
//!   asset. Debits (consume, price, trade) always read every shard of the
//!   asset with conflicts.
//!
//!   Trade-offs: `n` keys per limited asset (balances read a few more keys);
//!   near the limit grants fall to the slow path; a grant can be refused while
//!   another grant that would have freed nothing is still in flight (never
//!   wrongly accepted). The default `n` is `limit / 1000` clamped to 1..=32
//!   (a 99-potion stack is one key: its grants are serialized, which is cheap
//!   because it fills up after a few anyway); the catalog can set
//!   `escrow_shards` per asset. Limits and shard counts may change between
//!   deployments: the layout record then differs from the catalog, and the
//!   first grant takes the exact path; while any shard is over its (new)
//!   capacity there is no record and every grant takes it. Writers with
//!   *different* catalogs at the same time (a rolling deploy) each keep their
//!   own limit: each finds the other's record and takes the exact path
//!   (slower, never over); a writer built before the record existed does not
//!   keep it and must not run beside a different catalog. Debits and trades on a hot player still
//!   conflict with concurrent grants of the same asset and retry; the
//!   benchmark measures both.
//!
//! - **reads on the hot path are point reads**: the store keeps every version of
//!   a key until compaction and a range read steps over all of them, so a range
//!   read over a hot player's balance shards costs time proportional to the
//!   grants since the last flush (it was ~80% of a hot grant's CPU;
//!   docs/PERFORMANCE.md, "Durable writes"). While a player has another write
//!   in flight in this process (`hot`), an exact-path credit or a debit reads the catalog's
//!   shards by point reads (plus a range read over shard numbers past the
//!   catalog's, which nothing writes), and [`Ledger::balances`] reads the
//!   held-asset index (`(.., "held")`, written blindly with an asset's first
//!   credit, see [`keys`]) and then each asset's shards the same way; otherwise
//!   one range read is cheaper and is used. The gateway's inventory-changed
//!   push, which reads every balance after every change
//!   ([`Ledger::balances_and_watch`]), reads **per-asset totals** instead
//!   (`totals`: one more key per asset, added to by the same atomic add as
//!   the shard, so still conflict-free): the index and one point read per
//!   asset, not one per shard. The audit always reads every balance by one
//!   range read (the ground truth) and checks the totals against it.
//!
//!   An alternative would be an in-process coalescer per player (batch
//!   concurrent grants into one transaction); it helps only within one gateway
//!   process and adds latency, so the key design comes first.
//!
//! # Order across regions
//!
//! Versionstamps order commits of *one* store. A transfer copies a ledger into
//! another region's store, whose versionstamps may be smaller. So an event key is
//! `(gen, versionstamp)`: the generation record names the region that wrote it;
//! the first write in a region whose name differs bumps the generation, so new
//! events sort after the copied ones. History cursors are [`EventId`]s.
//!
//! # Trades
//!
//! [`Ledger::trade`] moves assets between two players in one transaction (both
//! fences checked, both ledgers appended, conservation exact). Both players must
//! be homed in this ledger's region ([`TradeSide::home_region`], which the
//! gateway takes from identity); a **cross-region trade is rejected** with
//! [`LedgerError::CrossRegionTrade`]: no saga, so nothing can half-apply or
//! duplicate. The idempotency key lives in the acting side's (`a`'s) namespace.
//!
//! # Authorization
//!
//! The ledger trusts its caller. Every operation names the player whose ledger
//! it touches (for a trade, the acting player `a` first), so the gateway can
//! check it against the session; admin corrections and audits are for the admin
//! API only.
//!
//! # Example
//!
//! ```ignore
//! let ledger = Ledger::new(store, "eu", Catalog::load("catalog.toml".as_ref())?)?;
//! let out = ledger.grant(&player, "req-1", "match_reward", &[Quantity::currency("gold", 50)]).await?;
//! let again = ledger.grant(&player, "req-1", "match_reward", &[Quantity::currency("gold", 50)]).await?;
//! assert!(again.duplicate && again.receipt == out.receipt);
//! ledger.purchase(&player, "req-2", "potion_pack").await?;
//! let balances = ledger.balances(&player).await?;
//! let page = ledger.history(&player, HistoryQuery { limit: 50, reverse: true, ..Default::default() }).await?;
//! ```

pub mod audit;
pub mod catalog;
pub mod errors;
mod escrow;
mod hot;
pub mod keys;
mod marks;
mod ops;
mod projection;
pub mod retention;
mod totals;
pub mod types;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use foundationdb_tuple::Subspace;

use crate::fence::{self, Fence};
use crate::identity::check_player_id;
use crate::keyspace::RegionName;
use crate::store::{Store, Transaction, TxError};
use crate::transfer::PlayerFamily;

pub(crate) use crate::time::now_ms;
pub use audit::{Mismatch, PlayerAudit, RegionAudit};
pub use catalog::{Catalog, CurrencyDef, ItemDef, Offer};
pub use errors::LedgerError;
pub use projection::UNLIMITED_CEILING;
pub use types::{
    check_id, check_idempotency_key, Asset, AssetKind, Balances, Change, DuplicateRecord, Event, EventId,
    EventKind, HistoryPage, HistoryQuery, Outcome, Quantity, Receipt, TradeSide, MAX_AMOUNT,
    MAX_ASSETS_PER_REQUEST, MAX_HISTORY_PAGE, MAX_IDEMPOTENCY_KEY_BYTES,
};

/// Counters of one [`Ledger`] handle (and its clones), for benchmarks and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerStats {
    /// Write-transaction attempts started (closure runs).
    pub attempts: u64,
    /// Write operations that returned (successfully or not).
    pub writes: u64,
}

impl LedgerStats {
    /// Attempts beyond the first of each write: conflict (or unknown-result)
    /// retries.
    pub fn retries(&self) -> u64 {
        self.attempts.saturating_sub(self.writes)
    }
}

#[derive(Default)]
struct Counters {
    attempts: AtomicU64,
    writes: AtomicU64,
    /// Writes in flight per player: how shards are read (`hot`).
    in_flight: hot::InFlight,
    /// Test-only fault injection: attempts to fail after all their writes.
    #[cfg(test)]
    fail_after_writes: std::sync::atomic::AtomicU32,
}

/// The inventory ledger of one region. Cheap to clone.
#[derive(Clone)]
pub struct Ledger<S: Store> {
    store: S,
    region: RegionName,
    catalog: Arc<Catalog>,
    counters: Arc<Counters>,
}

impl<S: Store> std::fmt::Debug for Ledger<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("region", &self.region).finish()
    }
}

/// The ledger's per-player key family, for
/// [`Transfer::register_family`](crate::transfer::Transfer::register_family):
/// `("r", region, "inv", player)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LedgerFamily;

impl PlayerFamily for LedgerFamily {
    fn name(&self) -> &'static str {
        "ledger"
    }
    fn player_subspace(&self, region: &RegionName, player: &str) -> Subspace {
        keys::player(region, player)
    }
}

/// Resolves after the player's ledger changes (see [`Ledger::watch_changes`]).
/// Dropping it cancels the watch.
pub type ChangeWatch = crate::store::CounterWatch<LedgerError>;

pub(crate) fn check_player(player: &str) -> Result<(), LedgerError> {
    check_player_id(player).map_err(|_| LedgerError::InvalidPlayerId(player.chars().take(64).collect()))
}

/// Fails if the player's fence refuses writes (`for_write`) or reads.
pub(crate) async fn check_fence<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
    for_write: bool,
) -> Result<(), TxError<LedgerError>> {
    match fence::read(tx, region, player, LedgerError::Corrupt).await? {
        Some(f) if for_write || f.blocks_reads() => Err(TxError::User(match f {
            Fence::Moved { to, .. } => LedgerError::PlayerMoved { to },
            Fence::Outgoing { transfer, .. } | Fence::Incoming { transfer, .. } => {
                LedgerError::TransferInProgress { transfer }
            }
        })),
        _ => Ok(()),
    }
}

impl<S: Store> Ledger<S> {
    /// The ledger of `region`, stored in `store`, with `catalog` (validated here).
    pub fn new(store: S, region: &str, catalog: Catalog) -> Result<Self, LedgerError> {
        let region = RegionName::new(region).map_err(|e| LedgerError::InvalidRegion(e.0))?;
        catalog.validate()?;
        Ok(Ledger {
            store,
            region,
            catalog: Arc::new(catalog),
            counters: Arc::default(),
        })
    }

    /// The region this ledger serves.
    pub fn region(&self) -> &str {
        self.region.as_str()
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Counters since this handle was built (shared by its clones).
    pub fn stats(&self) -> LedgerStats {
        LedgerStats {
            attempts: self.counters.attempts.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
        }
    }

    /// Test-only: the next `n` write attempts fail after all their writes with a
    /// retryable store error (so the store re-runs the closure).
    #[cfg(test)]
    pub(crate) fn fail_next_attempts_after_writes(&self, n: u32) {
        self.counters.fail_after_writes.store(n, Ordering::SeqCst);
    }

    /// The player's balances: every asset with a positive balance. Reads the
    /// per-asset totals once the player's ledger keeps them (see
    /// [`Ledger::balances_and_watch`]), else the shards.
    pub async fn balances(&self, player: &str) -> Result<Balances, LedgerError> {
        check_player(player)?;
        let point = self.counters.in_flight.is_busy(player);
        let (region, player, catalog) = (self.region.clone(), player.to_owned(), self.catalog.clone());
        Ok(self
            .store
            .run(|tx| {
                let (region, player, catalog) = (region.clone(), player.clone(), catalog.clone());
                async move {
                    check_fence(&tx, &region, &player, false).await?;
                    read_balances(&tx, &region, &player, &catalog, point).await
                }
            })
            .await?)
    }

    /// The player's balances and a [`ChangeWatch`] registered in the same
    /// transaction: the watch fires on any change after this read (the
    /// gateway's inventory-changed push loop, which calls it after every
    /// change). Reads the per-asset totals (`totals`: the held-asset index
    /// and one point read per asset) once the player's ledger keeps them,
    /// else the shards. Same result either way.
    pub async fn balances_and_watch(&self, player: &str) -> Result<(Balances, ChangeWatch), LedgerError> {
        check_player(player)?;
        let point = self.counters.in_flight.is_busy(player);
        let (region, player, catalog) = (self.region.clone(), player.to_owned(), self.catalog.clone());
        Ok(self
            .store
            .run(|tx| {
                let (region, player, catalog) = (region.clone(), player.clone(), catalog.clone());
                async move {
                    check_fence(&tx, &region, &player, false).await?;
                    let balances = read_balances(&tx, &region, &player, &catalog, point).await?;
                    let watch = ChangeWatch::register(&tx, &keys::changes(&region, &player)).await?;
                    Ok::<_, TxError<LedgerError>>((balances, watch))
                }
            })
            .await?)
    }

    /// A [`ChangeWatch`] that resolves after the player's next ledger change,
    /// made by any process sharing this region's store.
    pub async fn watch_changes(&self, player: &str) -> Result<ChangeWatch, LedgerError> {
        check_player(player)?;
        let key = keys::changes(&self.region, player);
        Ok(ChangeWatch::open(&self.store, &key).await?)
    }

    /// A page of the player's events, in ledger order (newest first with
    /// `reverse`), starting after `query.after`.
    pub async fn history(&self, player: &str, query: HistoryQuery) -> Result<HistoryPage, LedgerError> {
        check_player(player)?;
        let limit = match query.limit {
            0 => 100,
            n => n.min(MAX_HISTORY_PAGE),
        };
        let (region, player) = (self.region.clone(), player.to_owned());
        let events = self
            .store
            .run(|tx| {
                let (region, player) = (region.clone(), player.clone());
                async move {
                    check_fence(&tx, &region, &player, false).await?;
                    let sub = keys::events(&region, &player);
                    let (mut begin, mut end) = sub.range();
                    if let Some(after) = &query.after {
                        let k = keys::event(&region, &player, after);
                        if query.reverse {
                            end = k;
                        } else {
                            begin = [k.as_slice(), &[0]].concat();
                        }
                    }
                    let kvs = tx.get_range(&begin, &end, Some(limit), query.reverse).await?;
                    kvs.into_iter()
                        .map(|kv| decode_event(&sub, &kv.key, &kv.value).map_err(TxError::User))
                        .collect::<Result<Vec<_>, _>>()
                }
            })
            .await?;
        let next = (events.len() == limit)
            .then(|| events.last().map(|e| e.id))
            .flatten();
        Ok(HistoryPage { events, next })
    }

    /// The player's duplicate records (requests seen again after they were
    /// applied), by idempotency key. For operators.
    pub async fn duplicates(&self, player: &str) -> Result<Vec<DuplicateRecord>, LedgerError> {
        check_player(player)?;
        let (b, e) = keys::dups(&self.region, player).range();
        let kvs = self
            .store
            .run(|tx| {
                let (b, e) = (b.clone(), e.clone());
                async move { Ok::<_, TxError<LedgerError>>(tx.get_range(&b, &e, None, false).await?) }
            })
            .await?;
        kvs.iter()
            .map(|kv| types::decode_json(&kv.value, "duplicate record"))
            .collect()
    }
}

/// Decodes an event key and value.
pub(crate) fn decode_event(events: &Subspace, key: &[u8], value: &[u8]) -> Result<Event, LedgerError> {
    let id =
        keys::event_id(events, key).ok_or_else(|| LedgerError::Corrupt("undecodable event key".into()))?;
    let stored: types::StoredEvent = types::decode_json(value, "event")?;
    Ok(stored.into_event(id))
}

#[cfg(test)]
mod admin_tests;
#[cfg(test)]
mod escrow_tests;
#[cfg(test)]
mod held_tests;
#[cfg(test)]
mod idem_tests;
#[cfg(test)]
mod marks_tests;
/// Every positive balance of `player`, read with conflicts: from the
/// per-asset totals when the ledger keeps them ([`totals::read`]: the held-asset
/// index and one point read per asset), else from the shards
/// ([`projection::read_all`]; `point`: through the index, see the module doc).
async fn read_balances<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
    catalog: &Catalog,
    point: bool,
) -> Result<Balances, TxError<LedgerError>> {
    Ok(match totals::read(tx, region, player, false).await? {
        Some(b) => b,
        None => {
            projection::to_balances(&projection::read_all(tx, region, player, catalog, point, false).await?)
        }
    })
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod totals_tests;
#[cfg(test)]
mod transfer_tests;

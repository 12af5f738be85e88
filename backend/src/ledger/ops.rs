//! The ledger's write operations: request validation, the one write
//! transaction they share, and the idempotency check inside it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::keyspace::RegionName;
use crate::store::{Store, Transaction, TxError, VersionstampFuture};

use super::catalog::AssetRule;
use super::errors::LedgerError;
use super::types::{
    check_id, check_idempotency_key, decode_gen, encode_gen, encode_json, Asset, Change, EventId, EventKind,
    Outcome, Quantity, Receipt, StoredEvent, StoredReceipt, TradeSide, MAX_AMOUNT, MAX_ASSETS_PER_REQUEST,
    MAX_REASON_BYTES,
};
use super::{check_fence, check_player, keys, marks, now_ms, projection, Counters, Ledger};

type TxResult<T> = Result<T, TxError<LedgerError>>;

/// One player's part of a write.
struct Side {
    player: String,
    /// Net change per asset (never 0), with the asset's rule.
    changes: Vec<(Asset, AssetRule, i64)>,
    source: String,
    counterparty: Option<String>,
    offer: Option<String>,
    reason: Option<String>,
}

impl Side {
    fn stored_changes(&self) -> Vec<Change> {
        self.changes
            .iter()
            .map(|(asset, _, delta)| Change {
                asset: asset.clone(),
                delta: *delta,
            })
            .collect()
    }
}

/// A validated write: `sides[0]` is the acting player (owner of the key).
struct Plan {
    kind: EventKind,
    idem: String,
    fingerprint: String,
    sides: Vec<Side>,
}

enum Done {
    Duplicate(Receipt),
    /// This call's own earlier attempt committed (its result was unknown).
    Rerun(Receipt),
    Applied {
        gen: u32,
        at_ms: u64,
        stamp: VersionstampFuture,
    },
}

fn fingerprint(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Validates and merges quantities (same asset twice: summed).
fn normalize(items: &[Quantity]) -> Result<BTreeMap<Asset, u64>, LedgerError> {
    let mut out: BTreeMap<Asset, u64> = BTreeMap::new();
    for q in items {
        let what = match q.asset.kind {
            super::AssetKind::Item => "item",
            super::AssetKind::Currency => "currency",
        };
        check_id(what, &q.asset.id)?;
        let sum = out.entry(q.asset.clone()).or_default();
        *sum = sum.saturating_add(q.amount);
        if q.amount == 0 || *sum > MAX_AMOUNT {
            return Err(LedgerError::InvalidQuantity(format!(
                "{}: amount must be 1..={MAX_AMOUNT}",
                q.asset
            )));
        }
    }
    if out.len() > MAX_ASSETS_PER_REQUEST {
        return Err(LedgerError::InvalidQuantity(format!(
            "{} assets, at most {MAX_ASSETS_PER_REQUEST}",
            out.len()
        )));
    }
    Ok(out)
}

#[path = "idem.rs"]
mod idem;
use idem::check_duplicate;

fn describe(changes: &BTreeMap<Asset, i64>) -> String {
    changes.iter().fold(String::new(), |mut s, (a, d)| {
        let _ = write!(s, "{}:{}:{d};", a.kind.tag(), a.id);
        s
    })
}

/// Generation of the player's ledger in this region, bumped if the record was
/// written in another region (the ledger was copied in by a transfer).
async fn ensure_gen<T: Transaction>(tx: &T, region: &RegionName, player: &str) -> TxResult<u32> {
    let key = keys::generation(region, player);
    let (gen, write) = match tx.get(&key).await? {
        None => (0, true),
        Some(raw) => {
            let (gen, wrote) = decode_gen(&raw).map_err(TxError::User)?;
            if wrote == region.as_str() {
                (gen, false)
            } else {
                (gen + 1, true)
            }
        }
    };
    if write {
        tx.set(&key, &encode_gen(gen, region.as_str()))?;
    }
    Ok(gen)
}

impl<S: Store> Ledger<S> {
    fn side(&self, player: &str, changes: BTreeMap<Asset, i64>, source: &str) -> Result<Side, LedgerError> {
        let changes = changes
            .into_iter()
            .filter(|(_, d)| *d != 0)
            .map(|(a, d)| Ok((a.clone(), self.catalog.rule(&a)?, d)))
            .collect::<Result<Vec<_>, LedgerError>>()?;
        Ok(Side {
            player: player.to_owned(),
            changes,
            source: source.to_owned(),
            counterparty: None,
            offer: None,
            reason: None,
        })
    }

    fn one_sided(
        &self,
        kind: EventKind,
        player: &str,
        idem: &str,
        source: &str,
        changes: BTreeMap<Asset, i64>,
    ) -> Result<Plan, LedgerError> {
        check_player(player)?;
        check_idempotency_key(idem)?;
        check_id("source", source)?;
        if changes.is_empty() {
            return Err(LedgerError::InvalidQuantity("nothing requested".into()));
        }
        let text = format!("{kind:?}\n{player}\n{source}\n{}", describe(&changes));
        Ok(Plan {
            kind,
            idem: idem.to_owned(),
            fingerprint: fingerprint(&text),
            sides: vec![self.side(player, changes, source)?],
        })
    }

    /// Adds `items` to `player`'s balances (a `grant` event from `source`, e.g.
    /// `match_reward`). Fails with [`LedgerError::LimitExceeded`] if any would
    /// pass its limit (nothing is granted then).
    pub async fn grant(
        &self,
        player: &str,
        idempotency_key: &str,
        source: &str,
        items: &[Quantity],
    ) -> Result<Outcome, LedgerError> {
        let changes = normalize(items)?
            .into_iter()
            .map(|(a, n)| (a, n as i64))
            .collect();
        let plan = self.one_sided(EventKind::Grant, player, idempotency_key, source, changes)?;
        self.execute(plan).await
    }

    /// Removes `items` from `player`'s balances (a `consume` event). Fails with
    /// [`LedgerError::Insufficient`] if any balance is too small (nothing is
    /// removed then).
    pub async fn consume(
        &self,
        player: &str,
        idempotency_key: &str,
        source: &str,
        items: &[Quantity],
    ) -> Result<Outcome, LedgerError> {
        let changes = normalize(items)?
            .into_iter()
            .map(|(a, n)| (a, -(n as i64)))
            .collect();
        let plan = self.one_sided(EventKind::Consume, player, idempotency_key, source, changes)?;
        self.execute(plan).await
    }

    /// Buys catalog offer `offer` for `player`: its price is removed and its
    /// goods added in one transaction (a `purchase` event, source `purchase`).
    /// The price is the catalog's at the time of the first successful attempt.
    pub async fn purchase(
        &self,
        player: &str,
        idempotency_key: &str,
        offer: &str,
    ) -> Result<Outcome, LedgerError> {
        check_player(player)?;
        check_idempotency_key(idempotency_key)?;
        check_id("offer", offer)?;
        let (price, goods) = self.catalog.offer(offer)?;
        let mut changes: BTreeMap<Asset, i64> = BTreeMap::new();
        for q in &price {
            *changes.entry(q.asset.clone()).or_default() -= q.amount as i64;
        }
        for q in &goods {
            *changes.entry(q.asset.clone()).or_default() += q.amount as i64;
        }
        let mut side = self.side(player, changes, "purchase")?;
        side.offer = Some(offer.to_owned());
        let plan = Plan {
            kind: EventKind::Purchase,
            idem: idempotency_key.to_owned(),
            fingerprint: fingerprint(&format!("Purchase\n{player}\n{offer}")),
            sides: vec![side],
        };
        self.execute(plan).await
    }

    /// Exchanges assets between two players of this region atomically: `a`
    /// gives `a.gives` to `b`, `b` gives `b.gives` to `a`. `a` is the acting
    /// player: the idempotency key is in `a`'s namespace and the receipt is
    /// `a`'s event. Both get a `trade` event (source `trade`) naming the other.
    ///
    /// Refused with [`LedgerError::CrossRegionTrade`] if either side's
    /// `home_region` is not this ledger's region (cross-region trades are not
    /// supported), [`LedgerError::InvalidTrade`] for the same player twice or
    /// nothing exchanged, and the usual balance errors.
    pub async fn trade(
        &self,
        a: &TradeSide,
        b: &TradeSide,
        idempotency_key: &str,
    ) -> Result<Outcome, LedgerError> {
        check_player(&a.player)?;
        check_player(&b.player)?;
        check_idempotency_key(idempotency_key)?;
        for side in [a, b] {
            if side.home_region != self.region.as_str() {
                return Err(LedgerError::CrossRegionTrade {
                    player: side.player.clone(),
                    home: side.home_region.chars().take(64).collect(),
                    region: self.region.to_string(),
                });
            }
        }
        if a.player == b.player {
            return Err(LedgerError::InvalidTrade("a player cannot trade with themself"));
        }
        let (ga, gb) = (normalize(&a.gives)?, normalize(&b.gives)?);
        let mut net_a: BTreeMap<Asset, i64> = BTreeMap::new();
        for (asset, n) in &ga {
            *net_a.entry(asset.clone()).or_default() -= *n as i64;
        }
        for (asset, n) in &gb {
            *net_a.entry(asset.clone()).or_default() += *n as i64;
        }
        net_a.retain(|_, d| *d != 0);
        if net_a.is_empty() {
            return Err(LedgerError::InvalidTrade("nothing exchanged"));
        }
        let net_b: BTreeMap<Asset, i64> = net_a.iter().map(|(k, d)| (k.clone(), -d)).collect();
        let text = format!(
            "Trade\n{}\n{}\n{}\n{}",
            a.player,
            b.player,
            describe(&ga.into_iter().map(|(k, n)| (k, n as i64)).collect()),
            describe(&gb.into_iter().map(|(k, n)| (k, n as i64)).collect()),
        );
        let mut side_a = self.side(&a.player, net_a, "trade")?;
        side_a.counterparty = Some(b.player.clone());
        let mut side_b = self.side(&b.player, net_b, "trade")?;
        side_b.counterparty = Some(a.player.clone());
        let plan = Plan {
            kind: EventKind::Trade,
            idem: idempotency_key.to_owned(),
            fingerprint: fingerprint(&text),
            sides: vec![side_a, side_b],
        };
        self.execute(plan).await
    }

    /// An operator's correction of `player`'s balances (signed changes; an
    /// `admin_correction` event, source `admin`, with `reason`). The same rules
    /// hold: never negative, never over a limit. Admin API only.
    pub async fn admin_correction(
        &self,
        player: &str,
        idempotency_key: &str,
        reason: &str,
        changes: &[Change],
    ) -> Result<Outcome, LedgerError> {
        if reason.is_empty() || reason.len() > MAX_REASON_BYTES {
            return Err(LedgerError::InvalidReason);
        }
        let mut net: BTreeMap<Asset, i64> = BTreeMap::new();
        for c in changes {
            let q = Quantity {
                asset: c.asset.clone(),
                amount: c.delta.unsigned_abs(),
            };
            normalize(std::slice::from_ref(&q))?;
            *net.entry(c.asset.clone()).or_default() += c.delta;
        }
        if net.values().any(|d| d.unsigned_abs() > MAX_AMOUNT) || net.len() > MAX_ASSETS_PER_REQUEST {
            return Err(LedgerError::InvalidQuantity("correction too large".into()));
        }
        net.retain(|_, d| *d != 0);
        let mut plan = self.one_sided(EventKind::AdminCorrection, player, idempotency_key, "admin", net)?;
        plan.fingerprint = fingerprint(&format!("{}\n{reason}", plan.fingerprint));
        plan.sides[0].reason = Some(reason.to_owned());
        self.execute(plan).await
    }

    /// Runs a validated write in one transaction (see the module docs).
    async fn execute(&self, plan: Plan) -> Result<Outcome, LedgerError> {
        let plan = Arc::new(plan);
        let op: Arc<str> = format!("{:032x}", rand::random::<u128>()).into();
        let (region, counters) = (self.region.clone(), self.counters.clone());
        let entered = self
            .counters
            .in_flight
            .enter(plan.sides.iter().map(|s| s.player.as_str()));
        let point = entered.hot;
        let res = self
            .store
            .run(|tx| {
                let (plan, region, counters, op) =
                    (plan.clone(), region.clone(), counters.clone(), op.clone());
                async move { attempt(&tx, &region, &plan, &op, point, &counters).await }
            })
            .await;
        drop(entered);
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        outcome(&plan, res?).await
    }
}

/// One attempt of a write's transaction (the store may run it again: it keeps
/// no state across attempts). `point`: how balance shards are read ([`super::hot`]).
async fn attempt<T: Transaction>(
    tx: &T,
    region: &RegionName,
    plan: &Plan,
    op: &str,
    point: bool,
    counters: &Counters,
) -> TxResult<Done> {
    counters.attempts.fetch_add(1, Ordering::Relaxed);
    for side in &plan.sides {
        check_fence(tx, region, &side.player, true).await?;
    }
    if let Some(done) = check_duplicate(tx, region, plan, op).await? {
        return Ok(done);
    }
    let mut gens = Vec::with_capacity(plan.sides.len());
    for side in &plan.sides {
        gens.push(ensure_gen(tx, region, &side.player).await?);
        marks::ensure(tx, region, &side.player).await?;
    }
    apply_balances(tx, region, plan, point).await?;
    let at_ms = now_ms();
    append_events(tx, region, plan, &gens, at_ms, op)?;
    #[cfg(test)]
    if counters
        .fail_after_writes
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Err(TxError::Store(crate::store::StoreError::CommitUnknownResult));
    }
    Ok(Done::Applied {
        gen: gens[0],
        at_ms,
        stamp: tx.versionstamp(),
    })
}

/// Every side's balance changes: debits first (their errors are the likelier
/// ones), then credits.
async fn apply_balances<T: Transaction>(
    tx: &T,
    region: &RegionName,
    plan: &Plan,
    point: bool,
) -> TxResult<()> {
    for side in &plan.sides {
        for (asset, rule, delta) in side.changes.iter().filter(|c| c.2 < 0) {
            projection::debit(
                tx,
                region,
                &side.player,
                asset,
                *rule,
                point,
                delta.unsigned_abs(),
            )
            .await?;
        }
    }
    for side in &plan.sides {
        for (asset, rule, delta) in side.changes.iter().filter(|c| c.2 > 0) {
            projection::credit(tx, region, &side.player, asset, *rule, point, *delta as u64).await?;
        }
    }
    Ok(())
}

/// Appends every side's event (versionstamped), bumps its change counter, and
/// stores the acting side's receipt under the idempotency key.
fn append_events<T: Transaction>(
    tx: &T,
    region: &RegionName,
    plan: &Plan,
    gens: &[u32],
    at_ms: u64,
    op: &str,
) -> TxResult<()> {
    for (side, gen) in plan.sides.iter().zip(gens) {
        let event = StoredEvent {
            kind: plan.kind,
            source: side.source.clone(),
            idem: plan.idem.clone(),
            changes: side.stored_changes(),
            at_ms,
            counterparty: side.counterparty.clone(),
            offer: side.offer.clone(),
            reason: side.reason.clone(),
        };
        tx.set_versionstamped_key(&keys::new_event(region, &side.player, *gen), &encode_json(&event))?;
        tx.atomic_add(&keys::changes(region, &side.player), 1)?;
    }
    let receipt = StoredReceipt {
        fingerprint: plan.fingerprint.clone(),
        gen: gens[0],
        kind: plan.kind,
        changes: plan.sides[0].stored_changes(),
        at_ms,
        op: Some(op.to_owned()),
    };
    tx.set_versionstamped_key(
        &keys::new_idem(region, &plan.sides[0].player, &plan.idem),
        &encode_json(&receipt),
    )?;
    Ok(())
}

/// The caller's answer for a finished transaction.
async fn outcome(plan: &Plan, done: Done) -> Result<Outcome, LedgerError> {
    match done {
        Done::Duplicate(receipt) => Ok(Outcome {
            receipt,
            duplicate: true,
        }),
        Done::Rerun(receipt) => Ok(Outcome {
            receipt,
            duplicate: false,
        }),
        Done::Applied { gen, at_ms, stamp } => {
            let stamp = stamp.await?;
            Ok(Outcome {
                receipt: Receipt {
                    event: EventId { gen, stamp },
                    kind: plan.kind,
                    idempotency_key: plan.idem.clone(),
                    changes: plan.sides[0].stored_changes(),
                    at_ms,
                },
                duplicate: false,
            })
        }
    }
}

//! Inventory operations of live players: the scenario's `[inventory]` section
//! (the mix of ledger operations an inventory action stands for), its
//! validation, and one operation performed through the SDK's
//! `InventoryClient` (balances and history reads, keyed grants and purchases,
//! and replays of a keyed write that must come back as the original receipt).
//!
//! How often a player does an inventory operation is `behaviour.inventory`,
//! a weight among the other actions after each think time; this section says
//! which one it is.
//!
//! ```toml
//! [behaviour]
//! inventory = 2            # weight among ping, echo, state_load, ...
//!
//! [inventory]              # relative weights within inventory operations
//! balances = 4             # InventoryBalances
//! history = 1              # InventoryHistory, newest first, `history_limit` events
//! grant = 2                # keyed grant of `grant_amount` × currency `grant_currency`
//! purchase = 1             # keyed purchase of catalog offer `offer`
//! replay = 0.5             # the session's last write again, with its key
//! history_limit = 20
//! grant_currency = "gems"
//! grant_amount = 10
//! offer = "potion_pack"
//! ```
//!
//! Grants need `inventory.client_grants = true` on the gateway (`--local`
//! turns it on); against other gateways set `grant = 0` (a client may only
//! read, purchase and consume there). A purchase the ledger refuses with
//! `Conflict` (balance too small, stack full) is a business answer: counted
//! in `totals.purchases_declined` and, by default, as the expected outcome
//! `inventory_purchase` / `Conflict`, not an error (see [`crate::accounting`]). A replay re-sends the session's last grant or
//! purchase with the same idempotency key; the gateway must answer with the
//! original receipt (`duplicate`, same event id), else it counts as error
//! `ReplayMismatch`. Before a session's first write a replay is drawn again
//! from the other kinds.

use outpost_client::{AssetAmount, AssetKind, ClientError, InventoryClient, InventoryReceipt};
use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::record::{inc, Op, Recorder};

/// The `[inventory]` section: what one inventory action is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventorySpec {
    /// Weight of a balances read. Default 4.
    pub balances: f64,
    /// Weight of a history read. Default 1.
    pub history: f64,
    /// Weight of a keyed grant (needs `inventory.client_grants` on the
    /// gateway). Default 2.
    pub grant: f64,
    /// Weight of a keyed purchase of `offer`. Default 1.
    pub purchase: f64,
    /// Weight of a replay of the session's last write with its key. Default 0.5.
    pub replay: f64,
    /// Events per history page, 1..=100. Default 20.
    pub history_limit: u16,
    /// Currency a grant adds. Default `gems` (of the development catalog).
    pub grant_currency: String,
    /// Amount a grant adds, > 0. Default 10 (one `potion_pack` in the
    /// development catalog).
    pub grant_amount: u64,
    /// Catalog offer a purchase buys. Default `potion_pack`.
    pub offer: String,
}

impl Default for InventorySpec {
    fn default() -> Self {
        InventorySpec {
            balances: 4.0,
            history: 1.0,
            grant: 2.0,
            purchase: 1.0,
            replay: 0.5,
            history_limit: 20,
            grant_currency: "gems".into(),
            grant_amount: 10,
            offer: "potion_pack".into(),
        }
    }
}

/// One kind of inventory operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvKind {
    Balances,
    History,
    Grant,
    Purchase,
    Replay,
}

impl InvKind {
    /// Every kind, in the order of [`InventorySpec::weights`].
    pub const ALL: [InvKind; 5] = [
        InvKind::Balances,
        InvKind::History,
        InvKind::Grant,
        InvKind::Purchase,
        InvKind::Replay,
    ];

    /// The histogram it is recorded in.
    pub fn op(self) -> Op {
        match self {
            InvKind::Balances => Op::InventoryBalances,
            InvKind::History => Op::InventoryHistory,
            InvKind::Grant => Op::InventoryGrant,
            InvKind::Purchase => Op::InventoryPurchase,
            InvKind::Replay => Op::InventoryReplay,
        }
    }
}

impl InventorySpec {
    /// Weights in [`InvKind::ALL`] order.
    pub fn weights(&self) -> [f64; 5] {
        [
            self.balances,
            self.history,
            self.grant,
            self.purchase,
            self.replay,
        ]
    }

    /// Checks ranges; `used`: whether `behaviour.inventory > 0`.
    pub fn validate(&self, used: bool) -> Result<(), String> {
        let w = self.weights();
        if w.iter().any(|x| !(x.is_finite() && *x >= 0.0)) {
            return Err("inventory weights must be finite numbers >= 0".into());
        }
        if used && w.iter().sum::<f64>() <= 0.0 {
            return Err("behaviour.inventory > 0 needs a positive [inventory] weight".into());
        }
        if self.replay > 0.0 && self.grant + self.purchase <= 0.0 {
            return Err("inventory.replay needs writes to replay (grant or purchase > 0)".into());
        }
        if !(1..=100).contains(&self.history_limit) {
            return Err("inventory.history_limit must be within 1..=100".into());
        }
        if self.grant_amount == 0 {
            return Err("inventory.grant_amount must be > 0".into());
        }
        for (what, v) in [("grant_currency", &self.grant_currency), ("offer", &self.offer)] {
            if !(1..=64).contains(&v.len()) || v.chars().any(char::is_whitespace) {
                return Err(format!("inventory.{what}: 1..=64 characters without spaces"));
            }
        }
        Ok(())
    }
}

/// Draws a kind by weight; `can_replay`: whether the session has a write to
/// replay (if not, a replay is drawn again from the other kinds).
pub fn pick(spec: &InventorySpec, can_replay: bool, rng: &mut StdRng) -> Option<InvKind> {
    let mut w = spec.weights();
    if !can_replay {
        w[4] = 0.0;
    }
    let total: f64 = w.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let mut x = rng.gen::<f64>() * total;
    for (k, wk) in InvKind::ALL.iter().zip(w) {
        if x < wk {
            return Some(*k);
        }
        x -= wk;
    }
    InvKind::ALL
        .iter()
        .zip(w)
        .rev()
        .find(|(_, w)| *w > 0.0)
        .map(|(k, _)| *k)
}

/// The session's last keyed write, kept for a replay (a few short strings:
/// per-player state stays light).
#[derive(Debug, Clone)]
pub struct LastWrite {
    kind: InvKind,
    key: String,
    event_id: String,
}

/// Performs one inventory operation of `kind` and records it; a successful
/// grant or purchase becomes the session's `last` write.
pub async fn perform(
    inv: &InventoryClient,
    spec: &InventorySpec,
    kind: InvKind,
    last: &mut Option<LastWrite>,
    rec: &Recorder,
) {
    let op = kind.op();
    let t0 = std::time::Instant::now();
    inc(&rec.counters.inventory_ops);
    let res: Result<(), ClientError> = match kind {
        InvKind::Balances => inv.balances().await.map(|_| ()),
        InvKind::History => inv.history(None, spec.history_limit, true).await.map(|_| ()),
        InvKind::Grant | InvKind::Purchase => {
            let key = outpost_client::new_idempotency_key();
            match write(inv, spec, kind, &key).await {
                Ok(r) => {
                    *last = Some(LastWrite {
                        kind,
                        key,
                        event_id: r.event_id,
                    });
                    Ok(())
                }
                Err(e) => {
                    if kind == InvKind::Purchase && outpost_client::is_conflict(&e) {
                        // Refused by the ledger (balance too small): an
                        // expected outcome by default ([accounting]).
                        inc(&rec.counters.purchases_declined);
                    }
                    Err(e)
                }
            }
        }
        InvKind::Replay => match last.clone() {
            None => Ok(()),
            Some(w) => match write(inv, spec, w.kind, &w.key).await {
                Ok(r) if r.duplicate && r.event_id == w.event_id => {
                    inc(&rec.counters.replays_verified);
                    Ok(())
                }
                Ok(_) => {
                    rec.err_code(op, "ReplayMismatch".into());
                    return;
                }
                Err(e) => Err(e),
            },
        },
    };
    match res {
        Ok(()) => rec.ok(op, t0.elapsed()),
        Err(e) => {
            rec.err(op, &e);
        }
    }
}

async fn write(
    inv: &InventoryClient,
    spec: &InventorySpec,
    kind: InvKind,
    key: &str,
) -> Result<InventoryReceipt, ClientError> {
    if kind == InvKind::Grant {
        let items = vec![AssetAmount {
            kind: AssetKind::Currency,
            id: spec.grant_currency.clone(),
            amount: spec.grant_amount,
        }];
        inv.grant_with_key(key, "outpost-sim", items).await
    } else {
        inv.purchase_with_key(key, &spec.offer).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn pick_follows_weights_and_skips_replay_without_a_write() {
        let spec = InventorySpec {
            balances: 1.0,
            history: 0.0,
            grant: 1.0,
            purchase: 0.0,
            replay: 2.0,
            ..InventorySpec::default()
        };
        let mut rng = StdRng::seed_from_u64(5);
        let mut n = [0usize; 5];
        for _ in 0..10_000 {
            let k = pick(&spec, true, &mut rng).unwrap();
            n[InvKind::ALL.iter().position(|x| *x == k).unwrap()] += 1;
        }
        assert_eq!(n[1] + n[3], 0);
        let replay = n[4] as f64 / 10_000.0;
        assert!((replay - 0.5).abs() < 0.03, "{replay}");
        for _ in 0..1_000 {
            assert_ne!(pick(&spec, false, &mut rng), Some(InvKind::Replay));
        }
        let none = InventorySpec {
            balances: 0.0,
            history: 0.0,
            grant: 0.0,
            purchase: 0.0,
            replay: 0.0,
            ..InventorySpec::default()
        };
        assert_eq!(pick(&none, true, &mut rng), None);
    }

    #[test]
    fn validation_names_the_field() {
        assert!(InventorySpec::default().validate(true).is_ok());
        let bad = |f: fn(&mut InventorySpec)| {
            let mut s = InventorySpec::default();
            f(&mut s);
            s.validate(true).unwrap_err()
        };
        assert!(bad(|s| s.grant = -1.0).contains("weights"));
        assert!(bad(|s| s.history_limit = 0).contains("history_limit"));
        assert!(bad(|s| s.grant_amount = 0).contains("grant_amount"));
        assert!(bad(|s| s.offer = "a b".into()).contains("offer"));
        assert!(bad(|s| {
            s.grant = 0.0;
            s.purchase = 0.0;
        })
        .contains("replay"));
        let zero = InventorySpec {
            balances: 0.0,
            history: 0.0,
            grant: 0.0,
            purchase: 0.0,
            replay: 0.0,
            ..InventorySpec::default()
        };
        assert!(zero.validate(false).is_ok());
        assert!(zero.validate(true).unwrap_err().contains("behaviour.inventory"));
    }
}

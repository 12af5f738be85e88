//! The item catalog: items (with max stack), currencies (with max balance) and
//! purchasable offers (prices in currencies). A content file, loaded from TOML or
//! JSON and validated once, when the [`Ledger`](super::Ledger) is built.
//!
//! ```toml
//! [items.sword]
//! max_stack = 1
//! [items.potion]
//! max_stack = 99
//! [items.crafting_dust]          # no max_stack: unlimited
//!
//! [currencies.gold]
//! max_balance = 1000000000
//! [currencies.gems]              # no max_balance: unlimited
//!
//! [offers.potion_pack]
//! price = { gems = 10 }
//! items = { potion = 5 }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::errors::LedgerError;
use super::types::{check_id, Asset, AssetKind, Quantity, MAX_AMOUNT};

/// Largest finite limit (max stack / max balance): 10^15.
pub const MAX_LIMIT: u64 = 1_000_000_000_000_000;
/// Most escrow shards a limited asset's balance may be split into.
pub const MAX_ESCROW_SHARDS: u16 = 256;
/// Escrow shards used by default: one per [`ESCROW_SHARD_MIN_CAPACITY`] units of
/// the limit, at most [`DEFAULT_MAX_ESCROW_SHARDS`], at least 1.
pub const DEFAULT_MAX_ESCROW_SHARDS: u16 = 32;
/// See [`DEFAULT_MAX_ESCROW_SHARDS`].
pub const ESCROW_SHARD_MIN_CAPACITY: u64 = 1000;

/// An item definition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemDef {
    /// Most of this item one player may hold (units). `None`: unlimited.
    /// 1..=[`MAX_LIMIT`].
    #[serde(default)]
    pub max_stack: Option<u64>,
    /// Escrow shards for the limit (see the ledger's design notes); only for
    /// limited items. Default: `max_stack / 1000`, clamped to 1..=32.
    /// 1..=min(256, max_stack). It (and the limit) may change between
    /// deployments: while any shard is over its new capacity, grants take the
    /// exact path. Do not run writers with different catalogs at once.
    #[serde(default)]
    pub escrow_shards: Option<u16>,
}

/// A currency definition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurrencyDef {
    /// Largest balance one player may hold (units). `None`: unlimited.
    /// 1..=[`MAX_LIMIT`].
    #[serde(default)]
    pub max_balance: Option<u64>,
    /// Escrow shards, as for [`ItemDef::escrow_shards`].
    #[serde(default)]
    pub escrow_shards: Option<u16>,
}

/// A purchasable offer: pay `price`, receive `items` and `currencies`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    /// Currency id → amount paid. At least one entry.
    pub price: BTreeMap<String, u64>,
    /// Item id → amount received.
    #[serde(default)]
    pub items: BTreeMap<String, u64>,
    /// Currency id → amount received (e.g. gold bought with gems). A currency
    /// may not be both paid and received.
    #[serde(default)]
    pub currencies: BTreeMap<String, u64>,
}

/// The catalog. Build it in code or load it with [`Catalog::from_toml_str`],
/// [`Catalog::from_json_str`] or [`Catalog::load`]; the ledger validates it
/// ([`Catalog::validate`]) when it is built.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Item id → definition.
    #[serde(default)]
    pub items: BTreeMap<String, ItemDef>,
    /// Currency id → definition.
    #[serde(default)]
    pub currencies: BTreeMap<String, CurrencyDef>,
    /// Offer id → offer.
    #[serde(default)]
    pub offers: BTreeMap<String, Offer>,
}

/// How an asset's balance is kept (derived from the catalog).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AssetRule {
    /// The limit (`None`: unlimited).
    pub limit: Option<u64>,
    /// Escrow shards (1 for unlimited assets).
    pub shards: u16,
}

impl AssetRule {
    /// The capacity of escrow shard `s`: the limit split evenly, the remainder
    /// going to the first shards, so the capacities add up to the limit. Shards
    /// at or past `shards` (left by an older catalog) have capacity 0.
    pub fn shard_capacity(&self, s: u16) -> u64 {
        match self.limit {
            None => u64::MAX,
            Some(_) if s >= self.shards => 0,
            Some(limit) => {
                let n = u64::from(self.shards);
                limit / n + u64::from(u64::from(s) < limit % n)
            }
        }
    }
}

fn default_shards(limit: u64) -> u16 {
    (limit / ESCROW_SHARD_MIN_CAPACITY).clamp(1, u64::from(DEFAULT_MAX_ESCROW_SHARDS)) as u16
}

fn invalid(msg: String) -> LedgerError {
    LedgerError::InvalidCatalog(msg)
}

fn check_limit(what: &str, id: &str, limit: Option<u64>, shards: Option<u16>) -> Result<(), LedgerError> {
    if let Some(l) = limit {
        if !(1..=MAX_LIMIT).contains(&l) {
            return Err(invalid(format!("{what} {id}: limit {l} outside 1..={MAX_LIMIT}")));
        }
    }
    if let Some(s) = shards {
        let max = limit.map_or(1, |l| l.min(u64::from(MAX_ESCROW_SHARDS)));
        if s == 0 || u64::from(s) > max {
            return Err(invalid(format!(
                "{what} {id}: escrow_shards {s} outside 1..={max} (unlimited assets use 1)"
            )));
        }
    }
    Ok(())
}

impl Catalog {
    /// Parses and validates a TOML catalog.
    pub fn from_toml_str(s: &str) -> Result<Catalog, LedgerError> {
        let c: Catalog = toml::from_str(s).map_err(|e| invalid(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// Parses and validates a JSON catalog.
    pub fn from_json_str(s: &str) -> Result<Catalog, LedgerError> {
        let c: Catalog = serde_json::from_str(s).map_err(|e| invalid(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// Reads a catalog file: JSON if the name ends in `.json`, TOML otherwise.
    pub fn load(path: &Path) -> Result<Catalog, LedgerError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
        if path.extension().is_some_and(|e| e == "json") {
            Catalog::from_json_str(&text)
        } else {
            Catalog::from_toml_str(&text)
        }
    }

    /// Checks ids, limits, shard counts, and that every offer names known
    /// assets with amounts in 1..=[`MAX_AMOUNT`].
    pub fn validate(&self) -> Result<(), LedgerError> {
        self.check().map_err(|e| match e {
            LedgerError::InvalidCatalog(m) => LedgerError::InvalidCatalog(m),
            other => LedgerError::InvalidCatalog(other.to_string()),
        })
    }

    fn check(&self) -> Result<(), LedgerError> {
        for (id, def) in &self.items {
            check_id("item", id)?;
            check_limit("item", id, def.max_stack, def.escrow_shards)?;
        }
        for (id, def) in &self.currencies {
            check_id("currency", id)?;
            check_limit("currency", id, def.max_balance, def.escrow_shards)?;
        }
        for (id, offer) in &self.offers {
            check_id("offer", id)?;
            if offer.price.is_empty() {
                return Err(invalid(format!("offer {id}: empty price")));
            }
            if offer.items.is_empty() && offer.currencies.is_empty() {
                return Err(invalid(format!("offer {id}: gives nothing")));
            }
            for (q, known) in offer
                .price
                .iter()
                .map(|q| (q, self.currencies.contains_key(q.0)))
                .chain(
                    offer
                        .currencies
                        .iter()
                        .map(|q| (q, self.currencies.contains_key(q.0))),
                )
                .chain(offer.items.iter().map(|q| (q, self.items.contains_key(q.0))))
            {
                if !known {
                    return Err(invalid(format!("offer {id}: unknown asset {}", q.0)));
                }
                if !(1..=MAX_AMOUNT).contains(q.1) {
                    return Err(invalid(format!(
                        "offer {id}: amount {} of {} outside 1..={MAX_AMOUNT}",
                        q.1, q.0
                    )));
                }
            }
            if let Some(c) = offer.price.keys().find(|c| offer.currencies.contains_key(*c)) {
                return Err(invalid(format!(
                    "offer {id}: currency {c} both paid and received"
                )));
            }
        }
        Ok(())
    }

    /// The rule for `asset`, or [`LedgerError::UnknownAsset`].
    pub(crate) fn rule(&self, asset: &Asset) -> Result<AssetRule, LedgerError> {
        let (limit, shards) = match asset.kind {
            AssetKind::Item => self.items.get(&asset.id).map(|d| (d.max_stack, d.escrow_shards)),
            AssetKind::Currency => self
                .currencies
                .get(&asset.id)
                .map(|d| (d.max_balance, d.escrow_shards)),
        }
        .ok_or_else(|| LedgerError::UnknownAsset(asset.clone()))?;
        let shards = match limit {
            None => 1,
            Some(l) => shards.unwrap_or_else(|| default_shards(l)),
        };
        Ok(AssetRule { limit, shards })
    }

    /// An offer's price and goods as quantities.
    pub(crate) fn offer(&self, id: &str) -> Result<(Vec<Quantity>, Vec<Quantity>), LedgerError> {
        let offer = self
            .offers
            .get(id)
            .ok_or_else(|| LedgerError::UnknownOffer(id.chars().take(64).collect()))?;
        let price = offer
            .price
            .iter()
            .map(|(c, &n)| Quantity::currency(c.clone(), n))
            .collect();
        let goods = offer
            .items
            .iter()
            .map(|(i, &n)| Quantity::item(i.clone(), n))
            .chain(
                offer
                    .currencies
                    .iter()
                    .map(|(c, &n)| Quantity::currency(c.clone(), n)),
            )
            .collect();
        Ok((price, goods))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
        [items.sword]
        max_stack = 1
        [items.potion]
        max_stack = 99
        [items.dust]
        [items.ore]
        max_stack = 100000
        [currencies.gold]
        max_balance = 1000000000
        escrow_shards = 64
        [currencies.gems]
        [offers.potion_pack]
        price = { gems = 10 }
        items = { potion = 5 }
    "#;

    #[test]
    fn loads_toml_and_json_and_derives_rules() {
        let c = Catalog::from_toml_str(TOML).unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(Catalog::from_json_str(&json).unwrap(), c);
        let rule = |a: Asset| c.rule(&a).unwrap();
        assert_eq!(
            rule(Asset::item("dust")),
            AssetRule {
                limit: None,
                shards: 1
            }
        );
        assert_eq!(rule(Asset::item("potion")).shards, 1);
        assert_eq!(rule(Asset::item("ore")).shards, 32);
        assert_eq!(rule(Asset::currency("gold")).shards, 64);
        assert!(matches!(
            c.rule(&Asset::item("gold")),
            Err(LedgerError::UnknownAsset(_))
        ));
        let (price, goods) = c.offer("potion_pack").unwrap();
        assert_eq!(price, vec![Quantity::currency("gems", 10)]);
        assert_eq!(goods, vec![Quantity::item("potion", 5)]);
        assert!(matches!(c.offer("nope"), Err(LedgerError::UnknownOffer(_))));
    }

    #[test]
    fn shard_capacities_add_up_to_the_limit() {
        for (limit, shards) in [(1u64, 1u16), (99, 7), (100_000, 32), (1_000_000_007, 256)] {
            let r = AssetRule {
                limit: Some(limit),
                shards,
            };
            let caps: Vec<u64> = (0..shards).map(|s| r.shard_capacity(s)).collect();
            assert_eq!(caps.iter().sum::<u64>(), limit);
            assert!(caps.iter().max().unwrap() - caps.iter().min().unwrap() <= 1);
        }
    }

    #[test]
    fn validation_rejects_bad_catalogs() {
        let bad = [
            "[items.Sword]\nmax_stack = 1",
            "[items.a]\nmax_stack = 0",
            "[items.a]\nmax_stack = 5\nescrow_shards = 6",
            "[items.a]\nescrow_shards = 2",
            "[items.a]\nweight = 2",
            "[currencies.g]\n[offers.o]\nprice = { g = 1 }",
            "[currencies.g]\n[offers.o]\nprice = { x = 1 }\ncurrencies = { g = 1 }",
            "[currencies.g]\n[items.a]\n[offers.o]\nprice = { g = 0 }\nitems = { a = 1 }",
            "[currencies.g]\n[offers.o]\nprice = { g = 1 }\ncurrencies = { g = 2 }",
            "[currencies.g]\n[offers.o]\nprice = {}\ncurrencies = { g = 2 }",
        ];
        for text in bad {
            assert!(
                matches!(Catalog::from_toml_str(text), Err(LedgerError::InvalidCatalog(_))),
                "accepted: {text}"
            );
        }
    }
}

//! The audit: folds a player's events and compares the result with the balance
//! projection, reporting every mismatch; and the same for a whole region,
//! streaming (one player at a time, bounded memory).
//!
//! A player's audit runs in **one transaction** with snapshot reads (no
//! conflicts with live traffic), so events and balances are read at the same
//! version: a consistent pair even while grants are being written. Events are
//! read in pages of [`AUDIT_PAGE`]; memory is one balance per asset. The
//! store's ~5 s transaction limit bounds a single player's history that can be
//! audited (hundreds of thousands of events on this hardware).

use std::collections::BTreeMap;

use foundationdb_tuple::Element;

use crate::fence::{self, Fence};
use crate::keyspace::RegionName;
use crate::store::{Store, Transaction, TxError};

use super::errors::LedgerError;
use super::types::{Asset, EventId};
use super::{check_player, decode_event, keys, projection, totals, Ledger};

/// Events read per range read during an audit.
pub const AUDIT_PAGE: usize = 1000;

/// One inconsistency found by an audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// The projected balance differs from the sum of the events' changes.
    Balance {
        /// The asset.
        asset: Asset,
        /// The projection (sum of the escrow shards).
        projected: i64,
        /// The fold of the events.
        folded: i64,
    },
    /// An escrow shard below zero.
    NegativeShard {
        /// The asset.
        asset: Asset,
        /// The shard.
        shard: u16,
        /// Its value.
        value: i64,
    },
    /// The fold of the events went below zero at `event` (a debit applied
    /// without the balance to cover it).
    NegativeFold {
        /// The asset.
        asset: Asset,
        /// The event after which the fold was negative.
        event: EventId,
        /// The fold's value there.
        value: i64,
    },
    /// A balance over the asset's current catalog limit (also reported if the
    /// catalog lowered the limit after the fact).
    OverLimit {
        /// The asset.
        asset: Asset,
        /// The balance.
        balance: i64,
        /// The limit.
        limit: u64,
    },
    /// An asset's stored total (kept while the player's "tot_all" marker is
    /// set, see `totals`) differs from the sum of its shards.
    Total {
        /// The asset.
        asset: Asset,
        /// The stored total.
        total: i64,
        /// The sum of the shards.
        shards: i64,
    },
    /// An event or balance that does not decode.
    Corrupt {
        /// What failed.
        detail: String,
    },
}

/// The audit of one player.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayerAudit {
    /// The player.
    pub player: String,
    /// Events folded.
    pub events: u64,
    /// Distinct assets seen (in events or balances).
    pub assets: usize,
    /// Every inconsistency found.
    pub mismatches: Vec<Mismatch>,
}

impl PlayerAudit {
    /// No mismatches.
    pub fn is_clean(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// The summary of a region audit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionAudit {
    /// Players audited.
    pub players: u64,
    /// Players with no mismatch.
    pub clean_players: u64,
    /// Players skipped because a transfer is copying them into the region.
    pub skipped_incoming: u64,
    /// Events folded.
    pub events: u64,
    /// Mismatches found (all players).
    pub mismatches: u64,
    /// The audits of the first `max_reported` players with mismatches.
    pub reported: Vec<PlayerAudit>,
}

impl RegionAudit {
    /// No mismatches anywhere.
    pub fn is_clean(&self) -> bool {
        self.mismatches == 0
    }
}

async fn audit_in_tx<T: Transaction, S: Store>(
    ledger: &Ledger<S>,
    tx: &T,
    player: &str,
) -> Result<PlayerAudit, TxError<LedgerError>> {
    let region = &ledger.region;
    let mut mismatches = Vec::new();
    let mut folded: BTreeMap<Asset, i64> = BTreeMap::new();
    let mut events = 0u64;
    let sub = keys::events(region, player);
    let (mut begin, end) = sub.range();
    loop {
        let page = tx
            .get_range_snapshot(&begin, &end, Some(AUDIT_PAGE), false)
            .await?;
        for kv in &page {
            events += 1;
            let event = match decode_event(&sub, &kv.key, &kv.value) {
                Ok(e) => e,
                Err(e) => {
                    mismatches.push(Mismatch::Corrupt {
                        detail: format!("event: {e}"),
                    });
                    continue;
                }
            };
            for c in &event.changes {
                let v = folded.entry(c.asset.clone()).or_default();
                *v += c.delta;
                if *v < 0 {
                    mismatches.push(Mismatch::NegativeFold {
                        asset: c.asset.clone(),
                        event: event.id,
                        value: *v,
                    });
                }
            }
        }
        match page.last() {
            Some(last) if page.len() == AUDIT_PAGE => begin = [last.key.as_slice(), &[0]].concat(),
            _ => break,
        }
    }
    let raw = match projection::read_all_scan(tx, region, player, true).await {
        Ok(raw) => raw,
        Err(TxError::User(e)) => {
            mismatches.push(Mismatch::Corrupt {
                detail: format!("balances: {e}"),
            });
            BTreeMap::new()
        }
        Err(e) => return Err(e),
    };
    check_totals(tx, region, player, &raw, &mut mismatches).await?;
    let mut assets: Vec<&Asset> = folded.keys().chain(raw.keys()).collect();
    assets.sort();
    assets.dedup();
    for asset in &assets {
        let shards = raw.get(*asset).map(Vec::as_slice).unwrap_or(&[]);
        for &(shard, value) in shards.iter().filter(|s| s.1 < 0) {
            mismatches.push(Mismatch::NegativeShard {
                asset: (*asset).clone(),
                shard,
                value,
            });
        }
        let projected: i64 = shards.iter().map(|s| s.1).sum();
        let fold = folded.get(*asset).copied().unwrap_or(0);
        if projected != fold {
            mismatches.push(Mismatch::Balance {
                asset: (*asset).clone(),
                projected,
                folded: fold,
            });
        }
        if let Ok(rule) = ledger.catalog().rule(asset) {
            if let Some(limit) = rule.limit.filter(|&l| projected > l as i64) {
                mismatches.push(Mismatch::OverLimit {
                    asset: (*asset).clone(),
                    balance: projected,
                    limit,
                });
            }
        }
    }
    Ok(PlayerAudit {
        player: player.to_owned(),
        events,
        assets: assets.len(),
        mismatches,
    })
}

impl<S: Store> Ledger<S> {
    /// Audits one player: folds every event and compares with the projection.
    /// Reads raw data (past any transfer fence). Admin API only.
    pub async fn audit_player(&self, player: &str) -> Result<PlayerAudit, LedgerError> {
        check_player(player)?;
        let player = player.to_owned();
        let res = self
            .store
            .run(|tx| {
                let player = player.clone();
                async move { audit_in_tx(self, &tx, &player).await }
            })
            .await?;
        Ok(res)
    }

    /// Audits every player with a ledger in this region, one player (one
    /// transaction) at a time, calling `on_player` with each result. Returns
    /// the summary, with the first `max_reported` unclean audits. Players a
    /// transfer is copying in are skipped (counted). Memory: one player's
    /// audit plus the reported ones. Admin API only.
    pub async fn audit_region(
        &self,
        max_reported: usize,
        mut on_player: impl FnMut(&PlayerAudit) + Send,
    ) -> Result<RegionAudit, LedgerError> {
        let all = keys::ledgers(&self.region);
        let (mut cursor, end) = all.range();
        let prefix_len = all.bytes().len();
        let mut summary = RegionAudit::default();
        loop {
            let (b, e) = (cursor.clone(), end.clone());
            let first = self
                .store
                .run(|tx| {
                    let (b, e) = (b.clone(), e.clone());
                    async move {
                        Ok::<_, TxError<LedgerError>>(tx.get_range_snapshot(&b, &e, Some(1), false).await?)
                    }
                })
                .await?;
            let Some(kv) = first.into_iter().next() else { break };
            let player = match foundationdb_tuple::unpack::<Vec<Element>>(&kv.key[prefix_len..])
                .ok()
                .and_then(|els| match els.into_iter().next() {
                    Some(Element::String(s)) => Some(s.into_owned()),
                    _ => None,
                }) {
                Some(p) => p,
                None => {
                    return Err(LedgerError::Corrupt(
                        "undecodable key in the ledger subspace".into(),
                    ))
                }
            };
            cursor = keys::player(&self.region, &player).range().1;
            let region = self.region.clone();
            let p2 = player.clone();
            let audit = self
                .store
                .run(|tx| {
                    let (player, region) = (p2.clone(), region.clone());
                    async move {
                        let f = fence::read(&tx, &region, &player, LedgerError::Corrupt).await?;
                        if matches!(f, Some(Fence::Incoming { .. })) {
                            return Ok(None);
                        }
                        Ok(Some(audit_in_tx(self, &tx, &player).await?))
                    }
                })
                .await?;
            let Some(audit) = audit else {
                summary.skipped_incoming += 1;
                continue;
            };
            summary.players += 1;
            summary.events += audit.events;
            summary.mismatches += audit.mismatches.len() as u64;
            on_player(&audit);
            if audit.is_clean() {
                summary.clean_players += 1;
            } else if summary.reported.len() < max_reported {
                summary.reported.push(audit);
            }
        }
        Ok(summary)
    }
}

/// While the player's totals are kept ("tot_all"), each must equal the sum
/// of its asset's shards (`raw`, the range read).
async fn check_totals<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
    raw: &BTreeMap<Asset, Vec<(u16, i64)>>,
    mismatches: &mut Vec<Mismatch>,
) -> Result<(), TxError<LedgerError>> {
    let stored = match totals::read_stored(tx, region, player).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return Ok(()),
        Err(TxError::User(e)) => {
            mismatches.push(Mismatch::Corrupt {
                detail: format!("totals: {e}"),
            });
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let mut assets: Vec<&Asset> = stored.keys().chain(raw.keys()).collect();
    assets.sort();
    assets.dedup();
    for asset in assets {
        let total = stored.get(asset).copied().unwrap_or(0);
        let shards: i64 = raw.get(asset).map(|s| s.iter().map(|s| s.1).sum()).unwrap_or(0);
        if total != shards {
            mismatches.push(Mismatch::Total {
                asset: asset.clone(),
                total,
                shards,
            });
        }
    }
    Ok(())
}

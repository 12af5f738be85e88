//! Cross-region transfer: moves a player's authoritative data from one region's
//! keyspace to another's as idempotent, resumable steps.
//!
//! # Design
//!
//! Region keyspaces may live in different stores (one FoundationDB cluster per
//! region), so no single transaction spans both. A transfer is instead a sequence
//! of steps, each **one transaction** (or a few, for the copy), each
//! **idempotent**, with progress kept in a transfer record in the global keyspace
//! ([`keys`]). The record names the last completed step; [`Transfer::resume`]
//! runs the remaining ones. A step's effect commits before the record advances, so
//! a crash between the two re-runs the step on resume, which is harmless:
//!
//! | step | transaction(s) | effect |
//! |---|---|---|
//! | start | global | record `started`, the player's active-transfer pointer |
//! | `source_fenced` | source | fence `outgoing`: the source refuses writes |
//! | `copied` | destination, then source reads + destination writes per page | fence `incoming`, clear the destination's families, copy every family key |
//! | `home_switched` | global | identity home = destination **and** record, atomically |
//! | `source_cleared` | source | clear the families, fence `moved` (writes/reads refused, naming the new home) |
//! | `done` | destination, then global | lift the destination fence; record `done`, clear the pointer |
//!
//! Invariants, at every point (crash or not): identity names exactly one home
//! region, and that region's keyspace holds the player's complete data (before
//! `home_switched` the source, after it the destination). While the transfer is
//! unfinished, writes to the player are refused in both regions (see
//! [`fence`]), so the copy is exact. Versions travel with the data (values are
//! copied byte for byte). Any data the destination held for the player before
//! the copy is replaced: the source is authoritative.
//!
//! Services other than player state register their per-player key families with
//! [`Transfer::register_family`] ([`PlayerFamily`]); they must check the fence in
//! their write transactions. The copy moves up to [`COPY_PAGE_KEYS`] keys per
//! transaction pair, so a family may hold more than one transaction's worth of
//! data per player.
//!
//! # Example (the gateway's admin endpoint)
//!
//! ```ignore
//! let transfer = Transfer::new(identity.clone(), [("eu".into(), eu_store), ("us".into(), us_store)]);
//! let id = transfer.start(&player, "us").await?;   // durable record; nothing moved yet
//! let rec = transfer.resume(&id).await?;           // runs the steps; rec.step == Done
//! // after a crash: for rec in transfer.pending().await? { transfer.resume(&rec.id).await?; }
//! ```

pub mod errors;
pub mod keys;
pub mod policy;
pub mod types;

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::rngs::OsRng;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use crate::identity::{self, check_player_id, check_region, unix_now, Identity};
use crate::keyspace::RegionName;
use crate::store::{Store, Transaction, TxError};

use crate::fence;
pub use crate::fence::Fence;
pub use errors::TransferError;
pub use policy::{decide_login, ForeignLoginPolicy, LoginAction, LoginContext};
pub use types::{HookPoint, PlayerFamily, StateFamily, TransferId, TransferRecord, TransferStep};

/// Keys copied per source read / destination write transaction pair. With the
/// store's 100 kB value and 10 kB key limits this keeps a page under ~7 MB, inside
/// the 10 MB transaction limit.
pub const COPY_PAGE_KEYS: usize = 64;

#[derive(Serialize, Deserialize)]
struct ActivePointer {
    id: TransferId,
}

/// The transfer service: the global store (through [`Identity`]) and a store per
/// region. Cheap to clone.
pub struct Transfer<G: Store, R: Store> {
    identity: Identity<G>,
    regions: Arc<BTreeMap<String, R>>,
    families: Arc<Vec<Arc<dyn PlayerFamily>>>,
}

impl<G: Store, R: Store> Clone for Transfer<G, R> {
    fn clone(&self) -> Self {
        Transfer {
            identity: self.identity.clone(),
            regions: self.regions.clone(),
            families: self.families.clone(),
        }
    }
}

impl<G: Store, R: Store> std::fmt::Debug for Transfer<G, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfer")
            .field("regions", &self.regions.keys().collect::<Vec<_>>())
            .field(
                "families",
                &self.families.iter().map(|f| f.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

type Hook<'a> = &'a mut (dyn FnMut(HookPoint) -> Result<(), TransferError> + Send);

fn fence_conflict(rec: &TransferRecord, region: &str, found: Option<Fence>) -> TxError<TransferError> {
    TxError::User(TransferError::FenceConflict {
        region: region.to_owned(),
        transfer: rec.id.clone(),
        found,
    })
}

/// Keeps store errors as store errors (so the retry loop still retries them).
fn identity_tx_error(e: TxError<identity::IdentityError>) -> TxError<TransferError> {
    match e {
        TxError::Store(s) => TxError::Store(s),
        TxError::User(u) => TxError::User(TransferError::Identity(u)),
    }
}

/// The record's source and destination as region names (a record holding an
/// invalid one is corrupt: [`Transfer::start`] checks both).
fn endpoints(rec: &TransferRecord) -> Result<(RegionName, RegionName), TransferError> {
    let name =
        |n: &str| RegionName::new(n).map_err(|e| TransferError::Corrupt(format!("transfer {}: {e}", rec.id)));
    Ok((name(&rec.from)?, name(&rec.to)?))
}

async fn read_fence<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
) -> Result<Option<Fence>, TxError<TransferError>> {
    fence::read(tx, region, player, TransferError::Corrupt).await
}

impl<G: Store, R: Store> Transfer<G, R> {
    /// A transfer service over identity's global store and the given region stores,
    /// moving player state ([`StateFamily`]) plus any family registered later.
    pub fn new(identity: Identity<G>, regions: impl IntoIterator<Item = (String, R)>) -> Self {
        Transfer {
            identity,
            regions: Arc::new(regions.into_iter().collect()),
            families: Arc::new(vec![Arc::new(StateFamily)]),
        }
    }

    /// Adds a per-player key family to move (e.g. the inventory ledger's).
    pub fn register_family(&mut self, family: Arc<dyn PlayerFamily>) {
        Arc::make_mut(&mut self.families).push(family);
    }

    /// The key range of every registered family for `player` in `region`.
    fn player_ranges(&self, region: &RegionName, player: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.families
            .iter()
            .map(|f| f.player_subspace(region, player).range())
            .collect()
    }

    fn region(&self, name: &str) -> Result<&R, TransferError> {
        self.regions
            .get(name)
            .ok_or_else(|| TransferError::UnknownRegion(name.to_owned()))
    }

    /// Starts moving `player` to `to_region`: checks the request and writes the
    /// transfer record (step `started`). Moves nothing yet; call
    /// [`resume`](Self::resume). Refused if the player is already homed there
    /// ([`TransferError::SameRegion`]) or has an unfinished transfer
    /// ([`TransferError::AlreadyInProgress`]).
    pub async fn start(&self, player: &str, to_region: &str) -> Result<TransferId, TransferError> {
        check_player_id(player)?;
        check_region(to_region)?;
        self.region(to_region)?;
        let mut raw = [0u8; 16];
        OsRng.fill_bytes(&mut raw);
        let id: TransferId = raw.iter().map(|b| format!("{b:02x}")).collect();
        let regions = self.regions.clone();
        let (player, to) = (player.to_owned(), to_region.to_owned());
        let res = self
            .identity
            .store()
            .run(|tx| {
                let (id, player, to, regions) = (id.clone(), player.clone(), to.clone(), regions.clone());
                async move {
                    if let Some(raw) = tx.get(&keys::active(&player)).await? {
                        let p: ActivePointer = types::decode(&raw).map_err(TxError::User)?;
                        if p.id == id {
                            // This call's earlier attempt committed (its result was unknown).
                            return Ok(id);
                        }
                        return Err(TxError::User(TransferError::AlreadyInProgress(p.id)));
                    }
                    let account = identity::read_account(&tx, &player)
                        .await
                        .map_err(identity_tx_error)?
                        .ok_or_else(|| TxError::User(TransferError::UnknownPlayer(player.clone())))?;
                    if account.home == to {
                        return Err(TxError::User(TransferError::SameRegion(to)));
                    }
                    if !regions.contains_key(&account.home) {
                        return Err(TxError::User(TransferError::UnknownRegion(account.home)));
                    }
                    let now = unix_now();
                    let rec = TransferRecord {
                        id: id.clone(),
                        player: player.clone(),
                        from: account.home,
                        to,
                        step: TransferStep::Started,
                        created_unix: now,
                        updated_unix: now,
                    };
                    tx.set(&keys::record(&id), &types::encode(&rec))?;
                    tx.set(
                        &keys::active(&player),
                        &types::encode(&ActivePointer { id: id.clone() }),
                    )?;
                    Ok(id)
                }
            })
            .await?;
        tracing::info!(transfer = %res, "cross-region transfer started");
        Ok(res)
    }

    /// The transfer's record.
    pub async fn status(&self, id: &str) -> Result<TransferRecord, TransferError> {
        let id = id.to_owned();
        let res = self
            .identity
            .store()
            .run(|tx| {
                let id = id.clone();
                async move { read_record(&tx, &id).await }
            })
            .await?;
        Ok(res)
    }

    /// The player's unfinished transfer, if any.
    pub async fn active_for_player(&self, player: &str) -> Result<Option<TransferId>, TransferError> {
        let key = keys::active(player);
        let res = self
            .identity
            .store()
            .run(|tx| {
                let key = key.clone();
                async move {
                    match tx.get(&key).await? {
                        Some(raw) => Ok(Some(
                            types::decode::<ActivePointer>(&raw).map_err(TxError::User)?.id,
                        )),
                        None => Ok::<_, TxError<TransferError>>(None),
                    }
                }
            })
            .await?;
        Ok(res)
    }

    /// Every unfinished transfer (to resume after a restart).
    pub async fn pending(&self) -> Result<Vec<TransferRecord>, TransferError> {
        let res = self
            .identity
            .store()
            .run(|tx| async move {
                let (b, e) = keys::active_all().range();
                let mut out = Vec::new();
                for kv in tx.get_range(&b, &e, None, false).await? {
                    let p: ActivePointer = types::decode(&kv.value).map_err(TxError::User)?;
                    out.push(read_record(&tx, &p.id).await?);
                }
                Ok::<_, TxError<TransferError>>(out)
            })
            .await?;
        Ok(res)
    }

    /// Runs the transfer's remaining steps and returns the final record (step
    /// `done`). Resuming a finished transfer is a no-op. Safe to call after a crash
    /// at any point, and safe (if wasteful) to run concurrently with itself.
    pub async fn resume(&self, id: &str) -> Result<TransferRecord, TransferError> {
        self.resume_with_hook(id, &mut |_| Ok(())).await
    }

    /// [`resume`](Self::resume) with a fault-injection hook called at every
    /// [`HookPoint`]; an `Err` from the hook stops the transfer there, as a crash
    /// would. For crash tests.
    pub async fn resume_with_hook(&self, id: &str, hook: Hook<'_>) -> Result<TransferRecord, TransferError> {
        loop {
            let rec = self.status(id).await?;
            let next = rec.step.next();
            match rec.step {
                TransferStep::Done => return Ok(rec),
                TransferStep::Started => self.fence_source(&rec).await?,
                TransferStep::SourceFenced => self.copy(&rec).await?,
                TransferStep::Copied => {
                    // Effect and record in one transaction.
                    self.switch_home(&rec).await?;
                    hook(HookPoint::AfterEffect(next))?;
                    hook(HookPoint::AfterRecord(next))?;
                    continue;
                }
                TransferStep::HomeSwitched => self.clear_source(&rec).await?,
                TransferStep::SourceCleared => self.unfence_destination(&rec).await?,
            }
            hook(HookPoint::AfterEffect(next))?;
            self.advance(&rec, next).await?;
            tracing::info!(transfer = %rec.id, step = ?next, "transfer step done");
            hook(HookPoint::AfterRecord(next))?;
        }
    }

    /// Step `source_fenced`: the source refuses writes to the player.
    async fn fence_source(&self, rec: &TransferRecord) -> Result<(), TransferError> {
        let (rec2, (from2, _)) = (rec.clone(), endpoints(rec)?);
        self.region(&rec.from)?
            .run(|tx| {
                let (rec, from) = (rec2.clone(), from2.clone());
                async move {
                    match read_fence(&tx, &from, &rec.player).await? {
                        None => fence::set(
                            &tx,
                            &from,
                            &rec.player,
                            &Fence::Outgoing {
                                transfer: rec.id.clone(),
                                to: rec.to.clone(),
                            },
                        ),
                        Some(Fence::Outgoing { transfer, .. }) if transfer == rec.id => Ok(()),
                        found => Err(fence_conflict(&rec, &rec.from, found)),
                    }
                }
            })
            .await?;
        Ok(())
    }

    /// Step `copied`: fence the destination `incoming`, clear its copy of the
    /// player's families, then copy every key page by page.
    async fn copy(&self, rec: &TransferRecord) -> Result<(), TransferError> {
        let (src, dst) = (self.region(&rec.from)?, self.region(&rec.to)?);
        let (from, to) = endpoints(rec)?;
        let dst_ranges = Arc::new(self.player_ranges(&to, &rec.player));
        let rec2 = rec.clone();
        dst.run(|tx| {
            let (rec, ranges, to) = (rec2.clone(), dst_ranges.clone(), to.clone());
            async move {
                match read_fence(&tx, &to, &rec.player).await? {
                    None | Some(Fence::Moved { .. }) => {}
                    Some(Fence::Incoming { transfer, .. }) if transfer == rec.id => {}
                    found => return Err(fence_conflict(&rec, &rec.to, found)),
                }
                let incoming = Fence::Incoming {
                    transfer: rec.id.clone(),
                    from: rec.from.clone(),
                };
                fence::set(&tx, &to, &rec.player, &incoming)?;
                for (b, e) in ranges.iter() {
                    tx.clear_range(b, e)?;
                }
                Ok(())
            }
        })
        .await?;

        for fam in self.families.iter() {
            let src_sub = fam.player_subspace(&from, &rec.player);
            let dst_prefix = fam.player_subspace(&to, &rec.player).bytes().to_vec();
            let (mut begin, end) = src_sub.range();
            loop {
                let (rec2, b2, e2) = (rec.clone(), begin.clone(), end.clone());
                let page = src
                    .run(|tx| {
                        let (rec, b, e, from) = (rec2.clone(), b2.clone(), e2.clone(), from.clone());
                        async move {
                            match read_fence(&tx, &from, &rec.player).await? {
                                Some(Fence::Outgoing { transfer, .. }) if transfer == rec.id => {}
                                found => return Err(fence_conflict(&rec, &rec.from, found)),
                            }
                            Ok(tx.get_range(&b, &e, Some(COPY_PAGE_KEYS), false).await?)
                        }
                    })
                    .await?;
                let Some(last) = page.last() else { break };
                let next_begin = [last.key.as_slice(), &[0u8]].concat();
                let full = page.len() == COPY_PAGE_KEYS;
                let (rec2, page, src_len) = (rec.clone(), Arc::new(page), src_sub.bytes().len());
                dst.run(|tx| {
                    let (rec, page, dst_prefix, to) =
                        (rec2.clone(), page.clone(), dst_prefix.clone(), to.clone());
                    async move {
                        match read_fence(&tx, &to, &rec.player).await? {
                            Some(Fence::Incoming { transfer, .. }) if transfer == rec.id => {}
                            found => return Err(fence_conflict(&rec, &rec.to, found)),
                        }
                        for kv in page.iter() {
                            let key = [dst_prefix.as_slice(), &kv.key[src_len..]].concat();
                            tx.set(&key, &kv.value)?;
                        }
                        Ok(())
                    }
                })
                .await?;
                if !full {
                    break;
                }
                begin = next_begin;
            }
        }
        Ok(())
    }

    /// Step `home_switched`: identity's home region and the record, atomically.
    async fn switch_home(&self, rec: &TransferRecord) -> Result<(), TransferError> {
        let id = rec.id.clone();
        self.identity
            .store()
            .run(|tx| {
                let id = id.clone();
                async move {
                    let mut rec = read_record(&tx, &id).await?;
                    match rec.step {
                        TransferStep::Copied => {}
                        s if s > TransferStep::Copied => return Ok(()),
                        found => {
                            return Err(TxError::User(TransferError::UnexpectedStep {
                                transfer: id,
                                expected: TransferStep::Copied,
                                found,
                            }))
                        }
                    }
                    identity::set_home_in_tx(&tx, &rec.player, &rec.to)
                        .await
                        .map_err(identity_tx_error)?;
                    rec.step = TransferStep::HomeSwitched;
                    rec.updated_unix = unix_now();
                    tx.set(&keys::record(&id), &types::encode(&rec))?;
                    Ok(())
                }
            })
            .await?;
        Ok(())
    }

    /// Step `source_cleared`: remove the player's families from the source and
    /// leave a `moved` fence naming the new home.
    async fn clear_source(&self, rec: &TransferRecord) -> Result<(), TransferError> {
        let (from2, _) = endpoints(rec)?;
        let (rec2, ranges) = (rec.clone(), Arc::new(self.player_ranges(&from2, &rec.player)));
        self.region(&rec.from)?
            .run(|tx| {
                let (rec, ranges, from) = (rec2.clone(), ranges.clone(), from2.clone());
                async move {
                    match read_fence(&tx, &from, &rec.player).await? {
                        Some(Fence::Outgoing { transfer, .. } | Fence::Moved { transfer, .. })
                            if transfer == rec.id => {}
                        found => return Err(fence_conflict(&rec, &rec.from, found)),
                    }
                    for (b, e) in ranges.iter() {
                        tx.clear_range(b, e)?;
                    }
                    let moved = Fence::Moved {
                        transfer: rec.id.clone(),
                        to: rec.to.clone(),
                    };
                    fence::set(&tx, &from, &rec.player, &moved)
                }
            })
            .await?;
        Ok(())
    }

    /// Step `done` (effect): lift the destination's `incoming` fence.
    async fn unfence_destination(&self, rec: &TransferRecord) -> Result<(), TransferError> {
        let (rec2, (_, to2)) = (rec.clone(), endpoints(rec)?);
        self.region(&rec.to)?
            .run(|tx| {
                let (rec, to) = (rec2.clone(), to2.clone());
                async move {
                    match read_fence(&tx, &to, &rec.player).await? {
                        Some(Fence::Incoming { transfer, .. }) if transfer == rec.id => {
                            fence::clear(&tx, &to, &rec.player)
                        }
                        None => Ok(()),
                        found => Err(fence_conflict(&rec, &rec.to, found)),
                    }
                }
            })
            .await?;
        Ok(())
    }

    /// Moves the record from `rec.step` to `next` (no-op if it is already there or
    /// beyond); on `done` also clears the player's active-transfer pointer.
    async fn advance(&self, rec: &TransferRecord, next: TransferStep) -> Result<(), TransferError> {
        let (id, from) = (rec.id.clone(), rec.step);
        self.identity
            .store()
            .run(|tx| {
                let id = id.clone();
                async move {
                    let mut rec = read_record(&tx, &id).await?;
                    if rec.step >= next {
                        return Ok(());
                    }
                    if rec.step != from {
                        return Err(TxError::User(TransferError::UnexpectedStep {
                            transfer: id,
                            expected: from,
                            found: rec.step,
                        }));
                    }
                    rec.step = next;
                    rec.updated_unix = unix_now();
                    tx.set(&keys::record(&id), &types::encode(&rec))?;
                    if next == TransferStep::Done {
                        tx.clear(&keys::active(&rec.player))?;
                    }
                    Ok(())
                }
            })
            .await?;
        Ok(())
    }
}

async fn read_record<T: Transaction>(tx: &T, id: &str) -> Result<TransferRecord, TxError<TransferError>> {
    let raw = tx
        .get(&keys::record(id))
        .await?
        .ok_or_else(|| TxError::User(TransferError::UnknownTransfer(id.chars().take(64).collect())))?;
    types::decode(&raw).map_err(TxError::User)
}

#[cfg(test)]
mod tests;

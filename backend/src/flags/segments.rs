//! Player segments: explicit, bounded lists of player ids that flag rules target
//! (`when.segments`).

use std::collections::{BTreeMap, BTreeSet};

use super::{keys, FlagError, Flags};
use crate::audit::{self, AuditAction, AuditRecord};
use crate::codec::decode_counter;
use crate::identity::check_player_id;
use crate::names::{is_valid_actor, is_valid_name, truncate};
use crate::store::{Store, StoreError, Transaction, TxError};
use crate::time::now_ms;

/// Most members of one segment.
pub const MAX_SEGMENT_MEMBERS: usize = 10_000;
/// Most members of all segments together (a [`FlagSnapshot`](super::FlagSnapshot)
/// holds all of them).
pub const MAX_TOTAL_SEGMENT_MEMBERS: usize = 50_000;
/// Most segments.
pub const MAX_SEGMENTS: usize = 256;
/// Most players added or removed in one call (one transaction).
pub const MAX_SEGMENT_BATCH: usize = 1000;

/// Every segment's members.
pub(crate) async fn all_in_tx<T: Transaction>(
    tx: &T,
) -> Result<BTreeMap<String, BTreeSet<String>>, TxError<FlagError>> {
    let sub = keys::all_segments();
    let (b, e) = sub.range();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for kv in tx
        .get_range(&b, &e, Some(MAX_TOTAL_SEGMENT_MEMBERS), false)
        .await?
    {
        let (segment, player): (String, String) = sub
            .unpack(&kv.key)
            .map_err(|_| TxError::User(FlagError::Corrupt("undecodable segment key".into())))?;
        out.entry(segment).or_default().insert(player);
    }
    Ok(out)
}

fn check_input(actor: &str, segment: &str, players: &[&str]) -> Result<(), FlagError> {
    if !is_valid_actor(actor) {
        return Err(FlagError::InvalidActor);
    }
    if !is_valid_name(segment) {
        return Err(FlagError::InvalidSegment(format!(
            "segment name {:?}: use 1..=64 bytes of a-z, 0-9, '_', '-', '.'",
            truncate(segment, 64)
        )));
    }
    if players.len() > MAX_SEGMENT_BATCH {
        return Err(FlagError::InvalidSegment(format!(
            "{} players in one call, limit {MAX_SEGMENT_BATCH}",
            players.len()
        )));
    }
    for p in players {
        if check_player_id(p).is_err() {
            return Err(FlagError::InvalidSegment(format!(
                "player id {:?} is not 32 lowercase hex characters",
                truncate(p, 64)
            )));
        }
    }
    Ok(())
}

impl<S: Store> Flags<S> {
    /// Adds `players` to `segment` (created on first use) on behalf of `actor`.
    /// Returns how many were not members yet. Bumps the change counter and
    /// audits, in one transaction. A rerun after an unknown commit result that
    /// did commit returns the first attempt's count (the segment's op marker,
    /// [`keys::segment_op`]).
    ///
    /// Errors: [`FlagError::InvalidSegment`], [`FlagError::SegmentLimit`] (the
    /// bounds [`MAX_SEGMENT_MEMBERS`], [`MAX_TOTAL_SEGMENT_MEMBERS`],
    /// [`MAX_SEGMENTS`]), [`FlagError::InvalidActor`].
    pub async fn add_to_segment(
        &self,
        actor: &str,
        segment: &str,
        players: &[&str],
    ) -> Result<usize, FlagError> {
        self.change_segment(actor, segment, players, true).await
    }

    /// Removes `players` from `segment`. Returns how many were members.
    pub async fn remove_from_segment(
        &self,
        actor: &str,
        segment: &str,
        players: &[&str],
    ) -> Result<usize, FlagError> {
        self.change_segment(actor, segment, players, false).await
    }

    /// The members of `segment`, in id order.
    pub async fn segment_members(&self, segment: &str) -> Result<Vec<String>, FlagError> {
        let sub = keys::segment_members(segment);
        let res = self
            .store
            .run(|tx| {
                let sub = sub.clone();
                async move {
                    let (b, e) = sub.range();
                    let rows = tx.get_range(&b, &e, Some(MAX_SEGMENT_MEMBERS), false).await?;
                    rows.iter()
                        .map(|kv| {
                            sub.unpack::<(String,)>(&kv.key).map(|(p,)| p).map_err(|_| {
                                TxError::User(FlagError::Corrupt("undecodable segment key".into()))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                }
            })
            .await?;
        Ok(res)
    }

    async fn change_segment(
        &self,
        actor: &str,
        segment: &str,
        players: &[&str],
        add: bool,
    ) -> Result<usize, FlagError> {
        check_input(actor, segment, players)?;
        let players: BTreeSet<String> = players.iter().map(|p| p.to_string()).collect();
        let (actor, segment) = (actor.to_owned(), segment.to_owned());
        // The same in every attempt: a rerun after an unknown commit result
        // that did commit finds it in the segment's op marker.
        let op: [u8; 16] = rand::random();
        let res = self
            .store
            .run(|tx| {
                let (actor, segment, players) = (actor.clone(), segment.clone(), players.clone());
                async move {
                    let marker = keys::segment_op(&segment);
                    if let Some(v) = tx.get(&marker).await? {
                        if v.len() == 24 && v[..16] == op[..] {
                            let n = u64::from_be_bytes(v[16..].try_into().expect("8 bytes"));
                            return Ok(n as usize); // an earlier attempt committed
                        }
                    }
                    let members = keys::segment_members(&segment);
                    let mut changed = Vec::new();
                    for p in &players {
                        let key = members.pack(&(p.as_str(),));
                        let present = tx.get(&key).await?.is_some();
                        if present != add {
                            changed.push(p.clone());
                        }
                    }
                    if changed.is_empty() {
                        return Ok(0);
                    }
                    let count =
                        decode_counter(tx.get(&keys::segment_count(&segment)).await?.as_deref()) as usize;
                    let n = changed.len();
                    if add {
                        check_room(&tx, &segment, count, n).await?;
                    }
                    for p in &changed {
                        let key = members.pack(&(p.as_str(),));
                        if add {
                            tx.set(&key, &[1])?;
                        } else {
                            tx.clear(&key)?;
                        }
                    }
                    let delta = if add { n as i64 } else { -(n as i64) };
                    if !add && count == n {
                        tx.clear(&keys::segment_count(&segment))?;
                    } else {
                        tx.atomic_add(&keys::segment_count(&segment), delta)?;
                    }
                    tx.atomic_add(&keys::segment_total(), delta)?;
                    tx.atomic_add(&keys::changes(), 1)?;
                    let mut mark = op.to_vec();
                    mark.extend_from_slice(&(n as u64).to_be_bytes());
                    tx.set(&marker, &mark)?;
                    let action = if add {
                        AuditAction::SegmentAdd
                    } else {
                        AuditAction::SegmentRemove
                    };
                    audit_change(&tx, actor, &segment, action, &changed)?;
                    Ok(n)
                }
            })
            .await?;
        Ok(res)
    }
}

/// Refuses (`SegmentLimit`) adding `n` members to `segment`, which has
/// `count`, when that would pass the per-segment or the total member bound,
/// or create a segment past [`MAX_SEGMENTS`].
async fn check_room<T: Transaction>(
    tx: &T,
    segment: &str,
    count: usize,
    n: usize,
) -> Result<(), TxError<FlagError>> {
    let limit = |m: String| Err(TxError::User(FlagError::SegmentLimit(m)));
    if count + n > MAX_SEGMENT_MEMBERS {
        return limit(format!(
            "segment {segment} would have {} members, limit {MAX_SEGMENT_MEMBERS}",
            count + n
        ));
    }
    let total = decode_counter(tx.get(&keys::segment_total()).await?.as_deref()) as usize;
    if total + n > MAX_TOTAL_SEGMENT_MEMBERS {
        return limit(format!(
            "all segments would have {} members, limit {MAX_TOTAL_SEGMENT_MEMBERS}",
            total + n
        ));
    }
    if count == 0 {
        let (b, e) = keys::segment_counts().range();
        if tx.get_range(&b, &e, Some(MAX_SEGMENTS), false).await?.len() >= MAX_SEGMENTS {
            return limit(format!("{MAX_SEGMENTS} segments exist already"));
        }
    }
    Ok(())
}

/// Audits a membership change of `segment` (the players actually added or removed).
fn audit_change<T: Transaction>(
    tx: &T,
    actor: String,
    segment: &str,
    action: AuditAction,
    changed: &[String],
) -> Result<(), StoreError> {
    audit::append(
        tx,
        0,
        &AuditRecord {
            actor,
            at_ms: now_ms(),
            target: format!("segment:{segment}"),
            action,
            old: None,
            new: Some(serde_json::json!({ "players": changed })),
            reason: None,
        },
    )
}

//! Feature flags (global keyspace): typed values, targeting rules, deterministic
//! percentage buckets, player segments, progressive rollouts with health gates,
//! live change notification, and the live-ops audit log.
//!
//! # Design
//!
//! - **Global.** Flags, segments and rollouts live in the global store under
//!   `("g", "flags")` ([`keys`] has the schema). One definition serves every
//!   region; rules target regions explicitly (`when.regions`). A rollout's cohort
//!   spans regions, so its health is judged on all of them together.
//! - **Flags** ([`Flag`]): a typed default ([`FlagValue`]: bool, number, string,
//!   JSON), ordered [`Rule`]s (conditions on region, platform, client version
//!   range, player segments; a value; a percentage), and `enabled` (the flag's
//!   kill switch: `false` serves the default to everyone). Validation
//!   ([`Flag::validate`]) runs before anything is written; a malformed flag
//!   changes nothing. [`Flags::set_flag`] is a compare-and-set on the flag's
//!   version when the caller passes one.
//! - **Evaluation is pure** ([`evaluate`], [`evaluate_all`], [`cohort`]): a
//!   function of the flag and an [`EvalContext`], with deterministic buckets
//!   ([`eval`] explains them), so every gateway computes the same answer without
//!   the store. The gateway holds a [`FlagSnapshot`] (every flag, every segment's
//!   members, every running rollout) read in one transaction, builds each
//!   session's context from it at login ([`FlagSnapshot::context`]) and evaluates
//!   locally.
//! - **Segments** are explicit player-id lists (QA, staff, creators, VIPs), bounded
//!   ([`MAX_SEGMENT_MEMBERS`] per segment, [`MAX_TOTAL_SEGMENT_MEMBERS`] in all,
//!   [`MAX_SEGMENTS`]) so a snapshot holds all of them. Large audiences are
//!   targeted with percentages, regions and platforms, not lists.
//! - **Live changes.** Every transaction that changes a flag, a segment or a
//!   rollout's percentage adds 1 to `("g", "flags", "chg")`.
//!   [`Flags::snapshot_and_watch`] reads a snapshot and registers a
//!   [`FlagsWatch`] on that counter in the same transaction; the gateway loop:
//!
//! ```ignore
//! loop {
//!     let (snap, watch) = flags.snapshot_and_watch().await?;
//!     for s in sessions() {
//!         let values = snap.evaluate_all(&s.ctx);          // pure, no store
//!         if values != s.last_values { s.push_flags(&values) }
//!         s.rollouts = snap.memberships(&s.ctx);           // tags its telemetry
//!     }
//!     watch.await?;                                        // any writer, any gateway
//! }
//! ```
//!
//! - **Rollouts** ([`rollout`] is the pure state machine, [`Rollouts`] the
//!   store-backed driver): a plan of stages drives one rule's percentage; health
//!   gates compare the cohort's client-reported error rate with the control
//!   group's (counters written by [`crate::telemetry`]) and roll back by
//!   themselves; a kill switch; every change is audited.
//! - **Audit** ([`crate::audit`], its own module): every flag, segment, rollout and content change appends
//!   a record (who, when, what, old → new) in its own transaction.

mod driver;
pub mod errors;
pub mod eval;
pub mod keys;
pub mod retention;
pub mod rollout;
mod segments;
pub mod types;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::codec::decode_counter;
use crate::content::ClientVersion;
use crate::names::is_valid_actor;
use crate::store::{Store, Transaction, TxError};
use crate::time::now_ms;

use crate::audit::{self, AuditAction, AuditEntry, AuditError, AuditQuery, AuditRecord};
/// The rollout cohort types live with the counters they are read from.
pub use crate::telemetry::{Cohort, CohortStats, GroupStats};
pub use driver::{Rollouts, TickReport, CONTROLLER_ACTOR};
pub use errors::{FlagError, RolloutError};
pub use eval::{
    bucket, cohort, evaluate, evaluate_all, evaluate_detailed, in_percentage, EvalContext, Reason,
};
pub use rollout::{HealthGate, Rollout, RolloutAction, RolloutPlan, RolloutState, Stage};
pub use segments::{MAX_SEGMENTS, MAX_SEGMENT_BATCH, MAX_SEGMENT_MEMBERS, MAX_TOTAL_SEGMENT_MEMBERS};
pub use types::{
    Conditions, Flag, FlagRecord, FlagType, FlagValue, Rule, VersionRange, FULL_BP, MAX_FLAGS, MAX_RULES,
};

/// Encodes a flags record ([`crate::codec::encode_v1`]).
pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    crate::codec::encode_v1(v)
}

/// Decodes a flags record written by [`encode`]; the error names what is wrong.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(raw: &[u8]) -> Result<T, String> {
    crate::codec::decode_v1(raw).map_err(|e| e.to_string())
}

/// The value of `("g", "flags", "roa", flag)`: the flag's running rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveRollout {
    /// The rollout's id.
    pub id: String,
    /// The flag.
    #[serde(default)]
    pub flag: String,
    /// The rule it drives.
    pub rule: String,
}

/// Everything a gateway needs to evaluate flags for its sessions, read in one
/// transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlagSnapshot {
    /// The change counter this snapshot reflects.
    pub seq: u64,
    /// Every flag, in key order.
    pub flags: Vec<FlagRecord>,
    /// Every segment's members.
    pub segments: BTreeMap<String, BTreeSet<String>>,
    /// Every running rollout.
    pub rollouts: Vec<ActiveRollout>,
}

impl FlagSnapshot {
    /// A session's evaluation context, with the player's segments from this
    /// snapshot.
    pub fn context(
        &self,
        player: &str,
        region: &str,
        platform: &str,
        client_version: ClientVersion,
    ) -> EvalContext {
        EvalContext {
            player: player.to_owned(),
            region: region.to_owned(),
            platform: platform.to_owned(),
            client_version,
            segments: self.segments_of(player),
        }
    }

    /// The segments `player` is in.
    pub fn segments_of(&self, player: &str) -> BTreeSet<String> {
        self.segments
            .iter()
            .filter(|(_, members)| members.contains(player))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// One flag.
    pub fn flag(&self, key: &str) -> Option<&Flag> {
        self.flags.iter().find(|r| r.flag.key == key).map(|r| &r.flag)
    }

    /// Every flag's value for a session.
    pub fn evaluate_all(&self, ctx: &EvalContext) -> BTreeMap<String, FlagValue> {
        evaluate_all(self.flags.iter().map(|r| &r.flag), ctx)
    }

    /// The session's side of each running rollout it takes part in: `(rollout id,
    /// cohort)`. Tag the session's telemetry with these.
    pub fn memberships(&self, ctx: &EvalContext) -> Vec<(String, Cohort)> {
        self.rollouts
            .iter()
            .filter_map(|ro| {
                let flag = self.flag(&ro.flag)?;
                cohort(flag, &ro.rule, ctx).map(|c| (ro.id.clone(), c))
            })
            .collect()
    }
}

/// Resolves after the next change to flags, segments or rollout percentages (see
/// [`Flags::watch_flags`]). Dropping it cancels the watch.
pub type FlagsWatch = crate::store::CounterWatch<FlagError>;

/// The flags service. Cheap to clone.
#[derive(Clone)]
pub struct Flags<S: Store> {
    store: S,
}

impl<S: Store> std::fmt::Debug for Flags<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flags").finish_non_exhaustive()
    }
}

fn corrupt(m: String) -> TxError<FlagError> {
    TxError::User(FlagError::Corrupt(m))
}

pub(crate) async fn get_flag_in_tx<T: Transaction, E>(
    tx: &T,
    key: &str,
    err: impl Fn(String) -> E,
) -> Result<Option<FlagRecord>, TxError<E>> {
    get_decoded(tx, &keys::flag(key), err).await
}

pub(crate) async fn active_rollout_in_tx<T: Transaction, E>(
    tx: &T,
    flag: &str,
    err: impl Fn(String) -> E,
) -> Result<Option<ActiveRollout>, TxError<E>> {
    get_decoded(tx, &keys::active_rollout(flag), err).await
}

/// Reads `key` and decodes its versioned value; `err` wraps a decoding failure.
async fn get_decoded<T: Transaction, V: serde::de::DeserializeOwned, E>(
    tx: &T,
    key: &[u8],
    err: impl Fn(String) -> E,
) -> Result<Option<V>, TxError<E>> {
    match tx.get(key).await? {
        Some(raw) => decode(&raw).map(Some).map_err(|e| TxError::User(err(e))),
        None => Ok(None),
    }
}

async fn list_in_tx<T: Transaction>(tx: &T) -> Result<Vec<FlagRecord>, TxError<FlagError>> {
    let (b, e) = keys::flags().range();
    let rows = tx.get_range(&b, &e, Some(MAX_FLAGS), false).await?;
    rows.iter().map(|kv| decode(&kv.value).map_err(corrupt)).collect()
}

async fn snapshot_in_tx<T: Transaction>(tx: &T) -> Result<FlagSnapshot, TxError<FlagError>> {
    let seq = decode_counter(tx.get(&keys::changes()).await?.as_deref()) as u64;
    let flags = list_in_tx(tx).await?;
    let segments = segments::all_in_tx(tx).await?;
    let (b, e) = keys::active_rollouts().range();
    let mut rollouts = Vec::new();
    for kv in tx.get_range(&b, &e, None, false).await? {
        let (flag,): (String,) = keys::active_rollouts()
            .unpack(&kv.key)
            .map_err(|_| corrupt("undecodable active rollout key".into()))?;
        let mut ro: ActiveRollout = decode(&kv.value).map_err(corrupt)?;
        ro.flag = flag;
        rollouts.push(ro);
    }
    Ok(FlagSnapshot {
        seq,
        flags,
        segments,
        rollouts,
    })
}

impl<S: Store> Flags<S> {
    /// The flags service on the global `store`.
    pub fn new(store: S) -> Self {
        Flags { store }
    }

    /// Creates or replaces `flag` (validated first) on behalf of `actor`. With
    /// `expected_version`, only if the stored version is that (`0`: must not
    /// exist yet). Bumps the change counter and appends an audit record in the
    /// same transaction. Returns the stored record.
    ///
    /// Errors: [`FlagError::InvalidFlag`], [`FlagError::VersionConflict`],
    /// [`FlagError::RolloutActive`] (the change removes the rule a running
    /// rollout drives or changes its percentage), [`FlagError::TooManyFlags`],
    /// [`FlagError::InvalidActor`].
    pub async fn set_flag(
        &self,
        actor: &str,
        flag: Flag,
        expected_version: Option<u64>,
    ) -> Result<FlagRecord, FlagError> {
        flag.validate()?;
        if !is_valid_actor(actor) {
            return Err(FlagError::InvalidActor);
        }
        let actor = actor.to_owned();
        let op = new_op_id();
        let res = self
            .store
            .run(|tx| {
                let (flag, actor) = (flag.clone(), actor.clone());
                async move {
                    let key = flag.key.clone();
                    // A rerun after an unknown commit result that did commit: return
                    // what that attempt returned, write nothing twice.
                    if let Some((version, updated_ms)) = own_last_op(&tx, &key, &op).await? {
                        return Ok(FlagRecord {
                            flag,
                            version,
                            updated_ms,
                            updated_by: actor,
                        });
                    }
                    let old = get_flag_in_tx(&tx, &key, FlagError::Corrupt).await?;
                    let actual = old.as_ref().map_or(0, |r| r.version);
                    if let Some(expected) = expected_version {
                        if expected != actual {
                            return Err(TxError::User(FlagError::VersionConflict {
                                key,
                                expected,
                                actual,
                            }));
                        }
                    }
                    if old.is_none() {
                        let (b, e) = keys::flags().range();
                        if tx.get_range(&b, &e, Some(MAX_FLAGS), false).await?.len() >= MAX_FLAGS {
                            return Err(TxError::User(FlagError::TooManyFlags { limit: MAX_FLAGS }));
                        }
                    }
                    if let Some(ro) = active_rollout_in_tx(&tx, &key, FlagError::Corrupt).await? {
                        let current = old
                            .as_ref()
                            .and_then(|r| r.flag.rule(&ro.rule))
                            .map(|r| r.percentage_bp);
                        let new = flag.rule(&ro.rule).map(|r| r.percentage_bp);
                        if new.is_none() || new != current {
                            return Err(TxError::User(FlagError::RolloutActive {
                                key,
                                rule: ro.rule,
                                rollout: ro.id,
                            }));
                        }
                    }
                    let record = FlagRecord {
                        flag,
                        version: actual + 1,
                        updated_ms: now_ms(),
                        updated_by: actor.clone(),
                    };
                    tx.set(&keys::flag(&key), &encode(&record))?;
                    tx.set(
                        &keys::last_op(&key),
                        &op_marker(&op, record.version, record.updated_ms),
                    )?;
                    tx.atomic_add(&keys::changes(), 1)?;
                    audit::append(
                        &tx,
                        0,
                        &AuditRecord {
                            actor,
                            at_ms: record.updated_ms,
                            target: format!("flag:{key}"),
                            action: AuditAction::FlagSet,
                            old: old.map(|r| serde_json::to_value(r.flag).expect("flags serialize")),
                            new: Some(serde_json::to_value(&record.flag).expect("flags serialize")),
                            reason: None,
                        },
                    )?;
                    Ok(record)
                }
            })
            .await?;
        Ok(res)
    }

    /// Deletes flag `key` (with `expected_version`, only at that version).
    /// Returns whether it existed. Refused while a rollout drives one of its
    /// rules.
    pub async fn delete_flag(
        &self,
        actor: &str,
        key: &str,
        expected_version: Option<u64>,
    ) -> Result<bool, FlagError> {
        if !is_valid_actor(actor) {
            return Err(FlagError::InvalidActor);
        }
        let (actor, key) = (actor.to_owned(), key.to_owned());
        let op = new_op_id();
        let res = self
            .store
            .run(|tx| {
                let (actor, key) = (actor.clone(), key.clone());
                async move {
                    if own_last_op(&tx, &key, &op).await?.is_some() {
                        return Ok(true); // an earlier attempt deleted it
                    }
                    let old = get_flag_in_tx(&tx, &key, FlagError::Corrupt).await?;
                    let actual = old.as_ref().map_or(0, |r| r.version);
                    if let Some(expected) = expected_version {
                        if expected != actual {
                            return Err(TxError::User(FlagError::VersionConflict {
                                key,
                                expected,
                                actual,
                            }));
                        }
                    }
                    let Some(old) = old else { return Ok(false) };
                    if let Some(ro) = active_rollout_in_tx(&tx, &key, FlagError::Corrupt).await? {
                        return Err(TxError::User(FlagError::RolloutActive {
                            key,
                            rule: ro.rule,
                            rollout: ro.id,
                        }));
                    }
                    tx.clear(&keys::flag(&key))?;
                    tx.set(&keys::last_op(&key), &op_marker(&op, 0, now_ms()))?;
                    tx.atomic_add(&keys::changes(), 1)?;
                    audit::append(
                        &tx,
                        0,
                        &AuditRecord {
                            actor,
                            at_ms: now_ms(),
                            target: format!("flag:{key}"),
                            action: AuditAction::FlagDelete,
                            old: Some(serde_json::to_value(old.flag).expect("flags serialize")),
                            new: None,
                            reason: None,
                        },
                    )?;
                    Ok(true)
                }
            })
            .await?;
        Ok(res)
    }

    /// One flag (`None` if it does not exist).
    pub async fn get_flag(&self, key: &str) -> Result<Option<FlagRecord>, FlagError> {
        let key = key.to_owned();
        let res = self
            .store
            .run(|tx| {
                let key = key.clone();
                async move { get_flag_in_tx(&tx, &key, FlagError::Corrupt).await }
            })
            .await?;
        Ok(res)
    }

    /// Every flag, in key order.
    pub async fn list(&self) -> Result<Vec<FlagRecord>, FlagError> {
        Ok(self.store.run(|tx| async move { list_in_tx(&tx).await }).await?)
    }

    /// A [`FlagSnapshot`]: every flag, segment and running rollout, consistent.
    pub async fn snapshot(&self) -> Result<FlagSnapshot, FlagError> {
        Ok(self
            .store
            .run(|tx| async move { snapshot_in_tx(&tx).await })
            .await?)
    }

    /// [`snapshot`](Self::snapshot) and a [`FlagsWatch`] registered in the same
    /// transaction: the watch fires on any change after the snapshot.
    pub async fn snapshot_and_watch(&self) -> Result<(FlagSnapshot, FlagsWatch), FlagError> {
        let res = self
            .store
            .run(|tx| async move {
                let snap = snapshot_in_tx(&tx).await?;
                let watch = tx.watch(&keys::changes())?;
                let seq = snap.seq;
                Ok::<_, TxError<FlagError>>((snap, FlagsWatch::new(seq, watch)))
            })
            .await?;
        Ok(res)
    }

    /// A [`FlagsWatch`] that resolves after the next change to flags, segments or
    /// rollout percentages, by any process sharing the global store.
    pub async fn watch_flags(&self) -> Result<FlagsWatch, FlagError> {
        Ok(FlagsWatch::open(&self.store, &keys::changes()).await?)
    }

    /// A page of the audit log (flags, segments, rollouts, content).
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, AuditError> {
        audit::read(&self.store, query).await
    }
}

/// A random id of one `set_flag`/`delete_flag` call, the same in every attempt.
fn new_op_id() -> [u8; 16] {
    rand::random()
}

/// The value of [`keys::last_op`]: op id, version written (0: deleted), time.
fn op_marker(op: &[u8; 16], version: u64, updated_ms: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(32);
    v.extend_from_slice(op);
    v.extend_from_slice(&version.to_be_bytes());
    v.extend_from_slice(&updated_ms.to_be_bytes());
    v
}

/// `(version, updated_ms)` if the flag's last set/delete was the call `op` (an
/// earlier attempt of this very call committed). Read in the transaction, so a
/// concurrent writer conflicts.
async fn own_last_op<T: Transaction>(
    tx: &T,
    key: &str,
    op: &[u8; 16],
) -> Result<Option<(u64, u64)>, TxError<FlagError>> {
    let Some(v) = tx.get(&keys::last_op(key)).await? else {
        return Ok(None);
    };
    if v.len() != 32 || v[..16] != op[..] {
        return Ok(None);
    }
    let num = |r: std::ops::Range<usize>| u64::from_be_bytes(v[r].try_into().expect("8 bytes"));
    Ok(Some((num(16..24), num(24..32))))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod rollout_tests;

#[cfg(test)]
mod rollout_machine_tests;

//! [`Rollouts`]: the store-backed driver of the pure rollout machine
//! ([`super::rollout`]).
//!
//! Each operation is one transaction that reads the rollout record (a read
//! conflict), runs the machine, and writes the new record, the flag's new rule
//! percentage, the flags change counter and the audit records together. So any
//! number of gateways may call [`Rollouts::tick`] at once: the first to commit a
//! transition wins, the others conflict, re-run against the new state, and find
//! nothing to do. Cohort statistics are read with snapshot reads, so the stream
//! of telemetry adds never conflicts with a tick.
//!
//! Every transition (start, tick, kill, promote) also records its call's random
//! op id with its report ([`keys::rollout_op`]): a rerun after an unknown
//! commit result that did commit finds it and returns the first attempt's
//! report instead of doing nothing (a tick), failing (a kill of a now finished
//! rollout) or doing it twice (a promote).
//!
//! Time is passed in (`now_ms`), never read here, so tests drive a fake clock.

use rand::RngCore;

use super::rollout::{Rollout, RolloutAction, RolloutPlan, RolloutState, MAX_LOOKBACK_MS};
use super::{active_rollout_in_tx, decode, encode, get_flag_in_tx, keys, ActiveRollout, RolloutError};
use crate::audit::{self, AuditAction, AuditRecord};
use crate::names::is_valid_actor;
use crate::store::{Store, Transaction, TxError};
use crate::telemetry::cohort::{clear_cohort_stats, read_cohort_stats};

/// The actor recorded for changes the controller makes by itself.
pub const CONTROLLER_ACTOR: &str = "rollout-controller";

/// What one tick did to one rollout.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TickReport {
    /// The rollout after the tick.
    pub rollout: Rollout,
    /// What changed (never empty in a report).
    pub actions: Vec<RolloutAction>,
}

/// An operator's action on a rollout.
#[derive(Debug, Clone, Copy)]
enum Op {
    Kill,
    Promote,
}

/// The rollout driver. Cheap to clone.
#[derive(Clone)]
pub struct Rollouts<S: Store> {
    store: S,
}

impl<S: Store> std::fmt::Debug for Rollouts<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollouts").finish_non_exhaustive()
    }
}

fn corrupt(m: String) -> RolloutError {
    RolloutError::Corrupt(m)
}

async fn get_in_tx<T: Transaction>(tx: &T, id: &str) -> Result<Option<Rollout>, TxError<RolloutError>> {
    match tx.get(&keys::rollout(id)).await? {
        Some(raw) => decode(&raw).map(Some).map_err(|e| TxError::User(corrupt(e))),
        None => Ok(None),
    }
}

/// A random id of one driver call, the same in every attempt of its
/// transaction.
type OpId = [u8; 16];

/// The report of call `op` if it is the rollout's last transition: an earlier
/// attempt of this very call committed though its result was unknown. Read in
/// the transaction, so a concurrent transition conflicts.
async fn own_op_in_tx<T: Transaction>(
    tx: &T,
    id: &str,
    op: &OpId,
) -> Result<Option<TickReport>, TxError<RolloutError>> {
    match tx.get(&keys::rollout_op(id)).await? {
        Some(v) if v.len() > 16 && v[..16] == op[..] => {
            decode(&v[16..]).map(Some).map_err(|e| TxError::User(corrupt(e)))
        }
        _ => Ok(None),
    }
}

/// Records `report` as the rollout's last transition, made by call `op`.
fn mark_op_in_tx<T: Transaction>(
    tx: &T,
    op: &OpId,
    report: &TickReport,
) -> Result<(), TxError<RolloutError>> {
    let mut v = op.to_vec();
    v.extend_from_slice(&encode(report));
    tx.set(&keys::rollout_op(&report.rollout.id), &v)?;
    Ok(())
}

fn stage_of(r: &Rollout) -> Option<usize> {
    match r.state {
        RolloutState::Running { stage, .. } => Some(stage),
        RolloutState::RolledBack { stage, .. } => Some(stage),
        _ => None,
    }
}

fn summary(r: &Rollout) -> serde_json::Value {
    serde_json::json!({
        "state": serde_json::to_value(&r.state).expect("states serialize"),
        "stage": stage_of(r),
        "percentage_bp": r.percentage_bp(),
    })
}

/// Writes `after` (whose machine produced `actions` from `before`): the record,
/// the flag's rule percentage, the change counter, the active pointer, the stats
/// cleanup and one audit record per action on the rollout and on the flag.
async fn apply_in_tx<T: Transaction>(
    tx: &T,
    before: &Rollout,
    after: &mut Rollout,
    actions: &[RolloutAction],
    actor: &str,
    now_ms: u64,
) -> Result<(), TxError<RolloutError>> {
    after.version = before.version + 1;
    tx.set(&keys::rollout(&after.id), &encode(&*after))?;
    for a in actions {
        if let RolloutAction::SetPercentage { to_bp, .. } = a {
            let Some(mut rec) = get_flag_in_tx(tx, &after.flag, corrupt).await? else {
                return Err(TxError::User(RolloutError::FlagNotFound(after.flag.clone())));
            };
            let Some(rule) = rec.flag.rules.iter_mut().find(|r| r.id == after.rule) else {
                return Err(TxError::User(RolloutError::RuleNotFound {
                    flag: after.flag.clone(),
                    rule: after.rule.clone(),
                }));
            };
            rule.percentage_bp = *to_bp;
            rec.version += 1;
            rec.updated_ms = now_ms;
            rec.updated_by = actor.to_owned();
            tx.set(&keys::flag(&after.flag), &encode(&rec))?;
            tx.atomic_add(&keys::changes(), 1)?;
        }
    }
    if !after.is_running() {
        tx.clear(&keys::active_rollout(&after.flag))?;
        clear_cohort_stats(tx, &after.id, u64::MAX)?;
    } else {
        clear_cohort_stats(tx, &after.id, now_ms.saturating_sub(2 * MAX_LOOKBACK_MS))?;
    }
    let mut seq = 0u16;
    for a in actions {
        let (action, reason) = match a {
            RolloutAction::SetPercentage { .. } => continue,
            RolloutAction::EnterStage { from, to } => (AuditAction::RolloutStage, format!("stage {from} -> {to}")),
            RolloutAction::Complete => (AuditAction::RolloutComplete, "last stage's dwell time is over".into()),
            RolloutAction::Kill { by } => (AuditAction::RolloutKill, format!("kill switch pulled by {by}")),
            RolloutAction::RollBack { stage, stats, excess_pp } => (
                AuditAction::RolloutRollback,
                format!(
                    "stage {stage}: cohort error rate {:.3}% ({}/{}) exceeds control {:.3}% ({}/{}) by {excess_pp:.3} pp",
                    stats.cohort.error_rate_pct(),
                    stats.cohort.errors,
                    stats.cohort.requests,
                    stats.control.error_rate_pct(),
                    stats.control.errors,
                    stats.control.requests,
                ),
            ),
        };
        for target in [format!("rollout:{}", after.id), format!("flag:{}", after.flag)] {
            audit::append(
                tx,
                seq,
                &AuditRecord {
                    actor: actor.to_owned(),
                    at_ms: now_ms,
                    target,
                    action,
                    old: Some(summary(before)),
                    new: Some(summary(after)),
                    reason: Some(reason.clone()),
                },
            )?;
            seq += 1;
        }
    }
    Ok(())
}

impl<S: Store> Rollouts<S> {
    /// The rollout driver on the global `store`.
    pub fn new(store: S) -> Self {
        Rollouts { store }
    }

    /// Starts a rollout of rule `rule` of flag `flag` with `plan` (validated
    /// first): sets the rule's percentage to the first stage's, records the
    /// rollout as the flag's running one, bumps the change counter and audits,
    /// in one transaction.
    ///
    /// Errors: [`RolloutError::InvalidPlan`], [`RolloutError::FlagNotFound`],
    /// [`RolloutError::RuleNotFound`], [`RolloutError::AlreadyActive`] (unless it
    /// is this very rollout, started by the same actor with the same plan: then
    /// it is returned, so a retried start is harmless).
    pub async fn start(
        &self,
        actor: &str,
        flag: &str,
        rule: &str,
        plan: RolloutPlan,
        now_ms: u64,
    ) -> Result<Rollout, RolloutError> {
        plan.validate()?;
        if !is_valid_actor(actor) {
            return Err(RolloutError::InvalidActor);
        }
        let (actor, flag, rule) = (actor.to_owned(), flag.to_owned(), rule.to_owned());
        // The same in every attempt: a rerun after an unknown commit result
        // that did commit finds its op marker.
        let op: OpId = rand::random();
        let mut raw = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut raw);
        let id = format!(
            "ro-{}",
            raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let start = Start {
            actor,
            flag,
            rule,
            plan,
            id,
            op,
            now_ms,
        };
        let res = self.store.run(|tx| start_in_tx(tx, start.clone())).await?;
        Ok(res)
    }

    /// One rollout (`None` if unknown).
    pub async fn get(&self, id: &str) -> Result<Option<Rollout>, RolloutError> {
        let id = id.to_owned();
        let res = self
            .store
            .run(|tx| {
                let id = id.clone();
                async move { get_in_tx(&tx, &id).await }
            })
            .await?;
        Ok(res)
    }

    /// Every running rollout, by flag key.
    pub async fn running(&self) -> Result<Vec<Rollout>, RolloutError> {
        let res = self
            .store
            .run(|tx| async move {
                let (b, e) = keys::active_rollouts().range();
                let mut out = Vec::new();
                for kv in tx.get_range(&b, &e, None, false).await? {
                    let a: ActiveRollout = decode(&kv.value).map_err(|e| TxError::User(corrupt(e)))?;
                    if let Some(r) = get_in_tx(&tx, &a.id).await? {
                        out.push(r);
                    }
                }
                Ok::<_, TxError<RolloutError>>(out)
            })
            .await?;
        Ok(res)
    }

    /// Runs the controller once for every running rollout at `now_ms` and
    /// returns the rollouts that changed. Call it periodically (every few
    /// seconds) from every gateway or from one dedicated process; concurrent
    /// ticks are safe.
    pub async fn tick(&self, now_ms: u64) -> Result<Vec<TickReport>, RolloutError> {
        let mut out = Vec::new();
        for r in self.running().await? {
            if let Some(report) = self.tick_one(&r.id, now_ms).await? {
                out.push(report);
            }
        }
        Ok(out)
    }

    /// Runs the controller once for rollout `id` at `now_ms`; `None` if nothing
    /// changed (or it is not running).
    pub async fn tick_one(&self, id: &str, now_ms: u64) -> Result<Option<TickReport>, RolloutError> {
        let id = id.to_owned();
        let op: OpId = rand::random();
        let res = self
            .store
            .run(|tx| {
                let id = id.clone();
                async move {
                    if let Some(done) = own_op_in_tx(&tx, &id, &op).await? {
                        return Ok(Some(done)); // an earlier attempt committed
                    }
                    let Some(before) = get_in_tx(&tx, &id).await? else {
                        return Err(TxError::User(RolloutError::NotFound(id)));
                    };
                    let stats = match before.stats_window(now_ms) {
                        Some((from, to)) => read_cohort_stats(&tx, &id, from, to).await?,
                        None => Default::default(),
                    };
                    let mut after = before.clone();
                    let actions = after.advance(now_ms, &stats);
                    if actions.is_empty() {
                        return Ok(None);
                    }
                    apply_in_tx(&tx, &before, &mut after, &actions, CONTROLLER_ACTOR, now_ms).await?;
                    let report = TickReport {
                        rollout: after,
                        actions,
                    };
                    mark_op_in_tx(&tx, &op, &report)?;
                    Ok(Some(report))
                }
            })
            .await?;
        Ok(res)
    }

    /// The kill switch: sets the rule's percentage to 0 at once and ends the
    /// rollout ([`RolloutState::Killed`]), audited as `actor`.
    pub async fn kill(&self, actor: &str, id: &str, now_ms: u64) -> Result<TickReport, RolloutError> {
        self.operator(actor, id, now_ms, Op::Kill).await
    }

    /// Moves the rollout to its next stage now (skipping the rest of the dwell
    /// time), audited as `actor`.
    pub async fn promote(&self, actor: &str, id: &str, now_ms: u64) -> Result<TickReport, RolloutError> {
        self.operator(actor, id, now_ms, Op::Promote).await
    }

    async fn operator(&self, actor: &str, id: &str, now_ms: u64, op: Op) -> Result<TickReport, RolloutError> {
        if !is_valid_actor(actor) {
            return Err(RolloutError::InvalidActor);
        }
        let (actor, id) = (actor.to_owned(), id.to_owned());
        let call: OpId = rand::random();
        let res = self
            .store
            .run(|tx| {
                let (actor, id) = (actor.clone(), id.clone());
                async move {
                    if let Some(done) = own_op_in_tx(&tx, &id, &call).await? {
                        return Ok(done); // an earlier attempt committed
                    }
                    let Some(before) = get_in_tx(&tx, &id).await? else {
                        return Err(TxError::User(RolloutError::NotFound(id)));
                    };
                    let mut after = before.clone();
                    let actions = match op {
                        Op::Kill => after.kill(now_ms, &actor),
                        Op::Promote => after.promote(now_ms),
                    }
                    .map_err(TxError::User)?;
                    apply_in_tx(&tx, &before, &mut after, &actions, &actor, now_ms).await?;
                    let report = TickReport {
                        rollout: after,
                        actions,
                    };
                    mark_op_in_tx(&tx, &call, &report)?;
                    Ok(report)
                }
            })
            .await?;
        Ok(res)
    }
}

/// A rollout start, the same in every attempt of its transaction.
#[derive(Clone)]
struct Start {
    actor: String,
    flag: String,
    rule: String,
    plan: RolloutPlan,
    /// The new rollout's id.
    id: String,
    op: OpId,
    now_ms: u64,
}

/// [`Rollouts::start`] inside its transaction.
async fn start_in_tx<T: Transaction>(tx: T, start: Start) -> Result<Rollout, TxError<RolloutError>> {
    let Start {
        actor,
        flag,
        rule,
        plan,
        id,
        op,
        now_ms,
    } = start;
    if let Some(done) = own_op_in_tx(&tx, &id, &op).await? {
        return Ok(done.rollout); // an earlier attempt committed
    }
    if let Some(active) = active_rollout_in_tx(&tx, &flag, corrupt).await? {
        let existing = get_in_tx(&tx, &active.id).await?;
        if let Some(ro) = existing {
            if ro.rule == rule && ro.plan == plan && ro.created_by == actor && ro.version == 1 {
                return Ok(ro);
            }
        }
        return Err(TxError::User(RolloutError::AlreadyActive {
            flag,
            rollout: active.id,
        }));
    }
    let Some(rec) = get_flag_in_tx(&tx, &flag, corrupt).await? else {
        return Err(TxError::User(RolloutError::FlagNotFound(flag)));
    };
    let Some(current) = rec.flag.rule(&rule) else {
        return Err(TxError::User(RolloutError::RuleNotFound { flag, rule }));
    };
    // `before` is the rule as it was, expressed as a finished rollout
    // at its old percentage, so the audit record shows old -> new.
    let mut before = Rollout::new(
        id.clone(),
        flag.clone(),
        rule.clone(),
        plan.clone(),
        actor.clone(),
        now_ms,
    );
    before.version = 0;
    let from_bp = current.percentage_bp;
    let mut after = before.clone();
    tx.set(
        &keys::active_rollout(&flag),
        &encode(&ActiveRollout {
            id: id.clone(),
            flag: flag.clone(),
            rule: rule.clone(),
        }),
    )?;
    let to_bp = after.percentage_bp();
    let actions = [RolloutAction::SetPercentage { from_bp, to_bp }];
    apply_in_tx(&tx, &before, &mut after, &actions, &actor, now_ms).await?;
    mark_op_in_tx(
        &tx,
        &op,
        &TickReport {
            rollout: after.clone(),
            actions: actions.to_vec(),
        },
    )?;
    for target in [format!("rollout:{id}"), format!("flag:{flag}")] {
        audit::append(
            &tx,
            if target.starts_with("rollout:") { 0 } else { 1 },
            &AuditRecord {
                actor: actor.clone(),
                at_ms: now_ms,
                target,
                action: AuditAction::RolloutStart,
                old: Some(serde_json::json!({ "percentage_bp": from_bp })),
                new: Some(serde_json::json!({
                    "rule": rule,
                    "plan": serde_json::to_value(&plan).expect("plans serialize"),
                    "stage": 0,
                    "percentage_bp": to_bp,
                })),
                reason: None,
            },
        )?;
    }
    Ok(after)
}

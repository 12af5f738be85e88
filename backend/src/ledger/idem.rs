//! The idempotency check inside a write's transaction (module docs of
//! [`super::super`], "Idempotency"): the receipt lookup and the duplicate
//! record.

use foundationdb_tuple::Versionstamp;

use super::super::errors::LedgerError;
use super::super::types::{decode_json, encode_json, DuplicateRecord, EventId, Receipt, StoredReceipt};
use super::super::{keys, now_ms};
use super::{Done, Plan, TxResult};
use crate::keyspace::RegionName;
use crate::store::{Transaction, TxError};

/// Looks up the idempotency key; for a duplicate, bumps its record and returns
/// the original receipt. A receipt written by this very call (`op`: an earlier
/// attempt whose commit result was unknown did commit) is returned as `Rerun`,
/// without counting a duplicate.
pub(super) async fn check_duplicate<T: Transaction>(
    tx: &T,
    region: &RegionName,
    plan: &Plan,
    op: &str,
) -> TxResult<Option<Done>> {
    let actor = &plan.sides[0].player;
    let sub = keys::idem(region, actor, &plan.idem);
    let (b, e) = sub.range();
    let Some(kv) = tx.get_range(&b, &e, Some(1), false).await?.into_iter().next() else {
        return Ok(None);
    };
    let (vs,): (Versionstamp,) = sub
        .unpack(&kv.key)
        .map_err(|_| TxError::User(LedgerError::Corrupt("undecodable receipt key".into())))?;
    let stored: StoredReceipt = decode_json(&kv.value, "receipt").map_err(TxError::User)?;
    if stored.fingerprint != plan.fingerprint {
        return Err(TxError::User(LedgerError::IdempotencyKeyReused(
            plan.idem.clone(),
        )));
    }
    let own = stored.op.as_deref() == Some(op);
    let stamp = vs
        .transaction_version()
        .try_into()
        .map_err(|_| TxError::User(LedgerError::Corrupt("short versionstamp".into())))?;
    let receipt = Receipt {
        event: EventId {
            gen: stored.gen,
            stamp,
        },
        kind: stored.kind,
        idempotency_key: plan.idem.clone(),
        changes: stored.changes,
        at_ms: stored.at_ms,
    };
    if own {
        return Ok(Some(Done::Rerun(receipt)));
    }
    let dup_key = keys::dup(region, actor, &plan.idem);
    let now = now_ms();
    let stored = match tx.get(&dup_key).await? {
        Some(raw) => {
            let mut r: StoredDuplicate = decode_json(&raw, "duplicate record").map_err(TxError::User)?;
            if r.ops.iter().any(|o| o == op) {
                // This call's own earlier attempt counted it (its commit result
                // was unknown): count it once.
                return Ok(Some(Done::Duplicate(receipt)));
            }
            r.record.count += 1;
            r.record.last_seen_ms = r.record.last_seen_ms.max(now);
            r
        }
        None => StoredDuplicate {
            record: DuplicateRecord {
                idempotency_key: plan.idem.clone(),
                count: 1,
                first_seen_ms: now,
                last_seen_ms: now,
            },
            ops: Vec::new(),
        },
    };
    let mut stored = stored;
    if stored.ops.len() >= DUPLICATE_OPS_KEPT {
        stored.ops.remove(0);
    }
    stored.ops.push(op.to_owned());
    tx.set(&dup_key, &encode_json(&stored))?;
    Ok(Some(Done::Duplicate(receipt)))
}

/// How many of the latest counted calls a duplicate record names (see
/// [`StoredDuplicate::ops`]).
const DUPLICATE_OPS_KEPT: usize = 16;

/// The stored duplicate record: the public [`DuplicateRecord`] (readers decode
/// just that and ignore the rest) and the op ids of the latest calls it
/// counted, so a call's rerun after an unknown commit result that did commit
/// is not counted twice, even when a few other duplicates of the same key
/// were counted in between.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredDuplicate {
    #[serde(flatten)]
    record: DuplicateRecord,
    /// Oldest first, at most [`DUPLICATE_OPS_KEPT`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ops: Vec<String>,
}

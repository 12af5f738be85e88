//! Retention of the audit log: records older than the retention are deleted,
//! oldest first, from both the log and the per-target index.
//!
//! The log is the live-ops audit trail (who changed which flag, rollout or
//! manifest). It grows with operator and controller actions, not with player
//! traffic, so it is small, but it never stopped growing; a studio keeps it for
//! a compliance window (default 400 days: a yearly review plus a month) and no
//! longer.
//!
//! # How a pass works
//!
//! [`collect`] reads one page of the log (commit order, so oldest first) with a
//! snapshot read and, in the same transaction, clears every record whose
//! `at_ms` is at or before the cutoff, under both keys (`log` and `tgt`, which
//! share the versionstamp). It stops at the first newer record: the log is in
//! commit order and `at_ms` is the writer's clock, so a record written by a
//! gateway whose clock ran behind may be kept a little past its time, never
//! deleted early relative to its commit neighbours. Clears are idempotent, so
//! a rerun after an unknown commit result, or two gateways collecting at once,
//! delete nothing twice and leave no half-deleted record (both keys go in one
//! transaction). A page is at most [`MAX_AUDIT_PAGE`]
//! records of bounded size: well inside FoundationDB's 10 MB and 5 s limits.

use crate::store::{Store, Transaction, TxError};

use super::{decode, keys, AuditError, MAX_AUDIT_PAGE};

/// What one [`collect`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditGcReport {
    /// Records deleted (from the log and the target index).
    pub collected: usize,
    /// Whether records at or before the cutoff may remain (the page was full
    /// of them): call again.
    pub more: bool,
    /// `at_ms` of the oldest record kept, if the page reached one.
    pub oldest_kept_ms: Option<u64>,
}

/// Deletes up to `page` records (1..=[`MAX_AUDIT_PAGE`]) written at or before
/// `cutoff_ms`, oldest first, in one transaction.
pub async fn collect<S: Store>(store: &S, cutoff_ms: u64, page: usize) -> Result<AuditGcReport, AuditError> {
    let limit = page.clamp(1, MAX_AUDIT_PAGE);
    let log = keys::audit_log();
    store
        .run(|tx| {
            let log = log.clone();
            async move {
                let (begin, end) = log.range();
                let rows = tx.get_range_snapshot(&begin, &end, Some(limit), false).await?;
                let mut report = AuditGcReport::default();
                for kv in &rows {
                    let record = decode(&kv.value).map_err(TxError::User)?;
                    if record.at_ms > cutoff_ms {
                        report.oldest_kept_ms = Some(record.at_ms);
                        return Ok(report);
                    }
                    let (stamp,): (foundationdb_tuple::Versionstamp,) = log
                        .unpack(&kv.key)
                        .map_err(|_| TxError::User(AuditError::Corrupt("undecodable audit key".into())))?;
                    tx.clear(&kv.key)?;
                    tx.clear(&keys::audit_by_target(&record.target).pack(&(stamp,)))?;
                    report.collected += 1;
                }
                report.more = rows.len() == limit;
                Ok::<_, TxError<AuditError>>(report)
            }
        })
        .await
        .map_err(AuditError::from)
}

#[cfg(test)]
mod tests {
    use super::super::{append, read, AuditAction, AuditQuery, AuditRecord};
    use super::*;
    use crate::store::testing::open_store;

    fn record(target: &str, at_ms: u64) -> AuditRecord {
        AuditRecord {
            actor: "ops".into(),
            at_ms,
            target: target.into(),
            action: AuditAction::FlagSet,
            old: None,
            new: Some(serde_json::json!({ "at": at_ms })),
            reason: None,
        }
    }

    #[tokio::test]
    async fn old_records_leave_the_log_and_the_target_index_newer_ones_stay() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = open_store(dir.path()).await?;
        // Ten records at t = 100..=1000, alternating between two targets, one
        // per transaction (commit order = time order, as in production). Each
        // transaction also writes a marker, as a service's change would, so a
        // rerun after an unknown commit result that applied appends nothing
        // twice (appends are versionstamped, hence never idempotent alone).
        for i in 1..=10u64 {
            let target = if i % 2 == 0 { "flag:even" } else { "flag:odd" };
            let r = record(target, i * 100);
            let marker = format!("test-marker-{i}").into_bytes();
            store
                .run(|tx| {
                    let (r, marker) = (r.clone(), marker.clone());
                    async move {
                        if tx.get(&marker).await?.is_none() {
                            tx.set(&marker, b"")?;
                            append(&tx, 0, &r)?;
                        }
                        Ok::<_, TxError<AuditError>>(())
                    }
                })
                .await?;
        }

        // Pages of 3: the first two passes are full of old records; the third
        // reaches the first record past the cutoff (600) and stops there.
        let mut total = 0;
        let mut passes = 0;
        loop {
            let r = collect(&store, 600, 3).await?;
            total += r.collected;
            passes += 1;
            if !r.more {
                assert_eq!(r.oldest_kept_ms, Some(700));
                break;
            }
        }
        // An unknown commit result that applied makes a rerun report the next
        // page instead, so the counts hold only outside fault mode; the state
        // checked below holds in both.
        if !crate::store::testing::faults_enabled() {
            assert_eq!((total, passes), (6, 3));
        }

        let all = read(&store, &AuditQuery::default()).await?;
        let times: Vec<u64> = all.iter().map(|e| e.record.at_ms).collect();
        assert_eq!(times, vec![700, 800, 900, 1000]);
        for (target, expect) in [("flag:even", vec![800, 1000]), ("flag:odd", vec![700, 900])] {
            let q = AuditQuery {
                target: Some(target.into()),
                ..Default::default()
            };
            let times: Vec<u64> = read(&store, &q).await?.iter().map(|e| e.record.at_ms).collect();
            assert_eq!(times, expect, "{target}'s index lost exactly its old records");
        }

        // Nothing left to collect: a pass changes nothing.
        let again = collect(&store, 600, 100).await?;
        assert_eq!((again.collected, again.more), (0, false));
        Ok(())
    }
}

//! The live-ops audit log: every change to a flag, a segment, a rollout or a
//! content manifest, with who, when, what, and the old and new values.
//!
//! Records are appended with versionstamped keys in the same transaction as the
//! change they describe (so a change and its record commit together or not at
//! all), under `("g", "audit", "log", stamp)` in commit order and again under
//! `("g", "audit", "tgt", target, stamp)` so one target's history is a single
//! range read. Appends never conflict with each other.
//!
//! A record's `old` / `new` are JSON snapshots of the changed object (a whole flag,
//! a rollout's percentage and state, a manifest summary), bounded by the size
//! limits of those objects, so a record always fits in one store value.
//!
//! Its own module (not part of `flags` or `content`): flags, segments, rollouts
//! and content all append to it, and none of them depends on another for it.
//! [`keys`] has the key schema.

pub mod keys;
pub mod retention;

use serde::{Deserialize, Serialize};

use crate::codec::{decode_v1, encode_v1};
use crate::error_class::{Classify, ErrorClass};
use crate::store::{Store, StoreError, Transaction, TxError};

/// Most records one [`read`] returns.
pub const MAX_AUDIT_PAGE: usize = 1000;

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A flag was created or replaced.
    FlagSet,
    /// A flag was deleted.
    FlagDelete,
    /// Players were added to a segment.
    SegmentAdd,
    /// Players were removed from a segment.
    SegmentRemove,
    /// A rollout was created and its first stage applied.
    RolloutStart,
    /// A rollout moved to another stage (by the controller or an operator).
    RolloutStage,
    /// The controller rolled a rollout back (health gate crossed).
    RolloutRollback,
    /// An operator pulled a rollout's kill switch.
    RolloutKill,
    /// A rollout finished its last stage.
    RolloutComplete,
    /// A content manifest version was published.
    ContentPublish,
    /// A record written by a newer version of this code.
    #[serde(other)]
    Unknown,
}

/// One change, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Who made the change (an operator name, `"rollout-controller"`, ...).
    pub actor: String,
    /// When (unix milliseconds, the writer's clock).
    pub at_ms: u64,
    /// What was changed: `flag:<key>`, `segment:<name>`, `rollout:<id>`,
    /// `content:<id>`.
    pub target: String,
    /// The kind of change.
    pub action: AuditAction,
    /// The value before (`None`: did not exist / not applicable).
    pub old: Option<serde_json::Value>,
    /// The value after (`None`: deleted / not applicable).
    pub new: Option<serde_json::Value>,
    /// Free-form reason (e.g. the error rates that triggered a rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The position of a record in the log: its 10-byte commit versionstamp and its
/// 2-byte order within the transaction. Ordered like the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuditId(pub [u8; 12]);

impl std::fmt::Display for AuditId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for AuditId {
    type Err = AuditError;
    fn from_str(s: &str) -> Result<Self, AuditError> {
        let bad = || AuditError::InvalidCursor(s.chars().take(32).collect());
        if s.len() != 24 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 12];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(AuditId(out))
    }
}

/// A record and its position.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Its position (use as the `after` cursor of the next page).
    pub id: AuditId,
    /// The record.
    pub record: AuditRecord,
}

/// Which records to read.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only records of this target (`flag:<key>`, `rollout:<id>`, ...); `None`: all.
    pub target: Option<String>,
    /// Only records after this one (the last id of the previous page).
    pub after: Option<AuditId>,
    /// Most records to return, 1..=[`MAX_AUDIT_PAGE`]; 0 means the maximum.
    pub limit: usize,
}

/// An error reading the audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A cursor that is not 24 hex characters.
    #[error("invalid audit cursor {0:?}")]
    InvalidCursor(String),
    /// A stored record that does not decode.
    #[error("corrupt audit record: {0}")]
    Corrupt(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TxError<AuditError>> for AuditError {
    fn from(e: TxError<AuditError>) -> Self {
        match e {
            TxError::Store(s) => AuditError::Store(s),
            TxError::User(u) => u,
        }
    }
}

impl Classify for AuditError {
    fn class(&self) -> ErrorClass {
        match self {
            AuditError::InvalidCursor(_) => ErrorClass::Invalid,
            AuditError::Corrupt(_) => ErrorClass::Internal,
            AuditError::Store(e) => e.class(),
        }
    }
}

/// Appends `record` in `tx`, as the `seq`-th record of this transaction (each
/// record of one transaction needs its own `seq`).
pub(crate) fn append<T: Transaction>(tx: &T, seq: u16, record: &AuditRecord) -> Result<(), StoreError> {
    let value = encode_v1(record);
    tx.set_versionstamped_key(&keys::versionstamped(&keys::audit_log(), seq), &value)?;
    tx.set_versionstamped_key(
        &keys::versionstamped(&keys::audit_by_target(&record.target), seq),
        &value,
    )?;
    Ok(())
}

fn decode(raw: &[u8]) -> Result<AuditRecord, AuditError> {
    decode_v1(raw).map_err(|e| AuditError::Corrupt(e.to_string()))
}

/// Reads one page of the audit log, oldest first.
pub async fn read<S: Store>(store: &S, query: &AuditQuery) -> Result<Vec<AuditEntry>, AuditError> {
    let limit = match query.limit {
        0 => MAX_AUDIT_PAGE,
        n => n.min(MAX_AUDIT_PAGE),
    };
    let sub = match &query.target {
        Some(t) => keys::audit_by_target(t),
        None => keys::audit_log(),
    };
    let (mut begin, end) = sub.range();
    if let Some(after) = query.after {
        let mut tv = [0u8; 10];
        tv.copy_from_slice(&after.0[..10]);
        let user = u16::from_be_bytes([after.0[10], after.0[11]]);
        let mut k = sub.pack(&(foundationdb_tuple::Versionstamp::complete(tv, user),));
        k.push(0);
        begin = k;
    }
    let rows = store
        .run(|tx| {
            let (begin, end) = (begin.clone(), end.clone());
            async move {
                Ok::<_, TxError<AuditError>>(tx.get_range_snapshot(&begin, &end, Some(limit), false).await?)
            }
        })
        .await?;
    rows.into_iter()
        .map(|kv| {
            let (vs,): (foundationdb_tuple::Versionstamp,) = sub
                .unpack(&kv.key)
                .map_err(|_| AuditError::Corrupt("undecodable key".into()))?;
            let mut id = [0u8; 12];
            id.copy_from_slice(vs.as_bytes());
            Ok(AuditEntry {
                id: AuditId(id),
                record: decode(&kv.value)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_hex() {
        let id = AuditId([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xab, 0xff]);
        let s = id.to_string();
        assert_eq!(s, "00010203040506070809abff");
        assert_eq!(s.parse::<AuditId>().unwrap(), id);
        assert!("zz".parse::<AuditId>().is_err());
        assert!("00010203040506070809abfg".parse::<AuditId>().is_err());
    }

    #[test]
    fn unknown_actions_decode() {
        let json = r#"{"actor":"a","at_ms":1,"target":"t","action":"from_the_future","old":null,"new":null}"#;
        let mut raw = vec![crate::codec::SCHEMA_V1];
        raw.extend_from_slice(json.as_bytes());
        assert_eq!(decode(&raw).unwrap().action, AuditAction::Unknown);
        assert!(decode(&[2, b'{', b'}']).is_err());
    }
}

//! One error accounting for every mode and every output: each operation a
//! virtual player attempts ends exactly once, as a success, an **error**, or
//! an **expected outcome** (a failure code the game handles as part of play:
//! a declined purchase, a compare-and-set conflict the player loop resolves by
//! re-reading, a match queue refused while the previous match is still open,
//! which the player retries at its next matchmaking action).
//!
//! The scenario decides which codes are expected (`[accounting] expected`);
//! everything else a player sees fail is an error, counts against
//! `slo.error_rate`, and appears, with the same numbers, in the progress
//! line, the console summary, `result.json` (`accounting`, `errors`,
//! `errors_by_op`, `totals.errors`) and the report's error table.
//!
//! ```toml
//! [accounting]
//! # "op:Code" (one operation) or "Code" (any operation); these are the defaults
//! expected = ["inventory_purchase:Conflict", "state_save:Conflict", "match_wait:Conflict", "match_wait:Cancelled"]
//! ```
//!
//! `expected = []` makes every failure an error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::Op;

/// The `[accounting]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountingSpec {
    /// Failure codes that are expected outcomes, not errors: `"op:Code"` for
    /// one operation (e.g. `"inventory_purchase:Conflict"`) or `"Code"` for
    /// any. Default: `inventory_purchase:Conflict` (balance too small),
    /// `state_save:Conflict` (another session wrote; the player re-reads the
    /// version), `match_wait:Conflict` (the previous match is still open; the
    /// player queues again at its next matchmaking action),
    /// `match_wait:Cancelled` (the player left the queue: its session ended
    /// or a storm dropped it).
    pub expected: Vec<String>,
}

impl Default for AccountingSpec {
    fn default() -> Self {
        AccountingSpec {
            expected: vec![
                "inventory_purchase:Conflict".into(),
                "state_save:Conflict".into(),
                "match_wait:Conflict".into(),
                "match_wait:Cancelled".into(),
            ],
        }
    }
}

impl AccountingSpec {
    /// Checks every entry names a known operation (if any) and a code.
    pub fn validate(&self) -> Result<(), String> {
        for e in &self.expected {
            // A lower-case prefix names an operation; codes are CamelCase
            // (and may contain `:` themselves, e.g. `Kicked:ServerBusy`).
            let code = match e.split_once(':') {
                Some((op, code))
                    if !op.is_empty() && op.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
                {
                    if !Op::ALL.iter().any(|o| o.name() == op) {
                        return Err(format!(
                            "accounting.expected {e:?}: unknown operation {op:?} (one of {})",
                            Op::ALL.map(Op::name).join(", ")
                        ));
                    }
                    code
                }
                _ => e.as_str(),
            };
            if code.is_empty() || code.len() > 64 || code.chars().any(char::is_whitespace) {
                return Err(format!(
                    "accounting.expected {e:?}: a code of 1..=64 characters without spaces"
                ));
            }
        }
        Ok(())
    }

    /// Whether `code` on `op` is an expected outcome.
    pub fn is_expected(&self, op: Op, code: &str) -> bool {
        self.expected.iter().any(|e| match e.split_once(':') {
            Some((o, c)) if Op::ALL.iter().any(|x| x.name() == o) => o == op.name() && c == code,
            _ => e == code,
        })
    }
}

/// How one operation's attempts ended (`result.json` `accounting.<op>`).
/// Always `attempts = ok + Σ errors + Σ outcomes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpAccount {
    /// Attempts that ended (successes, errors and outcomes).
    pub attempts: u64,
    /// Successes (the operation's histogram holds their latencies).
    pub ok: u64,
    /// Errors by code.
    pub errors: BTreeMap<String, u64>,
    /// Expected outcomes by code (see [`AccountingSpec`]).
    pub outcomes: BTreeMap<String, u64>,
}

impl OpAccount {
    /// Errors of every code.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Expected outcomes of every code.
    pub fn outcome_count(&self) -> u64 {
        self.outcomes.values().sum()
    }
}

/// `(op, code, count)` of every error (or outcome) of a ledger, the most
/// frequent first (ties by operation, then code).
pub fn ranked(ledger: &BTreeMap<String, OpAccount>, outcomes: bool) -> Vec<(String, String, u64)> {
    let mut v: Vec<(String, String, u64)> = ledger
        .iter()
        .flat_map(|(op, a)| {
            let m = if outcomes { &a.outcomes } else { &a.errors };
            m.iter().map(move |(c, n)| (op.clone(), c.clone(), *n))
        })
        .collect();
    v.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
    v
}

/// The `n` most frequent entries as `op/Code N`, comma separated.
pub fn top(ledger: &BTreeMap<String, OpAccount>, outcomes: bool, n: usize) -> String {
    ranked(ledger, outcomes)
        .into_iter()
        .take(n)
        .map(|(op, code, k)| format!("{op}/{code} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_by_op_or_code() {
        let s = AccountingSpec::default();
        assert!(s.is_expected(Op::InventoryPurchase, "Conflict"));
        assert!(s.is_expected(Op::MatchWait, "Conflict"));
        assert!(!s.is_expected(Op::InventoryGrant, "Conflict"));
        assert!(!s.is_expected(Op::InventoryPurchase, "NotFound"));
        let any = AccountingSpec {
            expected: vec!["ServerBusy".into()],
        };
        assert!(any.is_expected(Op::Login, "ServerBusy"));
        assert!(any.is_expected(Op::Echo, "ServerBusy"));
        assert!(!any.is_expected(Op::InventoryPurchase, "Conflict"));
        assert!(s.validate().is_ok() && any.validate().is_ok());
        let bad = |e: &str| {
            AccountingSpec {
                expected: vec![e.into()],
            }
            .validate()
            .unwrap_err()
        };
        assert!(bad("purchase:Conflict").contains("unknown operation"));
        assert!(bad("").contains("code"));
        assert!(bad("echo:").contains("code"));
    }

    #[test]
    fn ranking_is_most_frequent_first() {
        let mut l = BTreeMap::new();
        let mut a = OpAccount::default();
        a.errors.insert("NotFound".into(), 3);
        a.errors.insert("ClientTimeout".into(), 7);
        l.insert("echo".to_owned(), a);
        let mut b = OpAccount::default();
        b.errors.insert("ServerBusy".into(), 3);
        b.outcomes.insert("Conflict".into(), 9);
        l.insert("login".to_owned(), b);
        assert_eq!(top(&l, false, 2), "echo/ClientTimeout 7, echo/NotFound 3");
        assert_eq!(top(&l, true, 5), "login/Conflict 9");
    }
}

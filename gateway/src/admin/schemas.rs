//! OpenAPI schemas of the backend types that travel through the admin API
//! (flags, content manifests, rollout plans, ledger changes, transfer records,
//! audit records).
//!
//! Why mirrors: `outpost-backend` is the storage and game-logic layer and must
//! not depend on HTTP or documentation crates, so its types cannot derive
//! [`utoipa::ToSchema`]. Each type here copies the JSON form (serde attributes
//! included) of the backend type it names, and exists only to be described: the
//! handlers decode and encode the backend types themselves. The tests at the
//! bottom keep the copies honest: a backend value's JSON must decode into its
//! mirror (which refuses unknown fields) and encode back to the same JSON, and
//! the other way round, so a field added, renamed or retyped in the backend
//! fails here until the mirror (and so the document) follows.
//!
//! The one type not mirrored is `Rollout` (a rollout's state and statistics):
//! it is large, only ever read, and described as a JSON object with a pointer
//! to its Rust documentation.

#![allow(dead_code)] // Fields are read by serde and utoipa only.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `outpost_backend::flags::FlagValue`: a flag's value, tagged with its type.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub(crate) enum FlagValue {
    /// On / off.
    Bool(bool),
    /// A finite number.
    Number(f64),
    /// A string.
    String(String),
    /// Any JSON document (tuning tables, layouts, ...).
    Json(serde_json::Value),
}

/// `outpost_backend::flags::VersionRange`: client versions `min` (inclusive)
/// to `max` (exclusive), each `major.minor.patch`; either may be absent.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionRange {
    #[serde(default)]
    #[schema(example = "1.4.0")]
    min: Option<String>,
    #[serde(default)]
    #[schema(example = "2.0.0")]
    max: Option<String>,
}

/// `outpost_backend::flags::Conditions`: what a session must match for a rule
/// to apply (OR within a list, AND between conditions; empty matches all).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Conditions {
    /// Region names; empty: any region.
    #[serde(default)]
    regions: Vec<String>,
    /// Platforms (`pc`, `ps5`, `ios`, ...); empty: any.
    #[serde(default)]
    platforms: Vec<String>,
    /// Client versions; absent: any.
    #[serde(default)]
    client_version: Option<VersionRange>,
    /// Player segments (the player must be in one); empty: any player.
    #[serde(default)]
    segments: Vec<String>,
}

/// `outpost_backend::flags::Rule`: sessions matching `when` get `value` if
/// their player's bucket is below `percentage_bp`. First applicable rule wins.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rule {
    /// Unique within the flag; rollouts name the rule they drive.
    id: String,
    #[serde(default)]
    when: Conditions,
    value: FlagValue,
    /// Share of matching players, basis points 0..=10000 (default 10000).
    #[serde(default = "full_bp")]
    #[schema(default = 10000, maximum = 10000)]
    percentage_bp: u32,
}

fn full_bp() -> u32 {
    10_000
}

fn yes() -> bool {
    true
}

/// `outpost_backend::flags::Flag`: a feature flag. Every value (default and
/// rules) has the default's type.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Flag {
    /// 1..=64 bytes of `[a-z0-9_.-]`; must equal the path's key on `PUT /flags/{key}`.
    key: String,
    #[serde(default)]
    description: String,
    /// Served when no rule applies, and to everyone while disabled.
    default: FlagValue,
    #[serde(default)]
    rules: Vec<Rule>,
    /// `false` is the kill switch: everyone gets `default`. Default `true`.
    #[serde(default = "yes")]
    #[schema(default = true)]
    enabled: bool,
}

/// `outpost_backend::flags::FlagRecord`: a stored flag with its version and
/// last change.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlagRecord {
    flag: Flag,
    /// 1 after creation, +1 per change (the `expected_version` of a compare-and-set).
    version: u64,
    /// Unix milliseconds.
    updated_ms: u64,
    updated_by: String,
}

/// `outpost_backend::content::Asset`: one downloadable asset of a content version.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContentAsset {
    /// `https://` or `http://` (typically a CDN).
    url: String,
    /// SHA-256 of the bytes, 64 lowercase hex characters.
    sha256: String,
    size: u64,
}

/// `outpost_backend::content::ContentManifest`: an immutable, versioned content
/// manifest.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContentManifest {
    /// 1..=64 bytes of `[a-z0-9_.-]`.
    id: String,
    /// ≥ 1, higher than the last published version of `id`.
    version: u64,
    /// Oldest client build that can use it, `major.minor.patch`.
    #[schema(example = "1.2.0")]
    min_client_version: String,
    assets: Vec<ContentAsset>,
}

/// `outpost_backend::content::PublishedManifest`: a manifest and who published
/// it when.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishedManifest {
    manifest: ContentManifest,
    /// Unix milliseconds.
    published_ms: u64,
    published_by: String,
}

/// `outpost_backend::flags::HealthGate`: roll back when the cohort's error rate
/// exceeds the control's by more than `max_excess_error_pp`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthGate {
    /// Percentage points, 0..=100.
    max_excess_error_pp: f64,
    /// Requests each group needs before the gate decides (default 100).
    #[serde(default = "default_min_samples")]
    #[schema(default = 100)]
    min_samples: u64,
    /// Look-back window, 10 s..=1 h in milliseconds (default 300000).
    #[serde(default = "default_lookback_ms")]
    #[schema(default = 300000)]
    lookback_ms: u64,
}

fn default_min_samples() -> u64 {
    100
}

fn default_lookback_ms() -> u64 {
    300_000
}

/// `outpost_backend::flags::Stage`: one stage of a rollout plan.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Stage {
    /// The rule's percentage during this stage, basis points 1..=10000.
    percentage_bp: u32,
    /// Minimum time at this stage, milliseconds (≤ 30 days).
    min_dwell_ms: u64,
    /// Not allowed at 10000 (no control group).
    #[serde(default)]
    gate: Option<HealthGate>,
}

/// `outpost_backend::flags::RolloutPlan`: 1..=16 stages with non-decreasing
/// percentages.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RolloutPlan {
    stages: Vec<Stage>,
}

/// `outpost_backend::flags::Rollout`, described only as an object: its id,
/// flag, rule, plan, state (`{"state": "running" | "completed" | ...}`) and
/// cohort statistics. See the Rust documentation of that type for every field.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(value_type = Object)]
pub(crate) struct Rollout(serde_json::Value);

/// `outpost_backend::audit::AuditAction`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AuditAction {
    FlagSet,
    FlagDelete,
    SegmentAdd,
    SegmentRemove,
    RolloutStart,
    RolloutStage,
    RolloutRollback,
    RolloutKill,
    RolloutComplete,
    ContentPublish,
    /// Written by a newer version of the gateway.
    Unknown,
}

/// `outpost_backend::audit::AuditRecord`: one live-ops change.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditRecord {
    /// Who made the change (an operator's `actor`, `rollout-controller`, ...).
    actor: String,
    /// Unix milliseconds.
    at_ms: u64,
    /// `flag:<key>`, `segment:<name>`, `rollout:<id>` or `content:<id>`.
    target: String,
    action: AuditAction,
    /// The value before (null: did not exist).
    #[schema(value_type = Option<Object>)]
    old: Option<serde_json::Value>,
    /// The value after (null: deleted).
    #[schema(value_type = Option<Object>)]
    new: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// `outpost_backend::ledger::AssetKind`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AssetKind {
    Item,
    Currency,
}

/// `outpost_backend::ledger::Asset`: an item or currency by catalog id.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Asset {
    kind: AssetKind,
    id: String,
}

/// `outpost_backend::ledger::Quantity`: a positive amount of one asset.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Quantity {
    asset: Asset,
    #[schema(minimum = 1)]
    amount: u64,
}

/// `outpost_backend::ledger::Change`: a signed change of one balance.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Change {
    asset: Asset,
    /// Positive adds, negative removes; never 0.
    delta: i64,
}

/// `outpost_backend::ledger::DuplicateRecord`: how often an idempotency key was
/// seen again after it was applied.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DuplicateRecord {
    idempotency_key: String,
    /// Duplicates seen, not counting the original.
    count: u64,
    /// Unix milliseconds.
    first_seen_ms: u64,
    /// Unix milliseconds.
    last_seen_ms: u64,
}

/// `outpost_backend::transfer::TransferStep`: the last completed step.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TransferStep {
    Started,
    SourceFenced,
    Copied,
    HomeSwitched,
    SourceCleared,
    Done,
}

/// `outpost_backend::transfer::TransferRecord`: a cross-region transfer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TransferRecord {
    /// 32 lowercase hex characters.
    id: String,
    player: String,
    /// Source region.
    from: String,
    /// Destination region.
    to: String,
    step: TransferStep,
    /// Unix seconds.
    created_unix: u64,
    /// Unix seconds.
    updated_unix: u64,
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use serde_json::{json, Value};

    use super::*;

    /// `sample` decodes as backend type `B` and as mirror `M`, and both encode
    /// it to the same JSON.
    fn same_shape<B: Serialize + DeserializeOwned, M: Serialize + DeserializeOwned>(sample: Value) {
        let name = std::any::type_name::<M>();
        let backend: B =
            serde_json::from_value(sample.clone()).unwrap_or_else(|e| panic!("{name}: backend: {e}"));
        let backend = serde_json::to_value(backend).unwrap();
        let mirror: M = serde_json::from_value(backend.clone())
            .unwrap_or_else(|e| panic!("{name}: the mirror refuses the backend's JSON: {e}\n{backend}"));
        assert_eq!(serde_json::to_value(mirror).unwrap(), backend, "{name}");
        let mirror: M = serde_json::from_value(sample).unwrap();
        let mirror = serde_json::to_value(mirror).unwrap();
        let back: B = serde_json::from_value(mirror.clone())
            .unwrap_or_else(|e| panic!("{name}: the backend refuses the mirror's JSON: {e}\n{mirror}"));
        assert_eq!(serde_json::to_value(back).unwrap(), backend, "{name}");
    }

    fn flag() -> Value {
        json!({
            "key": "new-shop", "description": "the new shop",
            "default": {"type": "bool", "value": false},
            "rules": [
                {"id": "beta", "when": {"regions": ["eu"], "platforms": ["pc"],
                  "client_version": {"min": "1.2.0", "max": "2.0.0"}, "segments": ["testers"]},
                 "value": {"type": "bool", "value": true}, "percentage_bp": 2500},
                {"id": "json", "value": {"type": "json", "value": {"a": [1, 2]}}},
                {"id": "n", "value": {"type": "number", "value": 1.5}},
                {"id": "s", "value": {"type": "string", "value": "x"}, "when": {"client_version": {}}}
            ],
            "enabled": false
        })
    }

    #[test]
    fn live_ops_mirrors_match_the_backend() {
        use outpost_backend::{content, flags};
        same_shape::<flags::Flag, Flag>(flag());
        same_shape::<flags::FlagRecord, FlagRecord>(
            json!({"flag": flag(), "version": 3, "updated_ms": 5, "updated_by": "alice"}),
        );
        let manifest = json!({"id": "maps", "version": 2, "min_client_version": "1.2.3",
            "assets": [{"url": "https://cdn/x", "sha256": "ab".repeat(32), "size": 10}]});
        same_shape::<content::ContentManifest, ContentManifest>(manifest.clone());
        same_shape::<content::PublishedManifest, PublishedManifest>(
            json!({"manifest": manifest, "published_ms": 1, "published_by": "bob"}),
        );
        same_shape::<flags::RolloutPlan, RolloutPlan>(json!({"stages": [
            {"percentage_bp": 100, "min_dwell_ms": 60000,
             "gate": {"max_excess_error_pp": 2.0, "min_samples": 10, "lookback_ms": 20000}},
            {"percentage_bp": 5000, "min_dwell_ms": 0, "gate": {"max_excess_error_pp": 1.0}},
            {"percentage_bp": 10000, "min_dwell_ms": 0}
        ]}));
        for (reason, action) in [(Some("gate crossed"), "rollout_rollback"), (None, "flag_set")] {
            same_shape::<outpost_backend::audit::AuditRecord, AuditRecord>(json!({
                "actor": "alice", "at_ms": 7, "target": "flag:new-shop", "action": action,
                "old": null, "new": flag(), "reason": reason,
            }));
        }
    }

    #[test]
    fn inventory_and_transfer_mirrors_match_the_backend() {
        use outpost_backend::{ledger, transfer};
        let gold = json!({"kind": "currency", "id": "gold"});
        let sword = json!({"kind": "item", "id": "sword"});
        same_shape::<ledger::Change, Change>(json!({"asset": gold, "delta": -5}));
        same_shape::<ledger::Quantity, Quantity>(json!({"asset": sword, "amount": 2}));
        same_shape::<ledger::DuplicateRecord, DuplicateRecord>(
            json!({"idempotency_key": "k", "count": 2, "first_seen_ms": 1, "last_seen_ms": 9}),
        );
        for step in [
            "started",
            "source_fenced",
            "copied",
            "home_switched",
            "source_cleared",
            "done",
        ] {
            same_shape::<transfer::TransferRecord, TransferRecord>(json!({
                "id": "0".repeat(32), "player": "p1", "from": "eu", "to": "us",
                "step": step, "created_unix": 1, "updated_unix": 2,
            }));
        }
    }
}

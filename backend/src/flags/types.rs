//! Feature flags' plain types, their bounds and validation.
//!
//! A flag is written and read as JSON (the admin API takes it as is); unknown
//! fields are refused, so a typo in a rule (`"region"` for `"regions"`) is an
//! error instead of a rule that silently matches everyone.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::errors::FlagError;
use crate::content::ClientVersion;
use crate::keyspace::RegionName;
use crate::names::{is_valid_name, truncate};
pub use crate::names::{is_valid_platform, MAX_PLATFORM_BYTES};

/// A percentage in basis points: 10,000 = 100 %.
pub const FULL_BP: u32 = 10_000;
/// Most rules per flag.
pub const MAX_RULES: usize = 64;
/// Most entries in one condition list (regions, platforms, segments).
pub const MAX_CONDITION_ENTRIES: usize = 64;
/// Longest flag description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;
/// Largest JSON encoding of a whole flag, in bytes (an audit record holds two).
pub const MAX_FLAG_BYTES: usize = 32 * 1024;
/// Most flags (the gateway holds all of them; [`list`](super::Flags::list) reads
/// them in one transaction).
pub const MAX_FLAGS: usize = 1000;

/// A flag's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum FlagValue {
    /// On / off.
    Bool(bool),
    /// A finite number.
    Number(f64),
    /// A string.
    String(String),
    /// Any JSON document (tuning tables, layouts, ...).
    Json(serde_json::Value),
}

/// The type of a [`FlagValue`]; every value of one flag has the same type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagType {
    /// [`FlagValue::Bool`].
    Bool,
    /// [`FlagValue::Number`].
    Number,
    /// [`FlagValue::String`].
    String,
    /// [`FlagValue::Json`].
    Json,
}

impl FlagValue {
    /// Its type.
    pub fn flag_type(&self) -> FlagType {
        match self {
            FlagValue::Bool(_) => FlagType::Bool,
            FlagValue::Number(_) => FlagType::Number,
            FlagValue::String(_) => FlagType::String,
            FlagValue::Json(_) => FlagType::Json,
        }
    }
}

/// A client version range: `min` inclusive, `max` exclusive; either may be absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionRange {
    /// Lowest matching version (inclusive); `None`: no lower bound.
    #[serde(default)]
    pub min: Option<ClientVersion>,
    /// First version that no longer matches (exclusive); `None`: no upper bound.
    #[serde(default)]
    pub max: Option<ClientVersion>,
}

impl VersionRange {
    /// Whether `v` is in the range.
    pub fn contains(&self, v: ClientVersion) -> bool {
        self.min.is_none_or(|min| v >= min) && self.max.is_none_or(|max| v < max)
    }
}

/// What a session must match for a rule to apply. Every non-empty list must
/// contain the session's value (lists are OR within, conditions are AND between);
/// an empty list or an absent range matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// Regions (region names); empty: any region.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Platforms (`pc`, `ps5`, `ios`, ...: `[a-z0-9_-]`, 1..=32 bytes); empty: any.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// Client versions; absent: any.
    #[serde(default)]
    pub client_version: Option<VersionRange>,
    /// Player segments: the player must be in at least one; empty: any player.
    #[serde(default)]
    pub segments: Vec<String>,
}

/// One targeting rule: sessions matching `when` get `value`, if their player's
/// bucket is below `percentage_bp`. Rules are tried in order; the first that
/// applies wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The rule's id, unique within the flag (rollouts name the rule they drive).
    pub id: String,
    /// The conditions.
    #[serde(default)]
    pub when: Conditions,
    /// The value served when the rule applies.
    pub value: FlagValue,
    /// Share of matching players the rule applies to, in basis points (0..=10,000;
    /// default 10,000 = everyone). A player is in if `bucket(flag, player) <
    /// percentage_bp`, so raising it only adds players. While a rollout drives
    /// this rule, the rollout owns this number.
    #[serde(default = "full_bp")]
    pub percentage_bp: u32,
}

fn full_bp() -> u32 {
    FULL_BP
}

fn yes() -> bool {
    true
}

/// A feature flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flag {
    /// Key: 1..=64 bytes of `[a-z0-9_.-]`.
    pub key: String,
    /// What it is for (shown to operators).
    #[serde(default)]
    pub description: String,
    /// Served when no rule applies, and to everyone while the flag is disabled.
    /// Its type is the flag's type.
    pub default: FlagValue,
    /// Targeting rules, first applicable wins.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// `false` is the flag's kill switch: every session gets `default`, whatever
    /// the rules say. Default `true`.
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// A stored flag with its version and last change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagRecord {
    /// The flag.
    pub flag: Flag,
    /// 1 after creation, +1 per change (compare-and-set with
    /// [`Flags::set_flag`](super::Flags::set_flag)).
    pub version: u64,
    /// When it last changed (unix milliseconds).
    pub updated_ms: u64,
    /// Who changed it last.
    pub updated_by: String,
}

fn invalid(key: &str, field: &str, msg: String) -> FlagError {
    FlagError::InvalidFlag {
        key: truncate(key, 64),
        field: field.to_owned(),
        reason: msg,
    }
}

fn check_value(key: &str, field: &str, v: &FlagValue, ty: FlagType) -> Result<(), FlagError> {
    if v.flag_type() != ty {
        return Err(invalid(
            key,
            field,
            format!(
                "the value is {:?} but the flag's default is {:?}",
                v.flag_type(),
                ty
            ),
        ));
    }
    if let FlagValue::Number(n) = v {
        if !n.is_finite() {
            return Err(invalid(key, field, "not a finite number".into()));
        }
    }
    Ok(())
}

fn check_list(key: &str, field: &str, list: &[String], ok: impl Fn(&str) -> bool) -> Result<(), FlagError> {
    if list.len() > MAX_CONDITION_ENTRIES {
        return Err(invalid(
            key,
            field,
            format!("{} entries, limit {MAX_CONDITION_ENTRIES}", list.len()),
        ));
    }
    let mut seen = HashSet::new();
    for (i, item) in list.iter().enumerate() {
        if !ok(item) {
            return Err(invalid(
                key,
                &format!("{field}[{i}]"),
                format!("invalid entry {:?}", truncate(item, 64)),
            ));
        }
        if !seen.insert(item) {
            return Err(invalid(
                key,
                &format!("{field}[{i}]"),
                format!("duplicate entry {item:?}"),
            ));
        }
    }
    Ok(())
}

impl Flag {
    /// Checks every rule: key and rule id form, unique rule ids, one value type,
    /// finite numbers, percentages ≤ 10,000, valid region / platform / segment
    /// names, non-empty version ranges, and the size bounds.
    pub fn validate(&self) -> Result<(), FlagError> {
        let key = &self.key;
        if !is_valid_name(key) {
            return Err(invalid(
                key,
                "key",
                "use 1..=64 bytes of a-z, 0-9, '_', '-', '.'".into(),
            ));
        }
        if self.description.len() > MAX_DESCRIPTION_BYTES {
            return Err(invalid(
                key,
                "description",
                format!("longer than {MAX_DESCRIPTION_BYTES} bytes"),
            ));
        }
        let ty = self.default.flag_type();
        check_value(key, "default", &self.default, ty)?;
        if self.rules.len() > MAX_RULES {
            return Err(invalid(
                key,
                "rules",
                format!("{} rules, limit {MAX_RULES}", self.rules.len()),
            ));
        }
        let mut ids = HashSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let id = &rule.id;
            let at = |f: &str| format!("rules[{i}].{f}");
            if !is_valid_name(id) {
                return Err(invalid(
                    key,
                    &at("id"),
                    format!(
                        "{:?}: use 1..=64 bytes of a-z, 0-9, '_', '-', '.'",
                        truncate(id, 64)
                    ),
                ));
            }
            if !ids.insert(id) {
                return Err(invalid(key, &at("id"), format!("duplicate rule id {id:?}")));
            }
            check_value(key, &at("value"), &rule.value, ty)?;
            if rule.percentage_bp > FULL_BP {
                return Err(invalid(
                    key,
                    &at("percentage_bp"),
                    format!(
                        "rule {id}: {} is over {FULL_BP} (basis points: {FULL_BP} = 100 %)",
                        rule.percentage_bp
                    ),
                ));
            }
            let w = &rule.when;
            check_list(key, &at("when.regions"), &w.regions, |r| {
                RegionName::new(r).is_ok()
            })?;
            check_list(key, &at("when.platforms"), &w.platforms, is_valid_platform)?;
            check_list(key, &at("when.segments"), &w.segments, is_valid_name)?;
            if let Some(VersionRange {
                min: Some(min),
                max: Some(max),
            }) = &w.client_version
            {
                if min >= max {
                    return Err(invalid(
                        key,
                        &at("when.client_version"),
                        format!("rule {id}: range [{min}, {max}) is empty (min is inclusive, max exclusive)"),
                    ));
                }
            }
        }
        let size = serde_json::to_vec(self).map(|v| v.len()).unwrap_or(usize::MAX);
        if size > MAX_FLAG_BYTES {
            return Err(invalid(
                key,
                "(whole flag)",
                format!("encoded flag is {size} bytes, limit {MAX_FLAG_BYTES}"),
            ));
        }
        Ok(())
    }

    /// The rule with id `id`.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag() -> Flag {
        serde_json::from_value(serde_json::json!({
            "key": "new_shop",
            "default": {"type": "bool", "value": false},
            "rules": [
                {"id": "qa", "when": {"segments": ["qa"]}, "value": {"type": "bool", "value": true}},
                {"id": "eu-pc", "when": {"regions": ["eu-west"], "platforms": ["pc"],
                  "client_version": {"min": "1.2.0", "max": "2.0.0"}},
                 "value": {"type": "bool", "value": true}, "percentage_bp": 1000}
            ]
        }))
        .expect("valid JSON flag")
    }

    #[test]
    fn json_form_and_defaults() {
        let f = flag();
        assert!(f.enabled);
        assert_eq!(f.rules[0].percentage_bp, FULL_BP);
        assert_eq!(f.rules[1].percentage_bp, 1000);
        f.validate().expect("valid");
        let back: Flag = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back, f);
        // A typo in a condition is an error, not a match-everything rule.
        let typo = serde_json::json!({
            "key": "k", "default": {"type": "bool", "value": false},
            "rules": [{"id": "r", "when": {"region": ["eu"]}, "value": {"type": "bool", "value": true}}]
        });
        assert!(serde_json::from_value::<Flag>(typo).is_err());
    }

    #[test]
    fn validation_catches_each_rule() {
        type Mutation = Box<dyn Fn(&mut Flag)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("key", Box::new(|f| f.key = "New Shop".into())),
            ("type", Box::new(|f| f.rules[0].value = FlagValue::Number(1.0))),
            (
                "nan default",
                Box::new(|f| f.default = FlagValue::Number(f64::NAN)),
            ),
            ("dup rule", Box::new(|f| f.rules[1].id = "qa".into())),
            ("rule id", Box::new(|f| f.rules[1].id = String::new())),
            ("pct", Box::new(|f| f.rules[1].percentage_bp = FULL_BP + 1)),
            (
                "region",
                Box::new(|f| f.rules[1].when.regions = vec!["EU West".into()]),
            ),
            (
                "platform",
                Box::new(|f| f.rules[1].when.platforms = vec!["P C".into()]),
            ),
            (
                "dup platform",
                Box::new(|f| f.rules[1].when.platforms = vec!["pc".into(), "pc".into()]),
            ),
            (
                "segment",
                Box::new(|f| f.rules[0].when.segments = vec!["".into()]),
            ),
            (
                "range",
                Box::new(|f| {
                    f.rules[1].when.client_version = Some(VersionRange {
                        min: Some(ClientVersion::new(2, 0, 0)),
                        max: Some(ClientVersion::new(2, 0, 0)),
                    })
                }),
            ),
            (
                "description",
                Box::new(|f| f.description = "x".repeat(MAX_DESCRIPTION_BYTES + 1)),
            ),
            (
                "size",
                Box::new(|f| {
                    f.default = FlagValue::Json(serde_json::json!("x".repeat(MAX_FLAG_BYTES)));
                    for r in &mut f.rules {
                        r.value = f.default.clone();
                    }
                }),
            ),
        ];
        for (name, mutate) in cases {
            let mut f = flag();
            mutate(&mut f);
            assert!(
                matches!(f.validate(), Err(FlagError::InvalidFlag { .. })),
                "{name}"
            );
        }
        // The error names where in the JSON form the problem is.
        let field_of = |mutate: &dyn Fn(&mut Flag)| {
            let mut f = flag();
            mutate(&mut f);
            match f.validate() {
                Err(FlagError::InvalidFlag { field, .. }) => field,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(field_of(&|f| f.key.clear()), "key");
        assert_eq!(
            field_of(&|f| f.rules[1].percentage_bp = FULL_BP + 1),
            "rules[1].percentage_bp"
        );
        assert_eq!(
            field_of(&|f| f.rules[0].value = FlagValue::Number(1.0)),
            "rules[0].value"
        );
        assert_eq!(
            field_of(&|f| f.rules[1].when.platforms = vec!["pc".into(), "P C".into()]),
            "rules[1].when.platforms[1]"
        );
    }

    #[test]
    fn version_ranges() {
        let r = VersionRange {
            min: Some(ClientVersion::new(1, 2, 0)),
            max: Some(ClientVersion::new(2, 0, 0)),
        };
        assert!(r.contains(ClientVersion::new(1, 2, 0)));
        assert!(r.contains(ClientVersion::new(1, 99, 0)));
        assert!(!r.contains(ClientVersion::new(2, 0, 0)));
        assert!(!r.contains(ClientVersion::new(1, 1, 9)));
        let open = VersionRange { min: None, max: None };
        assert!(open.contains(ClientVersion::new(0, 0, 0)));
    }
}

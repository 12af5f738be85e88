//! Flag evaluation: a pure function of a flag and a session's context.
//!
//! # Buckets
//!
//! A player's bucket for a flag is
//! `u64::from_be_bytes(SHA-256("outpost/flag-bucket/v1" 0x00 flag_key 0x00 player)[..8]) % 10_000`.
//! A rule with `percentage_bp = p` applies to the players whose bucket is below
//! `p`, so:
//!
//! - the same player gets the same answer on every gateway, every login, every
//!   process restart (no state, no randomness);
//! - raising the percentage only adds players: a player in at 10 % is still in at
//!   50 % (cohorts are monotonic), and lowering it removes the most recently added
//!   first;
//! - different flags bucket independently (the key is hashed in), so the 10 % of
//!   one flag are not the 10 % of another.
//!
//! SHA-256 rather than a faster non-cryptographic hash: the bucket is computed
//! once per (session, flag) at login and on change, a few hundred nanoseconds,
//! and its distribution is uniform without caveats. The modulo bias of 2^64 mod
//! 10,000 is below 10^-15.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use super::types::{Conditions, Flag, FlagValue, FULL_BP};
use crate::content::ClientVersion;
use crate::telemetry::Cohort;

/// Everything evaluation looks at for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalContext {
    /// The player id.
    pub player: String,
    /// The region serving the session.
    pub region: String,
    /// The client's platform (`pc`, `ps5`, ...).
    pub platform: String,
    /// The client's build version.
    pub client_version: ClientVersion,
    /// The segments the player is in (see
    /// [`FlagSnapshot::context`](super::FlagSnapshot::context)).
    pub segments: BTreeSet<String>,
}

/// Why evaluation returned what it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason<'a> {
    /// The flag is disabled (kill switch): its default.
    Disabled,
    /// This rule applied.
    Rule(&'a str),
    /// No rule applied: the default.
    Default,
}

/// The bucket of `player` for `flag_key`, in `0..10_000` (see the module docs).
pub fn bucket(flag_key: &str, player: &str) -> u32 {
    let mut h = Sha256::new();
    h.update(b"outpost/flag-bucket/v1\0");
    h.update(flag_key.as_bytes());
    h.update([0u8]);
    h.update(player.as_bytes());
    let d = h.finalize();
    let n = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
    (n % u64::from(FULL_BP)) as u32
}

/// Whether `player` is inside `percentage_bp` of `flag_key`.
pub fn in_percentage(flag_key: &str, player: &str, percentage_bp: u32) -> bool {
    percentage_bp >= FULL_BP || bucket(flag_key, player) < percentage_bp
}

impl Conditions {
    /// Whether the session matches every condition.
    pub fn matches(&self, ctx: &EvalContext) -> bool {
        (self.regions.is_empty() || self.regions.contains(&ctx.region))
            && (self.platforms.is_empty() || self.platforms.contains(&ctx.platform))
            && self
                .client_version
                .as_ref()
                .is_none_or(|r| r.contains(ctx.client_version))
            && (self.segments.is_empty() || self.segments.iter().any(|s| ctx.segments.contains(s)))
    }
}

/// Evaluates `flag` for a session, and says why.
pub fn evaluate_detailed<'a>(flag: &'a Flag, ctx: &EvalContext) -> (&'a FlagValue, Reason<'a>) {
    if !flag.enabled {
        return (&flag.default, Reason::Disabled);
    }
    for rule in &flag.rules {
        if rule.when.matches(ctx) && in_percentage(&flag.key, &ctx.player, rule.percentage_bp) {
            return (&rule.value, Reason::Rule(&rule.id));
        }
    }
    (&flag.default, Reason::Default)
}

/// Evaluates `flag` for a session: the value of the first rule that matches the
/// session and whose percentage includes the player, else the default; the
/// default for everyone while the flag is disabled.
pub fn evaluate(flag: &Flag, ctx: &EvalContext) -> FlagValue {
    evaluate_detailed(flag, ctx).0.clone()
}

/// Evaluates every flag for a session: flag key → value.
pub fn evaluate_all<'a>(
    flags: impl IntoIterator<Item = &'a Flag>,
    ctx: &EvalContext,
) -> BTreeMap<String, FlagValue> {
    flags
        .into_iter()
        .map(|f| (f.key.clone(), evaluate(f, ctx)))
        .collect()
}

/// Which side of a rollout of rule `rule_id` the session is on, if any: `None`
/// when the flag is disabled, when an earlier rule already decided the session's
/// value, or when the session does not match the rule's conditions (then it is
/// in neither group and its telemetry does not count for the rollout).
pub fn cohort(flag: &Flag, rule_id: &str, ctx: &EvalContext) -> Option<Cohort> {
    if !flag.enabled {
        return None;
    }
    for rule in &flag.rules {
        let matches = rule.when.matches(ctx);
        let inside = matches && in_percentage(&flag.key, &ctx.player, rule.percentage_bp);
        if rule.id == rule_id {
            return match (matches, inside) {
                (true, true) => Some(Cohort::Treatment),
                (true, false) => Some(Cohort::Control),
                _ => None,
            };
        }
        if inside {
            return None;
        }
    }
    None
}

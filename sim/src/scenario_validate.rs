//! The section checks behind [`Scenario::validate`]: what serde cannot check
//! (ranges, names, cross references), one method per part of the file. Each
//! returns the first problem it finds as [`ScenarioError::Invalid`].

use crate::curve::Curve;
use crate::scenario::{Scenario, ScenarioError};

fn bad<T>(m: String) -> Result<T, ScenarioError> {
    Err(ScenarioError::Invalid(m))
}

fn region_name_ok(n: &str) -> bool {
    (1..=32).contains(&n.len()) && n.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
}

impl Scenario {
    /// The scenario's name and sampling interval.
    pub(crate) fn validate_identity(&self) -> Result<(), ScenarioError> {
        if !((1..=64).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return bad(format!(
                "name {:?}: 1..=64 characters of [A-Za-z0-9_-]",
                self.name
            ));
        }
        if self.sample_interval_ms == 0 {
            return bad("sample_interval_ms must be > 0".into());
        }
        Ok(())
    }

    /// `[[regions]]`: at least one, unique names, curves, RTTs and
    /// neighbours that name other regions.
    pub(crate) fn validate_regions(&self) -> Result<(), ScenarioError> {
        if self.regions.is_empty() {
            return bad("at least one [[regions]] entry is required".into());
        }
        let names: Vec<&str> = self.regions.iter().map(|r| r.name.as_str()).collect();
        for (i, r) in self.regions.iter().enumerate() {
            if !region_name_ok(&r.name) {
                return bad(format!("region {:?}: 1..=32 characters of [a-z0-9-]", r.name));
            }
            if names[..i].contains(&r.name.as_str()) {
                return bad(format!("region {:?} is listed twice", r.name));
            }
            if r.curve.is_empty() {
                return bad(format!("region {:?}: the curve has no segments", r.name));
            }
            for (j, seg) in r.curve.iter().enumerate() {
                seg.validate()
                    .or_else(|e| bad(format!("region {:?}, curve segment {}: {e}", r.name, j + 1)))?;
            }
            if Curve::new(&r.curve, 1.0).duration_s() <= 0.0 {
                return bad(format!("region {:?}: the curve lasts 0 s", r.name));
            }
            r.rtt_ms
                .validate()
                .or_else(|e| bad(format!("region {:?}: rtt_ms: {e}", r.name)))?;
            for n in &r.neighbours {
                if n.name == r.name || !names.contains(&n.name.as_str()) {
                    return bad(format!(
                        "region {:?}: neighbour {:?} is not another region of this scenario",
                        r.name, n.name
                    ));
                }
                n.rtt_ms
                    .validate()
                    .or_else(|e| bad(format!("region {:?}, neighbour {:?}: {e}", r.name, n.name)))?;
            }
        }
        Ok(())
    }

    /// `[session]`'s distributions (`max_actions` is checked later, in
    /// `validate`'s order).
    pub(crate) fn validate_session(&self) -> Result<(), ScenarioError> {
        self.session
            .length_s
            .validate()
            .or_else(|e| bad(format!("session.length_s: {e}")))?;
        self.session
            .think_ms
            .validate()
            .or_else(|e| bad(format!("session.think_ms: {e}")))?;
        if self.session.length_s.mean() <= 0.0 {
            return bad("session.length_s must have a positive mean".into());
        }
        Ok(())
    }

    /// Every region's behaviour and inventory mix (its own or the
    /// scenario's), named by region when it is the region's own.
    pub(crate) fn validate_behaviour(&self) -> Result<(), ScenarioError> {
        for i in 0..self.regions.len() {
            let (b, inv) = (self.behaviour_of(i), self.inventory_of(i));
            let at = if self.regions[i].behaviour.is_some() || self.regions[i].inventory.is_some() {
                format!("region {:?}: ", self.regions[i].name)
            } else {
                String::new()
            };
            if b.weights().iter().any(|x| !(x.is_finite() && *x >= 0.0)) {
                return bad(format!("{at}behaviour weights must be finite numbers >= 0"));
            }
            inv.validate(b.inventory > 0.0)
                .or_else(|e| bad(format!("{at}{e}")))?;
            if b.echo_bytes > 16 * 1024 || b.state_bytes > 16 * 1024 {
                return bad(format!(
                    "{at}behaviour.echo_bytes and state_bytes must be at most 16384"
                ));
            }
            if b.matchmaking > 0.0 && self.matchmaking.is_none() {
                return bad(format!(
                    "{at}behaviour.matchmaking > 0 needs a [matchmaking] section"
                ));
            }
        }
        Ok(())
    }

    /// `[retry]`.
    pub(crate) fn validate_retry(&self) -> Result<(), ScenarioError> {
        let r = &self.retry;
        if r.max_attempts == 0
            || r.interval_ms == 0
            || r.impatient_interval_ms == 0
            || r.initial_ms > r.max_ms
        {
            return bad("retry: max_attempts, interval_ms and impatient_interval_ms must be > 0, initial_ms <= max_ms".into());
        }
        if !(0.0..=1.0).contains(&r.impatient_share) {
            return bad("retry.impatient_share must be within 0..=1".into());
        }
        Ok(())
    }

    /// `[live]`.
    pub(crate) fn validate_live(&self) -> Result<(), ScenarioError> {
        let l = &self.live;
        if l.max_players == 0
            || !(l.max_arrivals_per_sec.is_finite() && l.max_arrivals_per_sec > 0.0)
            || l.request_timeout_ms == 0
            || l.control_interval_ms == 0
        {
            return bad("live: max_players, max_arrivals_per_sec, request_timeout_ms and control_interval_ms must be > 0".into());
        }
        if l.endpoints > 256 || l.endpoint_buffer_bytes < 65_536 {
            return bad(
                "live.endpoints must be within 0..=256 and live.endpoint_buffer_bytes >= 65536".into(),
            );
        }
        Ok(())
    }

    /// `[slo]`: rates within 0..=1, latency limits positive.
    pub(crate) fn validate_slo(&self) -> Result<(), ScenarioError> {
        let s = &self.slo;
        let rates = [s.error_rate, s.login_success_rate];
        if rates.iter().flatten().any(|v| !(0.0..=1.0).contains(v)) {
            return bad("slo.error_rate and slo.login_success_rate must be within 0..=1".into());
        }
        let limits = [
            s.login_p99_ms,
            s.request_p99_ms,
            s.match_wait_p95_s,
            s.match_wait_p999_s,
            s.match_wait_max_s,
        ];
        if limits.iter().flatten().any(|v| !(v.is_finite() && *v > 0.0)) {
            return bad("slo latency limits must be > 0".into());
        }
        Ok(())
    }
}

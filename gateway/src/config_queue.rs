//! The `[queue]` section: the region's launch login queue (PROTOCOL.md 3.7,
//! `outpost_backend::queue`). Off by default: a gateway then admits under its
//! own `limits.max_sessions` only, as before.

use std::time::Duration;

use outpost_backend::queue::{Budget, QueueSettings};
use serde::Deserialize;

/// The login queue. Times are in the units their names say.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Logins go through the region's queue. Every gateway of a region must
    /// agree (a gateway with the queue off admits without counting, so the
    /// region budget would be exceeded). Default false.
    pub enabled: bool,
    /// The region budget written at start-up **if none is stored yet**; after
    /// that the stored (admin-set) one is live for every gateway: maximum
    /// slots in use in the region (sessions + admitted-untaken places +
    /// re-entry reservations). Default 10,000. `limits.max_sessions` stays
    /// this gateway's own ceiling on top.
    pub max_sessions: u32,
    /// Initial region budget of admissions per second (both queue and direct
    /// logins). Higher fills capacity faster after a launch or an incident;
    /// lower protects backends from login bursts. Default 200.
    pub max_admissions_per_sec: u32,
    /// How often a queued client gets `Queued` (position and ETA), in ms. One
    /// read of the whole queue per interval per gateway: shorter is more
    /// responsive and costs more store reads. Default 5,000; 500..=60,000.
    pub update_interval_ms: u64,
    /// How often this gateway runs an admission tick, in ms. Every gateway
    /// runs them; they serialize in the store, so more gateways do not admit
    /// more. Default 250; 50..=10,000.
    pub admit_tick_ms: u64,
    /// Most places one admission transaction admits. Default 100; 1..=1,000.
    pub max_batch: u32,
    /// How long a queued place survives its holder's disconnect, in s (also
    /// how long an admitted place waits to be taken). Longer forgives longer
    /// outages (app restarts, network changes) but leaves dead places in the
    /// queue longer, inflating positions. Default 120.
    pub place_grace_secs: u64,
    /// How long after an unclean session end the player re-enters without
    /// queueing, in s; the slot stays reserved that long, idling capacity
    /// after crashes. Must be at least `session.resume_window_secs` so
    /// resumes find their slot. Default 120.
    pub reentry_grace_secs: u64,
    /// Lifetime of queue tokens, in s. At least `place_grace_secs`. Default 21,600.
    pub token_ttl_secs: u64,
    /// Window over which the admission rate (for the ETA) is measured, in s.
    /// Default 30.
    pub eta_window_secs: u64,
    /// Most queue places the connections from one address (an IPv4 address
    /// or an IPv6 /64) may hold through this gateway; a login from an
    /// address at the bound is treated like a client without queue support
    /// (admitted if there is room, else `Reject { ServerBusy }`). A place
    /// counts until admitted, or for `place_grace_secs` after its connection
    /// is lost. Bounds what one host with many accounts can take of the
    /// queue; too low refuses players behind a shared address (carrier-grade
    /// NAT, campuses, LAN events), too high lets one host push everyone
    /// back. The count is per gateway (a region holds up to this many per
    /// gateway). Default 32; 0 = no bound.
    pub max_places_per_address: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            enabled: false,
            max_sessions: 10_000,
            max_admissions_per_sec: 200,
            update_interval_ms: 5_000,
            admit_tick_ms: 250,
            max_batch: 100,
            place_grace_secs: 120,
            reentry_grace_secs: 120,
            token_ttl_secs: 6 * 3_600,
            eta_window_secs: 30,
            max_places_per_address: 32,
        }
    }
}

impl QueueConfig {
    /// Checks the section; `resume_window_secs` is `session.resume_window_secs`.
    pub fn validate(&self, resume_window_secs: u64) -> Result<(), String> {
        if !(500..=60_000).contains(&self.update_interval_ms) {
            return Err("queue.update_interval_ms must be within 500..=60000".into());
        }
        if !(50..=10_000).contains(&self.admit_tick_ms) {
            return Err("queue.admit_tick_ms must be within 50..=10000".into());
        }
        if self.eta_window_secs == 0 {
            return Err("queue.eta_window_secs must be > 0".into());
        }
        if self.enabled && self.reentry_grace_secs < resume_window_secs {
            return Err("queue.reentry_grace_secs must be at least session.resume_window_secs".into());
        }
        self.settings().check().map_err(|e| format!("queue: {e}"))
    }

    /// The backend settings.
    pub fn settings(&self) -> QueueSettings {
        QueueSettings {
            place_grace: Duration::from_secs(self.place_grace_secs),
            reentry_grace: Duration::from_secs(self.reentry_grace_secs),
            max_batch: self.max_batch,
            token_ttl: Duration::from_secs(self.token_ttl_secs),
        }
    }

    /// The initial budget.
    pub fn initial_budget(&self) -> Budget {
        Budget {
            max_sessions: self.max_sessions,
            max_admissions_per_sec: self.max_admissions_per_sec,
            paused: false,
            updated_ms: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_do_not() {
        assert!(QueueConfig::default().validate(120).is_ok());
        let on = QueueConfig {
            enabled: true,
            ..QueueConfig::default()
        };
        assert!(
            on.validate(300).is_err(),
            "re-entry grace below the resume window"
        );
        for bad in [
            QueueConfig {
                update_interval_ms: 10,
                ..QueueConfig::default()
            },
            QueueConfig {
                max_batch: 0,
                ..QueueConfig::default()
            },
            QueueConfig {
                token_ttl_secs: 10,
                ..QueueConfig::default()
            },
            QueueConfig {
                place_grace_secs: 0,
                ..QueueConfig::default()
            },
        ] {
            assert!(bad.validate(120).is_err(), "{bad:?}");
        }
    }
}

//! The `[session]` section: timing of a session's life and of its pushes.

use std::time::Duration;

use serde::Deserialize;

/// Session timing.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Time a new connection has to send `Hello`, in ms. Default 5,000.
    pub hello_timeout_ms: u64,
    /// How often clients are told to ping, in ms. Default 10,000.
    pub heartbeat_interval_ms: u64,
    /// A session that sends nothing for this long is kicked, in ms. Default 30,000.
    /// Must exceed the heartbeat interval.
    pub idle_timeout_ms: u64,
    /// How long a resume token stays valid, in seconds. Default 120. Longer
    /// windows survive longer outages; shorter ones free server-side session
    /// state (tickets, subscriptions) sooner. Live sessions get a fresh token
    /// every half window (`ResumeTokenRefresh`, PROTOCOL.md 3.4): one HMAC
    /// mint (0.5-0.7 us measured, docs/PERFORMANCE.md) and one small frame per
    /// session per half window, so shorter windows cost proportionally more
    /// (at 120 s, 1M sessions make ~16,700 refreshes/s, about 1% of a core).
    pub resume_window_secs: u64,
    /// Lifetime of the session token handed out in `Welcome`, in seconds.
    /// Default 86,400 (one day).
    pub session_token_ttl_secs: u64,
    /// Enforce one live session per player across every gateway sharing the
    /// global store (a relaxed presence write per login, before `Welcome`, and a
    /// store watch per session), and make resume tokens revocable: a later
    /// login, a kick (operator kicks from any gateway) or a logout revokes every
    /// earlier resume token of the player on every gateway (PROTOCOL.md §3.4).
    /// Default true. Off (benchmark attribution only): one session per player
    /// holds within this gateway only, and a resume token stays valid until it
    /// expires (at most `resume_window_secs`), even after a kick.
    pub cross_gateway_presence: bool,
    /// Least time between two `InventoryChanged` or two `StateChanged` pushes
    /// of one channel, in ms. Default 100 (at most 10 pushes a second per
    /// channel); 0 pushes after every change. Each push costs a store read of
    /// the player's balances or documents and a frame: a player whose
    /// inventory changes faster (a burst of match rewards, a hot account
    /// receiving gifts) gets one push per interval carrying the state after
    /// every change so far, instead of one per change. The first change after
    /// a quiet interval is pushed at once; a change is never pushed later than
    /// this after the previous push, and the last state of a burst always
    /// arrives. A game's UI needs no more than a few updates a second; the
    /// writer itself learns its result from the response. At most 10,000.
    pub push_min_interval_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            hello_timeout_ms: 5_000,
            heartbeat_interval_ms: 10_000,
            idle_timeout_ms: 30_000,
            resume_window_secs: 120,
            session_token_ttl_secs: 86_400,
            cross_gateway_presence: true,
            push_min_interval_ms: 100,
        }
    }
}

impl SessionConfig {
    /// Checks the section's own constraints.
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.heartbeat_interval_ms == 0 || self.idle_timeout_ms <= self.heartbeat_interval_ms {
            return Err("session.idle_timeout_ms must exceed session.heartbeat_interval_ms".into());
        }
        if self.hello_timeout_ms == 0 || self.resume_window_secs == 0 || self.session_token_ttl_secs == 0 {
            return Err("session timeouts must be > 0".into());
        }
        if self.push_min_interval_ms > MAX_PUSH_MIN_INTERVAL_MS {
            return Err(format!(
                "session.push_min_interval_ms must be at most {MAX_PUSH_MIN_INTERVAL_MS} (pushes that late stop being live)"
            ));
        }
        Ok(())
    }

    /// [`push_min_interval_ms`](Self::push_min_interval_ms) as a duration.
    pub fn push_min_interval(&self) -> Duration {
        Duration::from_millis(self.push_min_interval_ms)
    }
}

/// Upper bound of `session.push_min_interval_ms`.
const MAX_PUSH_MIN_INTERVAL_MS: u64 = 10_000;

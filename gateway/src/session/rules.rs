//! Small pure decisions the session driver asks for outside the machines: the
//! drain reconnect delay and what a presence displacement means for a live
//! session. Randomness is injected as a [`Draw`], so tests fix it.

use std::time::Duration;

use outpost_backend::presence::{Displacement, SessionEnd};
use outpost_schema::{ErrorCode, Kick};
use rand::Rng;

/// A uniform draw in `0..=max`. The gateway uses [`uniform`]; tests pass a
/// fixed function.
pub type Draw = fn(u64) -> u64;

/// A uniform draw in `0..=max` from the thread's random number generator.
pub fn uniform(max: u64) -> u64 {
    rand::thread_rng().gen_range(0..=max)
}

/// How long a draining session's client waits before reconnecting: uniform
/// within the drain `window`, so that the sessions do not all move at once
/// (PROTOCOL.md §3.3).
pub fn drain_reconnect_delay(window: Duration, draw: Draw) -> Duration {
    let window = window.as_millis().min(u128::from(u64::MAX)) as u64;
    Duration::from_millis(draw(window).min(window))
}

/// The Kick a live session gets when presence says it is no longer the
/// player's live one, or `None` when it needs none: a newer login anywhere
/// holds the presence (`ReplacedByNewLogin`), an operator ended it
/// (`KickedByOperator`); the session ended itself (its own kick or logout), or
/// nobody holds the presence any more, and it is ending anyway.
pub fn presence_kick(displacement: &Displacement) -> Option<Kick> {
    match displacement {
        Displacement::NewerLogin(by) => Some(Kick {
            reason: ErrorCode::ReplacedByNewLogin,
            message: format!("you logged in from another connection (gateway {})", by.gateway),
        }),
        Displacement::Ended(SessionEnd::KickedByOperator) => Some(Kick {
            reason: ErrorCode::KickedByOperator,
            message: "an operator ended your session".to_owned(),
        }),
        Displacement::Ended(_) | Displacement::Released => None,
    }
}

#[cfg(test)]
mod tests {
    use outpost_backend::presence::Claim;

    use super::*;

    #[test]
    fn drain_delay_stays_within_the_window() {
        let window = Duration::from_millis(30_000);
        assert_eq!(drain_reconnect_delay(window, |_| 0), Duration::ZERO);
        assert_eq!(drain_reconnect_delay(window, |max| max), window);
        // A draw out of bounds is clamped, never beyond the window.
        assert_eq!(drain_reconnect_delay(window, |_| u64::MAX), window);
        for _ in 0..100 {
            assert!(drain_reconnect_delay(window, uniform) <= window);
        }
    }

    #[test]
    fn presence_displacements_map_to_kicks() {
        let by = Claim::new(1, 2, "gw-b:4433");
        let kick = presence_kick(&Displacement::NewerLogin(by)).unwrap();
        assert_eq!(kick.reason, ErrorCode::ReplacedByNewLogin);
        assert!(kick.message.contains("gw-b:4433"), "{}", kick.message);
        let kick = presence_kick(&Displacement::Ended(SessionEnd::KickedByOperator)).unwrap();
        assert_eq!(kick.reason, ErrorCode::KickedByOperator);
        assert_eq!(presence_kick(&Displacement::Ended(SessionEnd::LoggedOut)), None);
        assert_eq!(presence_kick(&Displacement::Released), None);
    }
}

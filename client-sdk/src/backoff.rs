//! Reconnect delays: exponential backoff with full jitter, honouring the
//! gateway's `retry_after`. Pure functions; the randomness is passed in.

use std::time::Duration;

use crate::config::ReconnectPolicy;

/// The ceiling of attempt `attempt` (1-based):
/// `min(max_delay, initial_delay * multiplier^(attempt-1))`.
pub fn ceiling(policy: &ReconnectPolicy, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(64) as i32;
    let secs = policy.initial_delay.as_secs_f64() * policy.multiplier.max(1.0).powi(exp);
    let max = policy.max_delay.as_secs_f64();
    if !secs.is_finite() || secs >= max {
        policy.max_delay
    } else {
        Duration::from_secs_f64(secs.max(0.0))
    }
}

/// The delay before attempt `attempt`: full jitter over `[0, ceiling]`, where
/// `unit` is a uniform random number in `[0, 1)`, and never less than `floor`
/// (a `retry_after` the gateway asked for, which already carries its jitter).
pub fn delay(policy: &ReconnectPolicy, attempt: u32, floor: Option<Duration>, unit: f64) -> Duration {
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let jittered = ceiling(policy, attempt).mul_f64(unit);
    match floor {
        Some(f) => jittered.max(f),
        None => jittered,
    }
}

/// [`delay`] with a thread-local random number.
pub(crate) fn random_delay(policy: &ReconnectPolicy, attempt: u32, floor: Option<Duration>) -> Duration {
    delay(policy, attempt, floor, rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> ReconnectPolicy {
        ReconnectPolicy::default()
    }

    #[test]
    fn ceiling_grows_exponentially_and_caps() {
        let p = p();
        assert_eq!(ceiling(&p, 1), Duration::from_millis(200));
        assert_eq!(ceiling(&p, 2), Duration::from_millis(400));
        assert_eq!(ceiling(&p, 3), Duration::from_millis(800));
        assert_eq!(ceiling(&p, 8), Duration::from_millis(25_600));
        assert_eq!(ceiling(&p, 9), Duration::from_secs(30));
        assert_eq!(ceiling(&p, u32::MAX), Duration::from_secs(30));
        // attempt 0 is treated like the first attempt
        assert_eq!(ceiling(&p, 0), Duration::from_millis(200));
    }

    #[test]
    fn full_jitter_stays_within_zero_and_ceiling() {
        let p = p();
        for attempt in 1..20 {
            let c = ceiling(&p, attempt);
            assert_eq!(delay(&p, attempt, None, 0.0), Duration::ZERO);
            assert!(delay(&p, attempt, None, 0.999_999) <= c);
            assert!(delay(&p, attempt, None, 0.5) <= c);
            for _ in 0..100 {
                assert!(random_delay(&p, attempt, None) <= c);
            }
        }
        // out-of-range randomness is clamped, never a panic
        assert_eq!(delay(&p, 1, None, 7.0), Duration::from_millis(200));
        assert_eq!(delay(&p, 1, None, f64::NAN), Duration::ZERO);
        assert_eq!(delay(&p, 1, None, -1.0), Duration::ZERO);
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = p();
        let floor = Duration::from_secs(5);
        assert_eq!(delay(&p, 1, Some(floor), 0.0), floor);
        assert_eq!(delay(&p, 1, Some(floor), 0.99), floor);
        // a larger jittered delay wins over a small floor
        assert_eq!(
            delay(&p, 9, Some(Duration::from_millis(1)), 0.5),
            Duration::from_secs(15)
        );
        for attempt in 1..30 {
            assert!(random_delay(&p, attempt, Some(floor)) >= floor);
        }
    }

    #[test]
    fn degenerate_policies_do_not_panic() {
        let p = ReconnectPolicy {
            initial_delay: Duration::from_secs(3600),
            max_delay: Duration::from_secs(1),
            multiplier: f64::INFINITY,
            max_attempts: None,
        };
        assert_eq!(ceiling(&p, 5), Duration::from_secs(1));
        let z = ReconnectPolicy {
            initial_delay: Duration::ZERO,
            ..ReconnectPolicy::default()
        };
        assert_eq!(delay(&z, 10, None, 0.5), Duration::ZERO);
    }
}

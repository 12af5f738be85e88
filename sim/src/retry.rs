//! When a player whose login failed tries again ([`crate::scenario::RetrySpec`]):
//! a pure function of the attempt and a random source, so the patterns
//! (backoff, jitter, lockstep, impatient players) are unit-tested.

use std::time::Duration;

use rand::Rng;

use crate::scenario::{RetryMode, RetrySpec};

/// Facts about the failed attempt.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// 1-based number of the attempt that just failed.
    pub number: u32,
    /// Whether this player is one of the impatient share.
    pub impatient: bool,
    /// The `retry_after` the gateway asked for, if any.
    pub retry_after: Option<Duration>,
    /// Time since the run started (lockstep aligns to it).
    pub since_start: Duration,
}

/// How long to wait before the next attempt.
pub fn retry_delay<R: Rng + ?Sized>(spec: &RetrySpec, a: Attempt, rng: &mut R) -> Duration {
    if a.impatient {
        return Duration::from_millis(spec.impatient_interval_ms);
    }
    let floor = if spec.honour_retry_after {
        a.retry_after.unwrap_or_default()
    } else {
        Duration::ZERO
    };
    match spec.mode {
        RetryMode::Backoff => {
            let exp = a.number.saturating_sub(1).min(30);
            let ceil = spec.initial_ms.saturating_mul(1u64 << exp).min(spec.max_ms);
            Duration::from_millis(rng.gen_range(0..=ceil)).max(floor)
        }
        RetryMode::Jitter => Duration::from_millis(rng.gen_range(0..=spec.interval_ms)).max(floor),
        RetryMode::Lockstep => {
            // The first multiple of the interval (since the run start) that is
            // at least `floor` away: everyone failing together retries together.
            let step = u128::from(spec.interval_ms.max(1)) * 1_000_000;
            let earliest = (a.since_start + floor).as_nanos();
            let next = (earliest / step + 1) * step;
            Duration::from_nanos((next - a.since_start.as_nanos()) as u64)
        }
    }
}

/// When an old client (`[rehearsal] old_clients`) retries: at the next
/// multiple of `interval_ms` since the run start, with no jitter, no backoff
/// and no regard for the gateway's `retry_after`, so every old client that
/// failed in the same interval retries at the same instant.
pub fn old_client_delay(interval_ms: u64, since_start: Duration) -> Duration {
    let step = u128::from(interval_ms.max(1)) * 1_000_000;
    let now = since_start.as_nanos();
    let next = (now / step + 1) * step;
    Duration::from_nanos((next - now) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn at(number: u32, since_ms: u64) -> Attempt {
        Attempt {
            number,
            impatient: false,
            retry_after: None,
            since_start: Duration::from_millis(since_ms),
        }
    }

    #[test]
    fn backoff_ceiling_doubles_up_to_max() {
        let spec = RetrySpec::default(); // 200 ms, max 30 s
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for (n, ceil) in [(1, 200), (2, 400), (3, 800), (9, 30_000), (40, 30_000)] {
            let max = (0..500)
                .map(|_| retry_delay(&spec, at(n, 0), &mut rng))
                .max()
                .unwrap();
            assert!(max <= Duration::from_millis(ceil), "attempt {n}: {max:?}");
            assert!(
                max >= Duration::from_millis(ceil * 9 / 10),
                "attempt {n}: {max:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_a_floor_unless_ignored() {
        let mut spec = RetrySpec::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let a = Attempt {
            retry_after: Some(Duration::from_secs(2)),
            ..at(1, 0)
        };
        assert!(retry_delay(&spec, a, &mut rng) >= Duration::from_secs(2));
        spec.honour_retry_after = false;
        assert!(retry_delay(&spec, a, &mut rng) <= Duration::from_millis(200));
        let impatient = Attempt { impatient: true, ..a };
        spec.honour_retry_after = true;
        assert_eq!(
            retry_delay(&spec, impatient, &mut rng),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn a_refused_connection_paces_every_patient_player() {
        // What the SDK reports when a gateway refuses the connection (QUIC
        // CONNECTION_REFUSED): ServerBusy with a retry_after of 1-3 s, here
        // the shortest.
        let refused = outpost_client::ClientError::Rejected {
            code: outpost_client::ErrorCode::ServerBusy,
            message: "refused".into(),
            retry_after: Some(Duration::from_secs(1)),
        };
        assert!(
            refused.is_retryable(),
            "a player retries it rather than giving up"
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for mode in [RetryMode::Backoff, RetryMode::Jitter, RetryMode::Lockstep] {
            let spec = RetrySpec {
                mode,
                ..RetrySpec::default()
            };
            for number in 1..10 {
                let a = Attempt {
                    retry_after: refused.retry_after(),
                    ..at(number, 1_234)
                };
                let d = retry_delay(&spec, a, &mut rng);
                assert!(d >= Duration::from_secs(1), "{mode:?}, attempt {number}: {d:?}");
            }
        }
    }

    #[test]
    fn lockstep_aligns_everyone_to_the_same_instant() {
        let spec = RetrySpec {
            mode: RetryMode::Lockstep,
            interval_ms: 1_000,
            ..RetrySpec::default()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for since in [0, 10, 999, 500] {
            let d = retry_delay(&spec, at(1, 1_000 + since), &mut rng);
            assert_eq!(
                Duration::from_millis(1_000 + since) + d,
                Duration::from_secs(2),
                "{since}"
            );
        }
        let a = Attempt {
            retry_after: Some(Duration::from_millis(1_500)),
            ..at(1, 1_200)
        };
        assert_eq!(retry_delay(&spec, a, &mut rng), Duration::from_millis(1_800));
    }

    #[test]
    fn old_clients_retry_together_whatever_the_gateway_says() {
        // Failures spread over one interval all retry at the same instant, and
        // a retry_after or the attempt number changes nothing.
        let times: Vec<Duration> = [3_000u64, 3_001, 3_500, 3_999]
            .iter()
            .map(|&ms| Duration::from_millis(ms) + old_client_delay(1_000, Duration::from_millis(ms)))
            .collect();
        assert!(times.iter().all(|t| *t == Duration::from_secs(4)), "{times:?}");
        // The scenario's backoff for the same failures spreads them out.
        let spec = RetrySpec::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let spread: std::collections::BTreeSet<Duration> = (0..20)
            .map(|_| Duration::from_millis(3_000) + retry_delay(&spec, at(2, 3_000), &mut rng))
            .collect();
        assert!(spread.len() > 10, "{spread:?}");
    }

    #[test]
    fn jitter_stays_within_interval() {
        let spec = RetrySpec {
            mode: RetryMode::Jitter,
            interval_ms: 300,
            ..RetrySpec::default()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let ds: Vec<Duration> = (0..200).map(|_| retry_delay(&spec, at(3, 0), &mut rng)).collect();
        assert!(ds.iter().all(|d| *d <= Duration::from_millis(300)));
        assert!(ds.iter().any(|d| *d < Duration::from_millis(100)));
        assert!(ds.iter().any(|d| *d > Duration::from_millis(200)));
    }
}

//! Token buckets: the per-session request and control-frame rate limits.

use std::time::{Duration, Instant};

/// A token bucket refilled continuously at a rate (tokens per second) up to a
/// burst. Time is passed in, so it runs on a fake clock in tests. The rate
/// and burst are passed in too: every session has the same ones (its
/// `SessionLimits`, shared), and keeping a copy in each bucket took 32 bytes
/// per session (memory per idle session, issue 21).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens.
    pub fn new(burst: f64, now: Instant) -> Self {
        TokenBucket {
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token, or says how long until one is available, refilling
    /// at `rate_per_sec` up to `burst` since the last call.
    pub fn try_take(&mut self, now: Instant, rate_per_sec: f64, burst: f64) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate_per_sec).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate_per_sec))
        }
    }
}

/// A refusal's wait as the wire's `retry_after_ms`: whole milliseconds,
/// rounded up, so a client that waits exactly that long finds the token there
/// (rounded down, a wait of 4.7 ms was sent as 4 and the client was refused
/// again). At least 1 when there is a wait, 0 when there is none.
pub fn retry_after_ms(wait: Option<Duration>) -> u32 {
    wait.map_or(0, |d| {
        d.as_micros().div_ceil(1000).clamp(1, u128::from(u32::MAX)) as u32
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_at_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3.0, t0);
        let take = |b: &mut TokenBucket, now| b.try_take(now, 10.0, 3.0);
        for _ in 0..3 {
            take(&mut b, t0).unwrap();
        }
        let wait = take(&mut b, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        // 100 ms later exactly one token is back, not more.
        let t1 = t0 + Duration::from_millis(100);
        take(&mut b, t1).unwrap();
        assert!(take(&mut b, t1).is_err());
        // A long pause refills only up to the burst.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            take(&mut b, t2).unwrap();
        }
        assert!(take(&mut b, t2).is_err());
    }

    #[test]
    fn a_refusals_wait_is_rounded_up_to_whole_milliseconds() {
        let us = Duration::from_micros;
        assert_eq!(retry_after_ms(None), 0, "no wait");
        assert_eq!(retry_after_ms(Some(us(4_700))), 5, "4.7 ms waits 5, not 4");
        assert_eq!(retry_after_ms(Some(us(5_000))), 5, "exact milliseconds stay");
        assert_eq!(retry_after_ms(Some(us(1))), 1, "any wait is at least 1 ms");
        assert_eq!(retry_after_ms(Some(Duration::ZERO)), 1, "a refusal always waits");
        assert_eq!(retry_after_ms(Some(Duration::from_secs(u64::MAX))), u32::MAX);
    }
}

//! Token buckets: the per-session request and control-frame rate limits.

use std::time::{Duration, Instant};

/// A token bucket refilled continuously at `rate` tokens per second up to
/// `burst`. Time is passed in, so it runs on a fake clock in tests.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_sec: f64, burst: f64, now: Instant) -> Self {
        TokenBucket {
            rate: rate_per_sec,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_at_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3.0, t0);
        for _ in 0..3 {
            b.try_take(t0).unwrap();
        }
        let wait = b.try_take(t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        // 100 ms later exactly one token is back, not more.
        let t1 = t0 + Duration::from_millis(100);
        b.try_take(t1).unwrap();
        assert!(b.try_take(t1).is_err());
        // A long pause refills only up to the burst.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            b.try_take(t2).unwrap();
        }
        assert!(b.try_take(t2).is_err());
    }
}

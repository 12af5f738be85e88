//! Refusal strikes: a session whose requests keep being refused is closed.
//!
//! A request over the session's rate or its channel's in-flight bound (or
//! reusing an id still in flight) is answered with an `Error` and not
//! processed (PROTOCOL.md §4), but it is still read, decoded and answered. A
//! client that ignores those errors could make the gateway do that for as
//! long as it likes, at whatever rate QUIC flow control lets it send. So the
//! session counts its refusals in fixed windows of [`REFUSAL_WINDOW`]; the
//! refusal that takes a window over the bound closes the session with `Kick {
//! RateLimited }` (see [`Session::admit_request`](super::Session::admit_request)).
//! Requests that are admitted are never counted, however many.

use std::time::{Duration, Instant};

/// The length of the windows in which a session's refused requests are
/// counted against `LimitsConfig::max_refused_requests_per_window`.
///
/// Why 10 s: long enough that a burst (an app that fires a few thousand
/// requests at once, or reconnects with a backlog) is averaged with the quiet
/// that follows it, short enough that a flood is cut off within seconds.
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(10);

/// The refusals of one session in its current window: O(1) memory per session.
#[derive(Debug, Clone, Copy)]
pub struct Strikes {
    /// When the current window began (the first refusal after the previous
    /// window ended), if there is one.
    window_start: Option<Instant>,
    /// Refusals in the current window.
    count: u32,
}

impl Strikes {
    /// No refusals yet.
    pub fn new() -> Self {
        Strikes {
            window_start: None,
            count: 0,
        }
    }

    /// Counts one refusal at `now`. True when it is more than `max` in its
    /// window: the session must be closed.
    pub fn refuse(&mut self, now: Instant, max: u32) -> bool {
        match self.window_start {
            Some(start) if now.saturating_duration_since(start) < REFUSAL_WINDOW => {}
            // A new window, which begins with this refusal.
            _ => {
                self.window_start = Some(now);
                self.count = 0;
            }
        }
        self.count = self.count.saturating_add(1);
        self.count > max
    }
}

impl Default for Strikes {
    fn default() -> Self {
        Strikes::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_refusal_after_the_bound_strikes_out() {
        let t0 = Instant::now();
        let mut s = Strikes::new();
        for i in 0..5 {
            assert!(!s.refuse(t0 + ms(i), 5), "refusal {}", i + 1);
        }
        assert!(s.refuse(t0 + ms(5), 5), "the 6th of a bound of 5");
    }

    #[test]
    fn a_new_window_starts_from_zero() {
        let t0 = Instant::now();
        let mut s = Strikes::new();
        for _ in 0..5 {
            assert!(!s.refuse(t0, 5));
        }
        // The last instant of the window still counts in it...
        assert!(s.refuse(t0 + REFUSAL_WINDOW - ms(1), 5));
        // ...and the window after it starts afresh, at its first refusal.
        let t1 = t0 + REFUSAL_WINDOW;
        for i in 0..5 {
            assert!(!s.refuse(t1 + ms(i), 5));
        }
        assert!(s.refuse(t1 + ms(9_999), 5));
        assert!(!s.refuse(t1 + REFUSAL_WINDOW, 5));
    }

    #[test]
    fn a_time_going_backwards_stays_in_the_window() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut s = Strikes::new();
        assert!(!s.refuse(t0, 1));
        assert!(s.refuse(t0 - ms(1), 1));
    }
}

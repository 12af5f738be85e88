//! Refusal strikes: a session whose requests keep being refused, or whose
//! channels keep being refused or failed, is closed.
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
//!
//! A channel the gateway refuses at its opening or ends with a channel-level
//! error for what the client sent (a bad frame, a first frame that is not
//! `OpenChannel`, request id 0: PROTOCOL.md §7), or a stream the client
//! finishes or resets before its first frame, is counted too, in the same
//! windows but against its own, lower bound
//! (`LimitsConfig::max_failed_channels_per_window`): each costs the gateway a
//! stream, a task, a verification and an answer (a stream ended before its
//! first frame: all but the last two), about five times a refused request,
//! and a client never needs one (see
//! [`Session::channel_failed`](super::Session::channel_failed)).

use std::time::{Duration, Instant};

/// The length of the windows in which a session's refused requests are
/// counted against `LimitsConfig::max_refused_requests_per_window`.
///
/// Why 10 s: long enough that a burst (an app that fires a few thousand
/// requests at once, or reconnects with a backlog) is averaged with the quiet
/// that follows it, short enough that a flood is cut off within seconds.
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(10);

/// The strikes of one session in its current window: O(1) memory per
/// session (the second count fits in the first's padding).
#[derive(Debug, Clone, Copy)]
pub struct Strikes {
    /// When the current window began (the first strike of either kind after
    /// the previous window ended), if there is one.
    window_start: Option<Instant>,
    /// Refused requests in the current window.
    refused: u32,
    /// Channels refused or failed in the current window.
    failed_channels: u32,
}

impl Strikes {
    /// No strikes yet.
    pub fn new() -> Self {
        Strikes {
            window_start: None,
            refused: 0,
            failed_channels: 0,
        }
    }

    /// Counts one refused request at `now`. True when it is more than `max`
    /// in its window: the session must be closed.
    pub fn refuse(&mut self, now: Instant, max: u32) -> bool {
        self.roll(now);
        self.refused = self.refused.saturating_add(1);
        self.refused > max
    }

    /// Counts one channel refused or failed at `now`. True when it is more
    /// than `max` in its window: the session must be closed.
    pub fn fail_channel(&mut self, now: Instant, max: u32) -> bool {
        self.roll(now);
        self.failed_channels = self.failed_channels.saturating_add(1);
        self.failed_channels > max
    }

    /// Starts a new window at `now` if the current one is over (or none began).
    fn roll(&mut self, now: Instant) {
        match self.window_start {
            Some(start) if now.saturating_duration_since(start) < REFUSAL_WINDOW => {}
            // A new window, which begins with this strike.
            _ => {
                *self = Strikes {
                    window_start: Some(now),
                    refused: 0,
                    failed_channels: 0,
                }
            }
        }
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
    fn channels_and_requests_count_apart_in_one_window() {
        let t0 = Instant::now();
        let mut s = Strikes::new();
        assert!(!s.fail_channel(t0, 2));
        for _ in 0..5 {
            assert!(!s.refuse(t0 + ms(1), 5), "refusals do not count as channels");
        }
        assert!(!s.fail_channel(t0 + ms(2), 2));
        assert!(s.fail_channel(t0 + ms(3), 2), "the 3rd channel of a bound of 2");
        assert!(s.refuse(t0 + ms(4), 5), "the 6th refusal of a bound of 5");
        // The window began with the first channel: both counts end with it.
        let t1 = t0 + REFUSAL_WINDOW;
        assert!(!s.fail_channel(t1, 2));
        assert!(!s.refuse(t1, 5));
    }

    #[test]
    fn the_strikes_take_no_more_room_than_one_count() {
        assert_eq!(
            std::mem::size_of::<Strikes>(),
            std::mem::size_of::<(Option<Instant>, u32)>()
        );
    }

    #[test]
    fn a_time_going_backwards_stays_in_the_window() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut s = Strikes::new();
        assert!(!s.refuse(t0, 1));
        assert!(s.refuse(t0 - ms(1), 1));
    }
}

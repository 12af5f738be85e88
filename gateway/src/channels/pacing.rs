//! Spacing of a subscription's pushes (`session.push_min_interval_ms`).
//!
//! The `Inventory` and `State` subscriptions push after every change they see:
//! a store watch fires, they read the player's balances or documents, and push
//! what changed. Each cycle is a read transaction, a new watch and a frame. A
//! player whose inventory changes many times a second (a burst of rewards, a
//! hot account, a load test) would get a cycle per change; spacing the reads
//! turns a burst into one read and one push with the state after all of it. In
//! the many-player grants bench (each player granting ~220 times a second)
//! spacing them at 100 ms cut the gateway's CPU per grant from 103 to 77 µs
//! (docs/PERFORMANCE.md, "Spaced pushes"); a player whose changes are further
//! apart than the interval gets a push per change, as before.
//!
//! Nothing is lost by waiting: the watch that fired stays fired, and the read
//! after the wait sees every change committed until then (the next watch is
//! registered in that read's transaction, so a change after it fires it).

use std::time::{Duration, Instant};

/// When one subscription may next read and push. Decides with the time passed
/// in ([`PushPacer::delay`]); [`PushPacer::ready`] is the one line that sleeps.
#[derive(Debug)]
pub(crate) struct PushPacer {
    /// Least time from one push to the next read; zero: no spacing.
    min_interval: Duration,
    /// When the last push was queued; `None` before the first.
    last_push: Option<Instant>,
}

impl PushPacer {
    pub(crate) fn new(min_interval: Duration) -> Self {
        PushPacer {
            min_interval,
            last_push: None,
        }
    }

    /// How long a read at `now` must wait: nothing before the first push, the
    /// rest of the interval after one.
    pub(crate) fn delay(&self, now: Instant) -> Duration {
        match self.last_push {
            Some(last) => (last + self.min_interval).saturating_duration_since(now),
            None => Duration::ZERO,
        }
    }

    /// Waits until the next read may run.
    pub(crate) async fn ready(&self) {
        let delay = self.delay(Instant::now());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    /// Records that a push was queued at `now`.
    pub(crate) fn pushed(&mut self, now: Instant) {
        self.last_push = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(100);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_first_read_does_not_wait() {
        assert_eq!(PushPacer::new(INTERVAL).delay(Instant::now()), Duration::ZERO);
    }

    #[test]
    fn a_read_after_a_push_waits_the_rest_of_the_interval_and_no_longer() {
        let mut p = PushPacer::new(INTERVAL);
        let t0 = Instant::now();
        p.pushed(t0);
        assert_eq!(p.delay(t0), INTERVAL);
        assert_eq!(p.delay(t0 + 30 * MS), 70 * MS);
        assert_eq!(p.delay(t0 + INTERVAL), Duration::ZERO);
        assert_eq!(p.delay(t0 + 250 * MS), Duration::ZERO, "after a quiet interval");
        // The next push restarts the interval.
        p.pushed(t0 + 250 * MS);
        assert_eq!(p.delay(t0 + 260 * MS), 90 * MS);
    }

    #[test]
    fn zero_never_waits() {
        let mut p = PushPacer::new(Duration::ZERO);
        let t0 = Instant::now();
        p.pushed(t0);
        assert_eq!(p.delay(t0), Duration::ZERO);
    }

    #[tokio::test]
    async fn ready_sleeps_for_the_delay() {
        let mut p = PushPacer::new(20 * MS);
        let t0 = Instant::now();
        p.pushed(t0);
        p.ready().await;
        assert!(t0.elapsed() >= 20 * MS);
    }
}

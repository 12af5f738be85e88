//! Waiting in the region's login queue (PROTOCOL.md 3.7), sans IO: what one
//! login remembers about its place across the connections it takes to get
//! admitted. The IO is `login.rs`.
//!
//! Rules kept here:
//! - every `Queued` replaces the queue token; the newest is presented on the
//!   next connection (`Hello.queue_token`), whichever gateway it goes to;
//! - a refused token (`QueueTokenInvalid`, `QueueTokenExpired`,
//!   `QueuePlaceGone`) is dropped and the login is retried at once without
//!   one (the account's place if it still has one, else a new place);
//! - the whole wait, counted from the first `Queued`, is bounded by
//!   `QueuePolicy::max_wait`.

use std::net::SocketAddr;
use std::time::Duration;

use outpost_schema::{ErrorCode, Queued};
use tokio::time::Instant;

use crate::events::Event;

/// One login's queue state.
#[derive(Debug)]
pub(crate) struct QueueWait {
    max_wait: Duration,
    /// The newest queue token (none before the first `Queued`, or after a refusal).
    token: Option<String>,
    /// When the first `Queued` of this login arrived.
    since: Option<Instant>,
    /// The gateway the place was last held through (tried last on the next
    /// connection: it may be the one that failed).
    last_gateway: Option<SocketAddr>,
    /// `Queued` frames received by this login, all connections.
    received: u32,
    /// Test hook: abandon the queued connection once, at this many `Queued`.
    drop_at: Option<u32>,
}

/// Whether a `Reject` code refuses the queue token (PROTOCOL.md 3.7 item 9).
pub(crate) fn is_queue_token_refusal(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::QueueTokenInvalid | ErrorCode::QueueTokenExpired | ErrorCode::QueuePlaceGone
    )
}

impl QueueWait {
    pub fn new(max_wait: Duration, debug_drop_after: Option<u32>) -> Self {
        Self {
            max_wait,
            token: None,
            since: None,
            last_gateway: None,
            received: 0,
            drop_at: debug_drop_after,
        }
    }

    /// `Queued` frames received so far.
    pub fn received(&self) -> u32 {
        self.received
    }

    /// Test hook (`ClientConfig::debug_queue_drop_after`): `true` once, when
    /// the queued connection should be abandoned now.
    pub fn take_debug_drop(&mut self) -> bool {
        if self.drop_at.is_some_and(|n| self.received >= n) {
            self.drop_at = None;
            return true;
        }
        false
    }

    /// The token to present in the next `Hello`.
    pub fn token(&self) -> Option<String> {
        self.token.clone()
    }

    /// Whether this login has been queued (and is still waiting).
    pub fn is_queued(&self) -> bool {
        self.since.is_some()
    }

    /// The gateway to try last on the next connection.
    pub fn avoid(&self) -> Option<SocketAddr> {
        self.last_gateway
    }

    /// The end of the allowed wait, once queued.
    pub fn deadline(&self) -> Option<Instant> {
        self.since.map(|s| s + self.max_wait)
    }

    /// Whether the allowed wait is over at `now`.
    pub fn expired(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now >= d)
    }

    /// Records a `Queued` received through `gateway`; returns the event to emit.
    pub fn on_queued(&mut self, q: &Queued, gateway: SocketAddr, now: Instant) -> Event {
        self.since.get_or_insert(now);
        self.received += 1;
        if !q.queue_token.is_empty() {
            self.token = Some(q.queue_token.clone());
        }
        self.last_gateway = Some(gateway);
        Event::Queued {
            position: q.position,
            eta: (!q.paused && q.eta_ms > 0).then(|| Duration::from_millis(u64::from(q.eta_ms))),
            queue_length: q.queue_length,
            paused: q.paused,
            gateway,
        }
    }

    /// A `Reject` with `code` ended a connection of this login: `true` when
    /// the login should be tried again at once (the token was refused and is
    /// dropped, or a queued place was reported gone).
    pub fn on_refused(&mut self, code: ErrorCode) -> bool {
        if !is_queue_token_refusal(code) {
            return false;
        }
        let had = self.token.take().is_some();
        had || self.is_queued()
    }

    /// The login was admitted at `now`: the `Admitted` event if it waited.
    pub fn admitted(&mut self, now: Instant) -> Option<Event> {
        let since = self.since.take()?;
        self.token = None;
        Some(Event::Admitted {
            waited: now.saturating_duration_since(since),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(position: u32, token: &str) -> Queued {
        Queued {
            position,
            eta_ms: 1_500,
            queue_token: token.into(),
            queue_length: 10,
            paused: false,
        }
    }

    fn gw(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn keeps_the_newest_token_and_reports_position_and_eta() {
        let t0 = Instant::now();
        let mut w = QueueWait::new(Duration::from_secs(60), None);
        assert!(!w.is_queued() && w.token().is_none() && w.deadline().is_none());
        let ev = w.on_queued(&queued(7, "q1"), gw(1), t0);
        assert_eq!(
            ev,
            Event::Queued {
                position: 7,
                eta: Some(Duration::from_millis(1_500)),
                queue_length: 10,
                paused: false,
                gateway: gw(1),
            }
        );
        w.on_queued(&queued(5, "q2"), gw(2), t0 + Duration::from_secs(5));
        assert_eq!(
            w.token().as_deref(),
            Some("q2"),
            "the newest token replaces the others"
        );
        assert_eq!(w.avoid(), Some(gw(2)));
        // An empty token (never sent by a conforming gateway) keeps the old one.
        w.on_queued(&queued(4, ""), gw(2), t0 + Duration::from_secs(6));
        assert_eq!(w.token().as_deref(), Some("q2"));
        // The deadline counts from the first Queued, not from the last.
        assert_eq!(w.deadline(), Some(t0 + Duration::from_secs(60)));
        assert!(!w.expired(t0 + Duration::from_secs(59)));
        assert!(w.expired(t0 + Duration::from_secs(60)));
    }

    #[test]
    fn paused_or_unknown_eta_is_none() {
        let mut w = QueueWait::new(Duration::from_secs(60), None);
        let mut q = queued(0, "t");
        q.paused = true;
        assert!(matches!(
            w.on_queued(&q, gw(1), Instant::now()),
            Event::Queued {
                eta: None,
                paused: true,
                ..
            }
        ));
        q.paused = false;
        q.eta_ms = 0;
        assert!(matches!(
            w.on_queued(&q, gw(1), Instant::now()),
            Event::Queued { eta: None, .. }
        ));
    }

    #[test]
    fn a_refused_token_is_dropped_and_the_login_retried() {
        let mut w = QueueWait::new(Duration::from_secs(60), None);
        // Before any place, other refusals are not the queue's business.
        assert!(!w.on_refused(ErrorCode::ServerBusy));
        assert!(!w.on_refused(ErrorCode::QueuePlaceGone), "no token, never queued");
        w.on_queued(&queued(3, "q1"), gw(1), Instant::now());
        for code in [
            ErrorCode::QueueTokenInvalid,
            ErrorCode::QueueTokenExpired,
            ErrorCode::QueuePlaceGone,
        ] {
            w.on_queued(&queued(3, "q1"), gw(1), Instant::now());
            assert!(w.on_refused(code), "{code:?}");
            assert_eq!(w.token(), None, "{code:?} drops the token");
        }
        assert!(!w.on_refused(ErrorCode::BadCredentials));
        assert!(w.is_queued(), "the wait (and its deadline) goes on");
    }

    #[test]
    fn admission_reports_the_wait_once() {
        let t0 = Instant::now();
        let mut w = QueueWait::new(Duration::from_secs(60), None);
        assert_eq!(w.admitted(t0), None, "not queued: no Admitted event");
        w.on_queued(&queued(1, "q"), gw(1), t0);
        assert_eq!(
            w.admitted(t0 + Duration::from_secs(3)),
            Some(Event::Admitted {
                waited: Duration::from_secs(3)
            })
        );
        assert_eq!(w.admitted(t0 + Duration::from_secs(4)), None);
        assert_eq!(w.token(), None);
    }

    #[test]
    fn the_debug_drop_fires_once_at_its_count() {
        let mut w = QueueWait::new(Duration::from_secs(60), Some(2));
        w.on_queued(&queued(5, "a"), gw(1), Instant::now());
        assert!(!w.take_debug_drop());
        w.on_queued(&queued(4, "b"), gw(1), Instant::now());
        assert!(w.take_debug_drop());
        w.on_queued(&queued(3, "c"), gw(2), Instant::now());
        assert!(!w.take_debug_drop(), "once only");
        assert_eq!(w.received(), 3);
    }
}

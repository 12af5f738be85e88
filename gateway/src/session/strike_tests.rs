//! The bound on refused requests (`strikes.rs`, `Session::admit_request`) on
//! a fake clock: what kicks, what never does. The client patterns run
//! against the gateway's default limits, so changing a default re-checks them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use outpost_schema::{ChannelKind, ErrorCode};

use super::tests::{drain, kicked, ms};
use super::*;
use crate::config::GatewayConfig;

/// The tests' limits with a bound on refusals of `max_refused`.
fn limits(max_refused: u32) -> SessionLimits {
    SessionLimits {
        max_refused_requests_per_window: max_refused,
        ..tests::limits()
    }
}

fn is_refused(v: &Verdict, code: ErrorCode) -> bool {
    matches!(v, Verdict::Refuse { code: c, .. } if *c == code)
}

fn kicked_for_refusals(s: &mut Session) -> bool {
    kicked(&drain(s), ErrorCode::RateLimited)
}

#[test]
fn the_refusal_over_the_bound_kicks_with_rate_limited() {
    let t0 = Instant::now();
    let mut s = Session::new(limits(10), t0);
    s.open_channel(t0, 1, ChannelKind::Echo).unwrap();
    // Every kind of refusal counts: a reused id (1), the in-flight bound of
    // 2 (4), then, once the burst of 5 is spent, the rate (5).
    assert_eq!(s.admit_request(t0, 1, 1), Verdict::Admit);
    assert!(is_refused(&s.admit_request(t0, 1, 1), ErrorCode::InvalidRequest));
    assert_eq!(s.admit_request(t0, 1, 2), Verdict::Admit);
    for id in 3..=6 {
        assert!(is_refused(
            &s.admit_request(t0, 1, id),
            ErrorCode::TooManyInFlight
        ));
    }
    s.request_done(1, 1);
    s.request_done(1, 2);
    for id in 10..13 {
        assert_eq!(s.admit_request(t0, 1, id), Verdict::Admit);
        s.request_done(1, id);
    }
    for id in 20..25 {
        assert!(is_refused(&s.admit_request(t0, 1, id), ErrorCode::RateLimited));
    }
    // 10 refusals: the bound, not over it.
    assert!(!s.has_action() && !s.is_closed());
    // The 11th is answered as usual, and closes the session.
    assert!(is_refused(
        &s.admit_request(t0 + ms(1), 1, 30),
        ErrorCode::RateLimited
    ));
    assert!(kicked_for_refusals(&mut s));
    assert!(s.is_closed());
    assert!(is_refused(
        &s.admit_request(t0 + ms(2), 1, 31),
        ErrorCode::ShuttingDown
    ));
    assert!(!s.has_action(), "nothing after the Close");
}

#[test]
fn admitted_requests_are_never_counted() {
    let t0 = Instant::now();
    let mut l = limits(1);
    l.request_rate_per_sec = 1e9;
    let mut s = Session::new(l, t0);
    s.open_channel(t0, 1, ChannelKind::Echo).unwrap();
    for id in 1..=100_000u64 {
        assert_eq!(
            s.admit_request(t0 + Duration::from_micros(id), 1, id),
            Verdict::Admit
        );
        s.request_done(1, id);
    }
    assert!(!s.has_action() && !s.is_closed());
}

#[test]
fn refusals_up_to_the_bound_in_every_window_never_kick() {
    let t0 = Instant::now();
    let mut s = Session::new(limits(10), t0);
    s.open_channel(t0, 1, ChannelKind::Echo).unwrap();
    for id in 1..=2 {
        assert_eq!(s.admit_request(t0, 1, id), Verdict::Admit);
    }
    // 10 refusals in each of 6 consecutive windows (the first begins at the
    // first refusal): 60 in one minute, never 11 in one window.
    let mut id = 100;
    for window in 0..6u32 {
        let start = t0 + REFUSAL_WINDOW * window;
        for i in 0..10 {
            id += 1;
            assert!(is_refused(
                &s.admit_request(start + ms(i * 999), 1, id),
                ErrorCode::TooManyInFlight
            ));
        }
        assert!(!s.has_action(), "window {window}");
    }
    // The 11th of the last window kicks.
    let last = t0 + REFUSAL_WINDOW * 5 + REFUSAL_WINDOW - ms(1);
    s.admit_request(last, 1, id + 1);
    assert!(kicked_for_refusals(&mut s));
}

/// A session with the gateway's default limits.
fn default_session(t0: Instant) -> Session {
    let mut s = Session::new(crate::server::session_limits(&GatewayConfig::default()), t0);
    s.open_channel(t0, 1, ChannelKind::Echo).unwrap();
    s
}

/// How a simulated client reacts to a refusal.
#[derive(Clone, Copy)]
enum OnRefusal {
    /// Waits the `retry_after_ms` the `Error` carries (the wire's value:
    /// [`retry_after_ms`]) before sending again.
    HonourRetryAfter,
    /// Sends again as soon as the error arrives.
    RetryAtOnce,
}

/// `callers` concurrent callers on one channel, each sending its next request
/// as soon as its previous one is answered (Echo: answered as it is read) or,
/// when refused, as `on_refusal` says, over a round trip of `rtt`; for
/// `duration`, against the default limits. Returns the most refusals in any
/// stretch of `REFUSAL_WINDOW` from a refusal on (the most any window can
/// hold, wherever it begins), and whether the session was kicked.
fn simulate(callers: u64, rtt: Duration, on_refusal: OnRefusal, duration: Duration) -> (usize, bool) {
    let t0 = Instant::now();
    let mut s = default_session(t0);
    // When each caller's next request reaches the gateway.
    let mut arrivals: BinaryHeap<Reverse<(Instant, u64)>> = (0..callers).map(|c| Reverse((t0, c))).collect();
    let mut refusals: Vec<Instant> = Vec::new();
    let mut next_id = 0;
    while let Some(Reverse((at, caller))) = arrivals.pop() {
        if at > t0 + duration {
            break;
        }
        next_id += 1;
        let wait = match s.admit_request(at, 1, next_id) {
            Verdict::Admit => {
                s.request_done(1, next_id);
                Duration::ZERO
            }
            Verdict::Refuse { retry_after, .. } => {
                refusals.push(at);
                match on_refusal {
                    OnRefusal::RetryAtOnce => Duration::ZERO,
                    OnRefusal::HonourRetryAfter => ms(u64::from(retry_after_ms(retry_after))),
                }
            }
        };
        if s.is_closed() {
            return (refusals.len(), kicked_for_refusals(&mut s));
        }
        arrivals.push(Reverse((at + rtt + wait, caller)));
    }
    let most = (0..refusals.len())
        .map(|i| refusals[i..].partition_point(|t| *t < refusals[i] + REFUSAL_WINDOW))
        .max()
        .unwrap_or(0);
    (most, false)
}

fn bound() -> usize {
    GatewayConfig::default().limits.max_refused_requests_per_window as usize
}

/// PROTOCOL.md §4: a client that honours `retry_after_ms` is never kicked,
/// even as a herd of concurrent callers (each told the same wait, all but
/// one refused again): up to the SDK's in-flight bound (32 callers) at an
/// internet round trip, or 8 on a LAN.
#[test]
fn a_client_that_backs_off_as_told_is_never_kicked() {
    let minute = Duration::from_secs(60);
    for (callers, rtt) in [
        (1, ms(1)),
        (1, Duration::from_micros(100)),
        (8, ms(1)),
        (32, ms(20)),
    ] {
        let (most, kicked) = simulate(callers, rtt, OnRefusal::HonourRetryAfter, minute);
        eprintln!("{callers} callers honouring retry_after, rtt {rtt:?}: at most {most} refusals per window");
        assert!(
            !kicked && most <= bound(),
            "{callers} callers, rtt {rtt:?}: {most}"
        );
    }
}

/// A naive app that retries each refusal at once, from one loop: not kicked
/// over a real network (a round trip of 1 ms or more: at most 1,000 requests
/// a second), kicked when it keeps it up at flood rates (a round trip of
/// 50 µs: 20,000 a second; a raw flood on loopback reaches 50,000).
#[test]
fn retrying_at_once_is_kicked_only_at_flood_rates() {
    let minute = Duration::from_secs(60);
    for rtt in [ms(1), ms(2)] {
        let (most, kicked) = simulate(1, rtt, OnRefusal::RetryAtOnce, minute);
        eprintln!("one caller retrying at once, rtt {rtt:?}: at most {most} refusals per window");
        assert!(!kicked && most <= bound(), "rtt {rtt:?}: {most}");
    }
    let (refused, kicked) = simulate(1, Duration::from_micros(50), OnRefusal::RetryAtOnce, minute);
    assert!(kicked, "a flood for a minute was not kicked");
    assert_eq!(refused, bound() + 1, "kicked at the first refusal over the bound");
}

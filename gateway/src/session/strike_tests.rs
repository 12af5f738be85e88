//! The bounds on refused requests (`strikes.rs`, `Session::admit_request`)
//! and on channels refused or failed (`Session::channel_failed`, through the
//! `ChannelStream` machine) on a fake clock: what kicks, what never does. The
//! client patterns run against the gateway's default limits, so changing a
//! default re-checks them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use outpost_schema::{ChannelKind, ChannelMsg, ErrorCode, Request, RequestBody};

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
    assert_eq!(s.rate_limit_cause(), Some(RateLimitCause::RefusedRequests));
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

/// The tests' limits with a bound on failed channels of `max_failed`.
fn channel_limits(max_failed: u32) -> SessionLimits {
    SessionLimits {
        max_failed_channels_per_window: max_failed,
        ..tests::limits()
    }
}

/// One turn of the looping client on stream `id` at `now`: opens an Echo
/// channel, then sends `bad`; returns what the gateway did with the second
/// frame. The stream ends (the driver closes the channel) after it.
fn open_then(s: &mut Session, id: ChannelId, now: Instant, bad: StreamInput) -> StreamStep {
    let mut stream = ChannelStream::new(id);
    let open = StreamInput::Frame(ChannelMsg::Open(ChannelKind::Echo).encode());
    let opened = stream.handle_input(now, s, open, |_| true);
    if opened != StreamStep::Opened(ChannelKind::Echo) {
        return opened;
    }
    let step = stream.handle_input(now, s, bad, |_| true);
    s.close_channel(id);
    step
}

fn junk() -> StreamInput {
    StreamInput::Frame(vec![4, 0, 0, 0, 1, 2, 3, 4])
}

/// The loop the audit found: open, bad frame, open again. Every kind of
/// channel the gateway refuses or fails counts: a frame that fails
/// verification, one the framing refused, request id 0, a first frame that
/// is not `OpenChannel`, a channel kind this gateway does not serve.
#[test]
fn a_client_looping_open_bad_frame_is_kicked_with_rate_limited() {
    let t0 = Instant::now();
    let mut s = Session::new(channel_limits(5), t0);
    let id0 = Request {
        request_id: 0,
        body: RequestBody::Echo {
            payload: vec![],
            push_count: 0,
            delay_ms: 0,
        },
    };
    let too_large = StreamInput::BadFrame(FrameError {
        code: ErrorCode::FrameTooLarge,
        message: "too large".into(),
    });
    assert!(matches!(
        open_then(&mut s, 0, t0, junk()),
        StreamStep::Fail { .. }
    ));
    assert!(matches!(
        open_then(&mut s, 4, t0, too_large),
        StreamStep::Fail { .. }
    ));
    let zero = StreamInput::Frame(ChannelMsg::Request(id0).encode());
    assert!(matches!(open_then(&mut s, 8, t0, zero), StreamStep::Fail { .. }));
    let mut not_open = ChannelStream::new(12);
    let step = not_open.handle_input(t0, &mut s, junk(), |_| true);
    assert!(matches!(step, StreamStep::Refuse { .. }), "{step:?}");
    let mut unknown = ChannelStream::new(16);
    let open = StreamInput::Frame(ChannelMsg::Open(ChannelKind::Telemetry).encode());
    let step = unknown.handle_input(t0, &mut s, open, |k| k != ChannelKind::Telemetry);
    assert!(
        matches!(
            step,
            StreamStep::Refuse {
                code: ErrorCode::UnknownChannel,
                ..
            }
        ),
        "{step:?}"
    );
    // 5 channels: the bound, not over it.
    assert!(!s.has_action() && !s.is_closed());
    // The 6th is answered as usual (its channel-level error), and closes the
    // session.
    assert!(matches!(
        open_then(&mut s, 20, t0 + ms(1), junk()),
        StreamStep::Fail { .. }
    ));
    assert!(kicked(&drain(&mut s), ErrorCode::RateLimited));
    assert_eq!(s.rate_limit_cause(), Some(RateLimitCause::FailedChannels));
    // Once closed, a new stream is refused and nothing more is counted or sent.
    let step = open_then(&mut s, 24, t0 + ms(2), junk());
    assert!(
        matches!(
            step,
            StreamStep::Refuse {
                code: ErrorCode::ShuttingDown,
                ..
            }
        ),
        "{step:?}"
    );
    assert!(!s.has_action(), "nothing after the Close");
}

#[test]
fn failed_channels_up_to_the_bound_in_every_window_never_kick() {
    let t0 = Instant::now();
    let mut s = Session::new(channel_limits(10), t0);
    let mut id = 0;
    // 10 in each of 6 consecutive windows (the first begins at the first
    // failure): 60 in one minute, never 11 in one window.
    for window in 0..6u32 {
        let start = t0 + REFUSAL_WINDOW * window;
        for i in 0..10 {
            id += 4;
            open_then(&mut s, id, start + ms(i * 999), junk());
        }
        assert!(!s.has_action(), "window {window}");
    }
    // The 11th of the last window kicks.
    let last = t0 + REFUSAL_WINDOW * 5 + REFUSAL_WINDOW - ms(1);
    open_then(&mut s, id + 4, last, junk());
    assert!(kicked(&drain(&mut s), ErrorCode::RateLimited));
}

/// A stream the client ends before its first frame (finished: an empty
/// stream; or reset) is a failed channel too: the loop open, end, open again
/// costs the gateway a stream, a task and a read each time. Ended after
/// `OpenChannel`, however many, it is not.
#[test]
fn streams_ended_before_their_first_frame_count_as_failed_channels() {
    let t0 = Instant::now();
    let mut s = Session::new(channel_limits(5), t0);
    let ended = |i: u64| {
        if i % 2 == 0 {
            StreamInput::Finished
        } else {
            StreamInput::Reset
        }
    };
    // Opened and used, then ended either way: never counted.
    for i in 0..100 {
        // `open_then` returns the opening's step if it did not open.
        assert_eq!(open_then(&mut s, 1_000 + 4 * i, t0, ended(i)), StreamStep::Finish);
    }
    assert!(
        !s.has_action() && !s.is_closed(),
        "channels ended after their opening"
    );
    // Ended before any frame: the bound, then one over it.
    for i in 0..5 {
        let mut stream = ChannelStream::new(4 * i);
        assert_eq!(
            stream.handle_input(t0, &mut s, ended(i), |_| true),
            StreamStep::Finish
        );
        assert!(!stream.wants_frames());
    }
    assert!(!s.has_action() && !s.is_closed(), "5 empty streams: the bound");
    let mut sixth = ChannelStream::new(20);
    assert_eq!(
        sixth.handle_input(t0 + ms(1), &mut s, StreamInput::Reset, |_| true),
        StreamStep::Finish
    );
    assert!(kicked(&drain(&mut s), ErrorCode::RateLimited));
    assert_eq!(s.rate_limit_cause(), Some(RateLimitCause::FailedChannels));
}

/// The two bounds are apart: refused requests up to theirs and failed
/// channels up to theirs, in the same window, kick nobody; and channels that
/// open and serve are never counted.
#[test]
fn refusals_and_failed_channels_count_against_their_own_bounds() {
    let t0 = Instant::now();
    let mut l = channel_limits(3);
    l.max_refused_requests_per_window = 3;
    let mut s = Session::new(l, t0);
    for id in (100..10_000).step_by(4) {
        assert_eq!(
            open_then(&mut s, id, t0, StreamInput::Finished),
            StreamStep::Finish
        );
    }
    for id in 0..3 {
        open_then(&mut s, id * 4, t0, junk());
    }
    s.open_channel(t0, 1, ChannelKind::Echo).unwrap();
    for id in 1..=2 {
        assert_eq!(s.admit_request(t0, 1, id), Verdict::Admit);
    }
    for id in 3..6 {
        assert!(is_refused(
            &s.admit_request(t0, 1, id),
            ErrorCode::TooManyInFlight
        ));
    }
    assert!(!s.has_action() && !s.is_closed());
}

/// The default bound: a client that opens a channel this gateway does not
/// serve once a second (an app retrying it) is never kicked; one that loops
/// at 100 a second is, within the window.
#[test]
fn the_default_bound_spares_an_app_retrying_an_unknown_channel() {
    let t0 = Instant::now();
    let mut s = default_session(t0);
    let unknown = || StreamInput::Frame(ChannelMsg::Open(ChannelKind::Telemetry).encode());
    for i in 0..600u64 {
        let mut stream = ChannelStream::new(100 + 4 * i);
        stream.handle_input(t0 + ms(i * 1_000), &mut s, unknown(), |k| {
            k != ChannelKind::Telemetry
        });
    }
    assert!(!s.has_action() && !s.is_closed(), "one a second for 10 minutes");
    let bound = GatewayConfig::default().limits.max_failed_channels_per_window as u64;
    let start = t0 + ms(600_000);
    for i in 0..=bound {
        let mut stream = ChannelStream::new(10_000 + 4 * i);
        stream.handle_input(start + ms(i * 10), &mut s, unknown(), |k| {
            k != ChannelKind::Telemetry
        });
    }
    assert!(kicked(&drain(&mut s), ErrorCode::RateLimited), "100 a second");
}

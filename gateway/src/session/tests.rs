//! Session state machine on a fake clock: no sockets, no sleeping.

use std::time::{Duration, Instant};

use outpost_schema::{ChannelKind, ControlMsg, ErrorCode, GoAway, Kick};

use super::*;

pub(super) fn limits() -> SessionLimits {
    SessionLimits {
        max_channels: 4,
        max_in_flight_per_channel: 2,
        outbound_queue_frames: 3,
        outbound_queue_bytes: 1000,
        request_rate_per_sec: 10.0,
        request_burst: 5.0,
        control_rate_per_sec: 2.0,
        control_burst: 4.0,
        idle_timeout: Duration::from_secs(30),
        max_refused_requests_per_window: 1000,
        max_failed_channels_per_window: 100,
    }
}

pub(super) fn drain(s: &mut Session) -> Vec<Action> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Whether `actions` are exactly a `Kick` with `code` followed by the close
/// with the same code: how every kick of the session ends.
pub(super) fn kicked(actions: &[Action], code: ErrorCode) -> bool {
    matches!(
        actions,
        [
            Action::SendControl(ControlMsg::Kick(Kick { reason, .. })),
            Action::Close { code: closed, .. }
        ] if *reason == code && *closed == code
    )
}

#[test]
fn ping_gets_pong_and_resets_the_idle_timer() {
    let t0 = Instant::now();
    let mut s = Session::new(limits(), t0);
    assert_eq!(s.poll_timeout(), Some(t0 + ms(30_000)));
    s.handle_control(t0 + ms(20_000), ControlMsg::Ping { nonce: 9 });
    assert_eq!(
        drain(&mut s),
        vec![Action::SendControl(ControlMsg::Pong { nonce: 9 })]
    );
    assert_eq!(s.poll_timeout(), Some(t0 + ms(50_000)));
    // The old deadline passes without effect.
    s.handle_timeout(t0 + ms(30_000));
    assert!(drain(&mut s).is_empty());
    assert!(!s.is_closed());
}

#[test]
fn heartbeat_timeout_kicks_with_idle_timeout() {
    let t0 = Instant::now();
    let mut s = Session::new(limits(), t0);
    s.handle_timeout(t0 + ms(29_999));
    assert!(drain(&mut s).is_empty());
    s.handle_timeout(t0 + ms(30_000));
    let actions = drain(&mut s);
    assert!(kicked(&actions, ErrorCode::IdleTimeout));
    assert!(s.is_closed());
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(s.rate_limit_cause(), None, "not a RateLimited kick");
    // Nothing more is ever emitted after Close.
    s.handle_control(t0 + ms(31_000), ControlMsg::Ping { nonce: 1 });
    s.handle_timeout(t0 + ms(90_000));
    assert!(drain(&mut s).is_empty());
}

#[test]
fn channel_traffic_also_counts_as_activity() {
    let t0 = Instant::now();
    let mut s = Session::new(limits(), t0);
    s.open_channel(t0 + ms(10_000), 1, ChannelKind::Echo).unwrap();
    assert_eq!(s.admit_request(t0 + ms(25_000), 1, 101), Verdict::Admit);
    s.handle_timeout(t0 + ms(40_000));
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.poll_timeout(), Some(t0 + ms(55_000)));
}

#[test]
fn request_rate_limit_refuses_with_retry_after_then_recovers() {
    let t0 = Instant::now();
    let mut l = limits();
    l.max_in_flight_per_channel = 100;
    let mut s = Session::new(l, t0);
    s.open_channel(t0, 1, ChannelKind::Echo).unwrap();
    for n in 0..5 {
        assert_eq!(s.admit_request(t0, 1, 102 + n), Verdict::Admit);
    }
    match s.admit_request(t0, 1, 120) {
        Verdict::Refuse {
            code: ErrorCode::RateLimited,
            retry_after: Some(wait),
            ..
        } => {
            assert_eq!(wait, ms(100))
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    // The session stays open: rate limiting refuses requests, it does not kick.
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.admit_request(t0 + ms(100), 1, 130), Verdict::Admit);
    assert!(matches!(
        s.admit_request(t0 + ms(100), 1, 131),
        Verdict::Refuse {
            code: ErrorCode::RateLimited,
            ..
        }
    ));
}

#[test]
fn in_flight_bound_per_channel() {
    let t0 = Instant::now();
    let mut s = Session::new(limits(), t0);
    s.open_channel(t0, 1, ChannelKind::Echo).unwrap();
    s.open_channel(t0, 2, ChannelKind::Echo).unwrap();
    assert_eq!(s.admit_request(t0, 1, 106), Verdict::Admit);
    assert_eq!(s.admit_request(t0, 1, 107), Verdict::Admit);
    assert!(matches!(
        s.admit_request(t0, 1, 108),
        Verdict::Refuse {
            code: ErrorCode::TooManyInFlight,
            ..
        }
    ));
    // Another channel has its own bound.
    assert_eq!(s.admit_request(t0, 2, 109), Verdict::Admit);
    s.request_done(1, 106);
    assert_eq!(s.admit_request(t0, 1, 110), Verdict::Admit);
}

#[test]
fn a_request_id_in_flight_is_refused_until_answered_and_takes_no_token() {
    let t0 = Instant::now();
    let mut l = limits();
    l.request_burst = 3.0;
    let mut s = Session::new(l, t0);
    s.open_channel(t0, 1, ChannelKind::Echo).unwrap();
    s.open_channel(t0, 2, ChannelKind::Echo).unwrap();
    assert_eq!(s.admit_request(t0, 1, 7), Verdict::Admit);
    for _ in 0..3 {
        assert!(matches!(
            s.admit_request(t0, 1, 7),
            Verdict::Refuse {
                code: ErrorCode::InvalidRequest,
                ..
            }
        ));
    }
    // Ids are per channel, and the refusals above took no rate token.
    assert_eq!(s.admit_request(t0, 2, 7), Verdict::Admit);
    s.request_done(1, 7);
    assert_eq!(
        s.admit_request(t0, 1, 7),
        Verdict::Admit,
        "answered ids may be reused"
    );
    // Duplicates are found before the in-flight bound: both slots of channel 1
    // are taken now (7 and 8), and a repeated 8 is still InvalidRequest.
    s.request_done(2, 7);
    assert_eq!(s.admit_request(t0 + ms(1000), 1, 8), Verdict::Admit);
    assert!(matches!(
        s.admit_request(t0 + ms(1000), 1, 8),
        Verdict::Refuse {
            code: ErrorCode::InvalidRequest,
            ..
        }
    ));
    assert!(matches!(
        s.admit_request(t0 + ms(1000), 1, 9),
        Verdict::Refuse {
            code: ErrorCode::TooManyInFlight,
            ..
        }
    ));
}

#[test]
fn paced_pushes_keep_half_the_queue_free() {
    let t0 = Instant::now();
    let mut l = limits();
    l.outbound_queue_frames = 4;
    l.outbound_queue_bytes = 1000;
    let mut s = Session::new(l, t0);
    s.open_channel(t0, 1, ChannelKind::State).unwrap();
    assert!(s.has_room_for_paced(1, 900), "an empty queue takes any frame");
    s.enqueue(1, 900).unwrap();
    assert!(!s.has_room_for_paced(1, 10));
    s.dequeued(1, 900);
    s.enqueue(1, 400).unwrap();
    assert!(s.has_room_for_paced(1, 100), "500 of 1000 bytes, 2 of 4 frames");
    assert!(!s.has_room_for_paced(1, 101));
    s.enqueue(1, 1).unwrap();
    assert!(!s.has_room_for_paced(1, 1), "3 of 4 frames");
    assert!(
        s.has_room_for_paced(9, 10_000),
        "no such channel: the send fails instead"
    );
}

#[test]
fn control_flood_is_kicked_with_rate_limited() {
    let t0 = Instant::now();
    let mut s = Session::new(limits(), t0);
    for n in 0..4 {
        s.handle_control(t0, ControlMsg::Ping { nonce: n });
    }
    assert_eq!(drain(&mut s).len(), 4);
    assert_eq!(s.rate_limit_cause(), None);
    s.handle_control(t0, ControlMsg::Ping { nonce: 99 });
    let actions = drain(&mut s);
    assert!(kicked(&actions, ErrorCode::RateLimited));
    assert_eq!(s.rate_limit_cause(), Some(RateLimitCause::ControlFrames));
}

#[test]
fn unexpected_control_frame_closes_with_unexpected_frame() {
    let t0 = Instant::now();
    let mut s = Session::new(limits(), t0);
    s.handle_control(t0, ControlMsg::Hello(Default::default()));
    assert!(matches!(
        &drain(&mut s)[..],
        [Action::Close {
            code: ErrorCode::UnexpectedFrame,
            ..
        }]
    ));
}

#[test]
fn outbound_queue_bounds_close_a_slow_consumer() {
    let t0 = Instant::now();
    let mut s = Session::new(limits(), t0);
    s.open_channel(t0, 1, ChannelKind::Echo).unwrap();
    // Frames bound: 3 frames fit, the 4th does not.
    for _ in 0..3 {
        s.enqueue(1, 10).unwrap();
    }
    s.dequeued(1, 10);
    s.enqueue(1, 10).unwrap();
    assert_eq!(s.enqueue(1, 10), Err(SlowConsumer));
    let actions = drain(&mut s);
    assert!(kicked(&actions, ErrorCode::SlowConsumer));
    // Bytes bound, on a fresh session.
    let mut s = Session::new(limits(), t0);
    s.open_channel(t0, 1, ChannelKind::Echo).unwrap();
    s.enqueue(1, 600).unwrap();
    assert_eq!(s.enqueue(1, 401), Err(SlowConsumer));
}

#[test]
fn drain_sends_goaway_then_closes_at_the_deadline() {
    let t0 = Instant::now();
    let mut s = Session::new(limits(), t0);
    let deadline = t0 + ms(20_000);
    s.begin_drain(ms(7_500), deadline);
    assert_eq!(
        drain(&mut s),
        vec![Action::SendControl(ControlMsg::GoAway(GoAway {
            reason: ErrorCode::Draining,
            reconnect_after_ms: 7_500,
            message: "gateway draining; reconnect with your resume token".into(),
        }))]
    );
    assert!(s.is_draining());
    // A second drain request changes nothing.
    s.begin_drain(ms(1), t0 + ms(1));
    assert!(drain(&mut s).is_empty());
    // Keep the session active so idle does not interfere; in-flight requests still work.
    s.handle_control(t0 + ms(15_000), ControlMsg::Ping { nonce: 1 });
    drain(&mut s);
    assert_eq!(s.poll_timeout(), Some(deadline));
    s.handle_timeout(t0 + ms(19_999));
    assert!(drain(&mut s).is_empty());
    s.handle_timeout(deadline);
    assert!(matches!(
        &drain(&mut s)[..],
        [Action::Close {
            code: ErrorCode::Draining,
            ..
        }]
    ));
}

#[test]
fn channel_limit_and_closed_session_refusals() {
    let t0 = Instant::now();
    let mut s = Session::new(limits(), t0);
    for id in 0..4 {
        s.open_channel(t0, id, ChannelKind::Echo).unwrap();
    }
    assert!(s.open_channel(t0, 9, ChannelKind::Echo).is_err());
    s.close_channel(0);
    s.open_channel(t0, 9, ChannelKind::Echo).unwrap();
    s.kick(ErrorCode::KickedByOperator, "bye");
    assert!(s.open_channel(t0, 10, ChannelKind::Echo).is_err());
    assert!(matches!(
        s.admit_request(t0, 9, 111),
        Verdict::Refuse {
            code: ErrorCode::ShuttingDown,
            ..
        }
    ));
}

fn refreshes(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| **a == Action::RefreshResumeToken)
        .count()
}

#[test]
fn resume_refresh_is_off_unless_enabled() {
    let t0 = Instant::now();
    let mut s = Session::new(limits(), t0);
    assert_eq!(s.poll_timeout(), Some(t0 + ms(30_000)));
    for i in 1..=5 {
        s.handle_control(t0 + ms(i * 5_000), ControlMsg::Ping { nonce: i });
        s.handle_timeout(t0 + ms(i * 5_000));
    }
    assert_eq!(refreshes(&drain(&mut s)), 0);
    // A zero interval is off too (never a refresh storm).
    s.enable_resume_refresh(Duration::ZERO, t0 + ms(25_000));
    s.handle_timeout(t0 + ms(25_000));
    assert_eq!(refreshes(&drain(&mut s)), 0);
    assert_eq!(s.poll_timeout(), Some(t0 + ms(55_000)));
}

#[test]
fn resume_refresh_is_due_every_interval_while_active() {
    let t0 = Instant::now();
    let mut s = Session::new(limits(), t0);
    s.enable_resume_refresh(ms(10_000), t0);
    // Welcome carried a token: the first refresh is one interval later, and the
    // machine asks to be woken for it (before the idle timeout).
    assert_eq!(s.poll_timeout(), Some(t0 + ms(10_000)));
    s.handle_timeout(t0 + ms(9_999));
    assert!(drain(&mut s).is_empty());
    s.handle_timeout(t0 + ms(10_000));
    assert_eq!(drain(&mut s), vec![Action::RefreshResumeToken]);
    assert_eq!(s.poll_timeout(), Some(t0 + ms(20_000)));
    // Waking again at the same instant does not refresh twice.
    s.handle_timeout(t0 + ms(10_000));
    assert!(drain(&mut s).is_empty());
    // Keep the session alive; one refresh per interval over a minute.
    let mut total = 1;
    for i in 1..=10 {
        let now = t0 + ms(10_000 + i * 5_000);
        s.handle_control(now, ControlMsg::Ping { nonce: i });
        s.handle_timeout(now);
        total += refreshes(&drain(&mut s));
    }
    assert_eq!(total, 6, "refreshes at 10, 20, .., 60 s");
    assert!(!s.is_closed());
}

#[test]
fn a_late_wakeup_gives_one_refresh_not_a_burst() {
    let t0 = Instant::now();
    let mut s = Session::new(limits(), t0);
    s.enable_resume_refresh(ms(1_000), t0);
    // The runtime was busy for 5.5 intervals: one refresh now, the next a full
    // interval later.
    s.handle_timeout(t0 + ms(5_500));
    assert_eq!(drain(&mut s), vec![Action::RefreshResumeToken]);
    assert_eq!(s.poll_timeout(), Some(t0 + ms(6_500)));
}

#[test]
fn resume_refresh_continues_while_draining_and_stops_at_close() {
    let t0 = Instant::now();
    let mut s = Session::new(limits(), t0);
    s.enable_resume_refresh(ms(4_000), t0);
    let deadline = t0 + ms(10_000);
    s.begin_drain(ms(2_000), deadline);
    assert!(matches!(
        &drain(&mut s)[..],
        [Action::SendControl(ControlMsg::GoAway(_))]
    ));
    // A drained client may stay until the deadline: its token is kept fresh.
    assert_eq!(s.poll_timeout(), Some(t0 + ms(4_000)));
    s.handle_timeout(t0 + ms(4_000));
    assert_eq!(drain(&mut s), vec![Action::RefreshResumeToken]);
    s.handle_timeout(t0 + ms(8_000));
    assert_eq!(drain(&mut s), vec![Action::RefreshResumeToken]);
    assert_eq!(s.poll_timeout(), Some(deadline));
    // The deadline and a due refresh at the same instant: close only.
    s.enable_resume_refresh(ms(2_000), t0 + ms(8_000));
    s.handle_timeout(deadline);
    let actions = drain(&mut s);
    assert!(matches!(
        &actions[..],
        [Action::Close {
            code: ErrorCode::Draining,
            ..
        }]
    ));
    assert_eq!(s.poll_timeout(), None);
    s.handle_timeout(t0 + ms(60_000));
    assert!(drain(&mut s).is_empty());
}

#[test]
fn no_resume_refresh_after_a_kick_or_idle_close() {
    let t0 = Instant::now();
    let mut s = Session::new(limits(), t0);
    s.enable_resume_refresh(ms(30_000), t0);
    // Idle timeout and refresh fall due together: the session is kicked and
    // gets no new token (PROTOCOL.md 3.4: no resume after a Kick).
    s.handle_timeout(t0 + ms(30_000));
    let actions = drain(&mut s);
    assert_eq!(refreshes(&actions), 0);
    assert!(matches!(
        actions.last(),
        Some(Action::Close {
            code: ErrorCode::IdleTimeout,
            ..
        })
    ));

    let mut s = Session::new(limits(), t0);
    s.enable_resume_refresh(ms(1_000), t0);
    s.kick(ErrorCode::KickedByOperator, "bye");
    drain(&mut s);
    assert_eq!(s.poll_timeout(), None);
    s.handle_timeout(t0 + ms(5_000));
    assert!(drain(&mut s).is_empty());
}

#[test]
fn a_stalled_control_write_closes_with_slow_consumer_dropping_what_was_queued() {
    let t0 = Instant::now();
    let mut s = Session::new(limits(), t0);
    s.handle_control(t0, ControlMsg::Ping { nonce: 1 });
    s.handle_control(t0, ControlMsg::Ping { nonce: 2 });
    // The driver took the first Pong and its write stalled.
    assert!(matches!(
        s.poll_action(),
        Some(Action::SendControl(ControlMsg::Pong { nonce: 1 }))
    ));
    s.handle_control_write_timeout();
    assert_eq!(
        drain(&mut s),
        vec![Action::Close {
            code: ErrorCode::SlowConsumer,
            message: "control stream not read".into()
        }]
    );
    assert!(s.is_closed());
    // Also when the stalled write was a Kick: the Kick's own close is replaced.
    let mut s = Session::new(limits(), t0);
    s.handle_timeout(t0 + ms(30_000));
    assert!(matches!(
        s.poll_action(),
        Some(Action::SendControl(ControlMsg::Kick(_)))
    ));
    s.handle_control_write_timeout();
    assert!(matches!(
        &drain(&mut s)[..],
        [Action::Close {
            code: ErrorCode::SlowConsumer,
            ..
        }]
    ));
}

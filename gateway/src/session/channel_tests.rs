//! The channel-stream rules of PROTOCOL.md §4 on a fake clock: real frames
//! (encoded and decoded as on the wire), the real session machine, no sockets.

use std::time::{Duration, Instant};

use outpost_schema::{
    ChannelKind, ChannelMsg, ControlMsg, ErrorCode, Kick, Request, RequestBody, Response, ResponseBody,
};

use super::*;
use crate::session::{Action, SessionLimits};

fn limits() -> SessionLimits {
    SessionLimits {
        max_channels: 2,
        max_in_flight_per_channel: 2,
        outbound_queue_frames: 8,
        outbound_queue_bytes: 10_000,
        request_rate_per_sec: 10.0,
        request_burst: 4.0,
        control_rate_per_sec: 2.0,
        control_burst: 4.0,
        idle_timeout: Duration::from_secs(30),
        max_refused_requests_per_window: 6,
        max_failed_channels_per_window: 5,
    }
}

/// A session at `t0` and its streams.
struct Fixture {
    t0: Instant,
    session: Session,
}

impl Fixture {
    fn new() -> Self {
        let t0 = Instant::now();
        Fixture {
            t0,
            session: Session::new(limits(), t0),
        }
    }

    /// Feeds `input` to `stream` at `t0 + at_ms`; this gateway serves every
    /// channel but `Telemetry`.
    fn feed(&mut self, stream: &mut ChannelStream, at_ms: u64, input: StreamInput) -> StreamStep {
        let now = self.t0 + Duration::from_millis(at_ms);
        stream.handle_input(now, &mut self.session, input, |k| k != ChannelKind::Telemetry)
    }

    fn frame(&mut self, stream: &mut ChannelStream, at_ms: u64, msg: ChannelMsg) -> StreamStep {
        self.feed(stream, at_ms, StreamInput::Frame(msg.encode()))
    }

    /// A stream that opened an `Echo` channel.
    fn open_echo(&mut self, id: ChannelId) -> ChannelStream {
        let mut s = ChannelStream::new(id);
        let step = self.frame(&mut s, 0, ChannelMsg::Open(ChannelKind::Echo));
        assert_eq!(step, StreamStep::Opened(ChannelKind::Echo));
        s
    }
}

fn echo(request_id: u64) -> ChannelMsg {
    ChannelMsg::Request(Request {
        request_id,
        body: RequestBody::Echo {
            payload: b"x".to_vec(),
            push_count: 0,
            delay_ms: 0,
        },
    })
}

fn refused(step: &StreamStep) -> ErrorCode {
    match step {
        StreamStep::Refuse { code, .. } => *code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn failed(step: &StreamStep) -> ErrorCode {
    match step {
        StreamStep::Fail { code, .. } => *code,
        other => panic!("expected a channel-level error, got {other:?}"),
    }
}

fn answered(step: &StreamStep) -> (u64, ErrorCode) {
    match step {
        StreamStep::Answer { request_id, code, .. } => (*request_id, *code),
        other => panic!("expected an error answer, got {other:?}"),
    }
}

#[test]
fn the_first_frame_must_open_a_served_channel_within_the_limit() {
    let mut f = Fixture::new();
    // Not OpenChannel.
    let mut s = ChannelStream::new(0);
    assert_eq!(refused(&f.frame(&mut s, 0, echo(1))), ErrorCode::UnexpectedFrame);
    assert!(!s.wants_frames(), "a refused stream is not read further");
    // Garbage, and a frame the framing already refused.
    let mut s = ChannelStream::new(4);
    let garbage = StreamInput::Frame(vec![4, 0, 0, 0, 1, 2, 3, 4]);
    assert_eq!(refused(&f.feed(&mut s, 0, garbage)), ErrorCode::BadFrame);
    let mut s = ChannelStream::new(8);
    let too_large = StreamInput::BadFrame(FrameError {
        code: ErrorCode::FrameTooLarge,
        message: "frame of 1 GiB".into(),
    });
    assert_eq!(refused(&f.feed(&mut s, 0, too_large)), ErrorCode::FrameTooLarge);
    // A channel this gateway does not serve.
    let mut s = ChannelStream::new(12);
    let telemetry = ChannelMsg::Open(ChannelKind::Telemetry);
    assert_eq!(refused(&f.frame(&mut s, 0, telemetry)), ErrorCode::UnknownChannel);
    // Within the session's channel limit (2), then over it.
    f.open_echo(16);
    f.open_echo(20);
    let mut s = ChannelStream::new(24);
    let third = ChannelMsg::Open(ChannelKind::State);
    assert_eq!(refused(&f.frame(&mut s, 0, third)), ErrorCode::TooManyInFlight);
    // Once a channel closes there is room again.
    f.session.close_channel(16);
    let mut s = ChannelStream::new(28);
    let again = f.frame(&mut s, 0, ChannelMsg::Open(ChannelKind::State));
    assert_eq!(again, StreamStep::Opened(ChannelKind::State));
}

/// Nothing is answered on a stream the client ended before its first frame
/// (it is counted as a failed channel: `strike_tests.rs`).
#[test]
fn a_client_that_finishes_or_resets_before_opening_is_let_go_quietly() {
    let mut f = Fixture::new();
    for (id, ended) in [(0, StreamInput::Finished), (4, StreamInput::Reset)] {
        let mut s = ChannelStream::new(id);
        assert_eq!(f.feed(&mut s, 0, ended), StreamStep::Finish);
        assert!(!s.wants_frames());
    }
    assert!(!f.session.has_action());
}

#[test]
fn requests_are_dispatched_until_the_in_flight_bound_then_answered_with_too_many_in_flight() {
    let mut f = Fixture::new();
    let mut s = f.open_echo(0);
    assert!(matches!(f.frame(&mut s, 1, echo(1)), StreamStep::Dispatch(r) if r.request_id == 1));
    assert!(matches!(f.frame(&mut s, 2, echo(2)), StreamStep::Dispatch(r) if r.request_id == 2));
    assert_eq!(
        answered(&f.frame(&mut s, 3, echo(3))),
        (3, ErrorCode::TooManyInFlight)
    );
    assert!(s.wants_frames(), "a refused request leaves the channel open");
    // An answer frees a place.
    f.session.request_done(0, 1);
    assert!(matches!(f.frame(&mut s, 4, echo(3)), StreamStep::Dispatch(_)));
}

#[test]
fn request_ids_are_non_zero_and_unique_among_those_in_flight() {
    let mut f = Fixture::new();
    let mut s = f.open_echo(0);
    assert!(matches!(f.frame(&mut s, 1, echo(7)), StreamStep::Dispatch(_)));
    assert_eq!(
        answered(&f.frame(&mut s, 2, echo(7))),
        (7, ErrorCode::InvalidRequest)
    );
    // Once answered, the id may be used again.
    f.session.request_done(0, 7);
    assert!(matches!(f.frame(&mut s, 3, echo(7)), StreamStep::Dispatch(_)));
    // Id 0 names the whole channel: a channel-level error, reading stops.
    assert_eq!(failed(&f.frame(&mut s, 4, echo(0))), ErrorCode::InvalidRequest);
    assert!(!s.wants_frames());
}

#[test]
fn requests_over_the_session_rate_are_answered_rate_limited_with_a_retry_time() {
    let mut f = Fixture::new();
    let mut s = f.open_echo(0);
    // Burst 4: four requests pass (each answered at once), the fifth waits.
    for id in 1..=4 {
        assert!(matches!(f.frame(&mut s, 10, echo(id)), StreamStep::Dispatch(_)));
        f.session.request_done(0, id);
    }
    match f.frame(&mut s, 10, echo(5)) {
        StreamStep::Answer {
            request_id: 5,
            code: ErrorCode::RateLimited,
            retry_after: Some(wait),
            ..
        } => assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        ),
        other => panic!("expected RateLimited, got {other:?}"),
    }
    // 10/s: 100 ms later a token is back.
    assert!(matches!(f.frame(&mut s, 110, echo(5)), StreamStep::Dispatch(_)));
}

#[test]
fn only_requests_may_follow_open_channel() {
    let mut f = Fixture::new();
    for (i, msg) in [
        ChannelMsg::Open(ChannelKind::Echo),
        ChannelMsg::Response(Response {
            request_id: 1,
            body: ResponseBody::Echo { payload: vec![] },
        }),
    ]
    .into_iter()
    .enumerate()
    {
        let mut s = f.open_echo(i as u64 * 4);
        assert_eq!(failed(&f.frame(&mut s, 1, msg)), ErrorCode::UnexpectedFrame);
        assert!(!s.wants_frames());
        f.session.close_channel(i as u64 * 4);
    }
    // A frame error after the open is a channel-level error with its code.
    let mut s = f.open_echo(8);
    let bad = StreamInput::Frame(vec![3, 0, 0, 0, 9, 9, 9]);
    assert_eq!(failed(&f.feed(&mut s, 1, bad)), ErrorCode::BadFrame);
}

#[test]
fn finishing_stops_reading_and_every_frame_counts_as_activity() {
    let mut f = Fixture::new();
    let mut s = f.open_echo(0);
    assert!(matches!(
        f.frame(&mut s, 20_000, echo(1)),
        StreamStep::Dispatch(_)
    ));
    // The request at 20 s moved the idle deadline (30 s of silence).
    assert_eq!(
        f.session.poll_timeout(),
        Some(f.t0 + Duration::from_millis(50_000))
    );
    assert_eq!(f.feed(&mut s, 20_001, StreamInput::Finished), StreamStep::Finish);
    assert!(!s.wants_frames());
    // Nothing is read after the end, whatever arrives.
    assert_eq!(f.frame(&mut s, 20_002, echo(2)), StreamStep::Finish);
}

#[test]
fn a_refusal_over_the_bound_kicks_the_session_and_reading_stops() {
    let mut f = Fixture::new();
    let mut s = f.open_echo(0);
    let mut other = f.open_echo(4);
    // In flight bound 2: ids 1 and 2 are admitted and never answered; every
    // request after them is refused. The bound is 6 refusals per window.
    for id in 1..=2 {
        assert!(matches!(f.frame(&mut s, 1, echo(id)), StreamStep::Dispatch(_)));
    }
    for id in 3..=8 {
        assert_eq!(
            answered(&f.frame(&mut s, 2, echo(id))),
            (id, ErrorCode::TooManyInFlight)
        );
        assert!(s.wants_frames() && !f.session.is_closed(), "refusal {}", id - 2);
    }
    // The 7th refusal is still answered, then nothing more is read.
    assert_eq!(
        answered(&f.frame(&mut s, 3, echo(9))),
        (9, ErrorCode::TooManyInFlight)
    );
    assert!(f.session.is_closed());
    assert!(!s.wants_frames());
    assert!(matches!(
        f.session.poll_action(),
        Some(Action::SendControl(ControlMsg::Kick(Kick {
            reason: ErrorCode::RateLimited,
            ..
        })))
    ));
    // The session's other channels stop at their next frame.
    assert!(other.wants_frames());
    assert_eq!(
        answered(&f.frame(&mut other, 4, echo(1))),
        (1, ErrorCode::ShuttingDown)
    );
    assert!(!other.wants_frames());
}

/// Once the session is closed (here a Kick), every new stream gets the
/// answer a valid `OpenChannel` gets, `ShuttingDown`, whatever its first
/// frame: a bad one is not decoded or verified, nor routed, for a session on
/// its way out, and nothing more is counted or sent.
#[test]
fn once_closed_every_new_stream_is_refused_shutting_down_whatever_its_first_frame() {
    let mut f = Fixture::new();
    f.session.kick(ErrorCode::KickedByOperator, "bye");
    while f.session.poll_action().is_some() {}
    let too_large = || {
        StreamInput::BadFrame(FrameError {
            code: ErrorCode::FrameTooLarge,
            message: "frame of 1 GiB".into(),
        })
    };
    let firsts = [
        StreamInput::Frame(vec![4, 0, 0, 0, 1, 2, 3, 4]),
        too_large(),
        StreamInput::Frame(echo(1).encode()),
        StreamInput::Frame(ChannelMsg::Open(ChannelKind::Telemetry).encode()),
        StreamInput::Frame(ChannelMsg::Open(ChannelKind::Echo).encode()),
    ];
    let mut answers = Vec::new();
    for (i, first) in firsts.into_iter().enumerate() {
        let mut s = ChannelStream::new(4 * i as u64);
        let step = s.handle_input(f.t0, &mut f.session, first, |_| {
            panic!("a closed session's stream is not routed")
        });
        assert_eq!(refused(&step), ErrorCode::ShuttingDown, "stream {i}: {step:?}");
        assert!(!s.wants_frames());
        answers.push(step);
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "one answer: {answers:?}"
    );
    assert!(!f.session.has_action(), "nothing after the Close");
}

/// While draining (GoAway sent, not closed) a new channel still opens, so a
/// bad first frame is still refused for what it is, and counted.
#[test]
fn while_draining_a_bad_first_frame_is_still_refused_for_what_it_is() {
    let mut f = Fixture::new();
    f.session
        .begin_drain(Duration::from_secs(1), f.t0 + Duration::from_secs(30));
    while f.session.poll_action().is_some() {}
    f.open_echo(0);
    let mut s = ChannelStream::new(4);
    let garbage = StreamInput::Frame(vec![4, 0, 0, 0, 1, 2, 3, 4]);
    assert_eq!(refused(&f.feed(&mut s, 1, garbage)), ErrorCode::BadFrame);
    // The bound is 5: four more, then the one over it kicks.
    for i in 0..5 {
        let mut s = ChannelStream::new(8 + 4 * i);
        let garbage = StreamInput::Frame(vec![4, 0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(refused(&f.feed(&mut s, 2, garbage)), ErrorCode::BadFrame);
    }
    assert!(f.session.is_closed());
}

/// Once the session is closed, a new stream is refused before its first
/// frame is read, with the answer a frame read then would get; a stream of a
/// session still open (draining too), or one already opened, is left to be
/// read.
#[test]
fn once_closed_a_new_stream_is_refused_before_its_first_frame_is_read() {
    let mut f = Fixture::new();
    let mut s = ChannelStream::new(0);
    assert_eq!(s.refuse_unread(&f.session), None, "open: read the first frame");
    f.session
        .begin_drain(Duration::from_secs(1), f.t0 + Duration::from_secs(30));
    while f.session.poll_action().is_some() {}
    assert_eq!(s.refuse_unread(&f.session), None, "draining is not closed");
    assert!(s.wants_frames());
    let mut opened = f.open_echo(4);

    f.session.kick(ErrorCode::KickedByOperator, "bye");
    while f.session.poll_action().is_some() {}
    assert_eq!(opened.refuse_unread(&f.session), None, "not a new stream");
    let unread = s
        .refuse_unread(&f.session)
        .expect("a closed session's new stream");
    assert_eq!(refused(&unread), ErrorCode::ShuttingDown);
    assert!(!s.wants_frames(), "nothing is read after the refusal");
    let mut read = ChannelStream::new(8);
    let open = StreamInput::Frame(ChannelMsg::Open(ChannelKind::Echo).encode());
    let after_reading = read.handle_input(f.t0, &mut f.session, open, |_| true);
    assert_eq!(unread, after_reading);
    assert!(!f.session.has_action(), "nothing after the Close");
}

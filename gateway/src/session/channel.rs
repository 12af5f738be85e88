//! The channel-stream machine: the rules of one channel stream (PROTOCOL.md
//! §4), with no IO.
//!
//! One [`ChannelStream`] per client-opened stream after `Welcome`. The driver
//! (`crate::driver::channel`) reads frames and hands each one in, with `now`
//! and the session's [`Session`] machine (which owns the per-session
//! accounting: channels open, requests in flight, the request rate); the
//! machine decodes and checks it and answers with the one [`StreamStep`] the
//! driver must take. The rules, in the order they are checked:
//!
//! 1. The first frame must be `OpenChannel` (`UnexpectedFrame` otherwise), for
//!    a channel this gateway serves (`UnknownChannel`), within the session's
//!    channel limit (the session's code). A refused stream gets `Error {
//!    request_id: 0 }` and is finished. Once the session is closed, every new
//!    stream is refused with `ShuttingDown`, as a valid `OpenChannel` would
//!    be: no work for a session on its way out. Its first frame is not even
//!    read when the session closed before the driver began reading
//!    ([`ChannelStream::refuse_unread`]), and not decoded if it closed during
//!    the read.
//! 2. After it, only `Request` frames: anything else, or a frame that fails
//!    framing or verification, is a channel-level error (`Error { request_id:
//!    0 }` with the frame's code), after which nothing more is read; requests
//!    already dispatched are still answered.
//! 3. `request_id` 0 names the whole channel in answers, so a request carrying
//!    it could never be answered: a channel-level `InvalidRequest`.
//! 4. Every other request is admitted or refused by the session (a duplicate
//!    in-flight id, the in-flight bound, the request rate): a refused request
//!    gets `Error` for its own id and the channel stays open, unless the
//!    refusal was one too many and closed the session (`Kick { RateLimited
//!    }`). Once the session is closed, for that reason or any other, a
//!    channel reads nothing after its next frame.
//! 5. The client finishing its side ends reading; what is in flight is still
//!    answered, then the stream is finished.
//!
//! Every stream refused (1) or failed (2, 3), and every stream the client
//! finishes or resets before its first frame, counts against the session's
//! bound on failed channels (`Session::channel_failed`): the one over it
//! closes the session with `Kick { RateLimited }`, so a client cannot loop
//! open, bad frame (or no frame), open again for ever.

use std::time::Instant;

use outpost_schema::{ChannelKind, ChannelMsg, ErrorCode, Request};

use super::login::FrameError;
use super::machine::{ChannelId, Session, Verdict};

/// What was read from the stream, as the driver hands it in.
#[derive(Debug)]
pub enum StreamInput {
    /// One complete frame, not yet decoded.
    Frame(Vec<u8>),
    /// A frame that failed the framing checks (length, truncation).
    BadFrame(FrameError),
    /// The client finished its side of the stream.
    Finished,
    /// The client reset its side of the stream (RESET_STREAM). The driver
    /// hands it in only before the channel opened: after, it stops serving
    /// the stream at once, as for any failed stream.
    Reset,
}

/// What the driver does next with the stream.
#[derive(Debug, PartialEq)]
pub enum StreamStep {
    /// The channel is open: serve it with this kind's service.
    Opened(ChannelKind),
    /// Refuse the stream before it opened: `Error { request_id: 0, code }`,
    /// then stop and finish it.
    Refuse { code: ErrorCode, message: String },
    /// Dispatch this admitted request; report its end with
    /// [`Session::request_done`].
    Dispatch(Request),
    /// Answer this request with an error without dispatching it; keep reading
    /// if [`ChannelStream::wants_frames`] (not once the session is closed).
    Answer {
        request_id: u64,
        code: ErrorCode,
        retry_after: Option<std::time::Duration>,
        message: &'static str,
    },
    /// A channel-level protocol error: send `Error { request_id: 0, code }`
    /// and stop reading; answer what is in flight.
    Fail { code: ErrorCode, message: String },
    /// Stop reading; answer what is in flight, then finish the stream.
    Finish,
}

/// Where the stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for `OpenChannel`.
    Opening,
    /// Serving requests.
    Open,
    /// Nothing more is read (refused, failed or finished).
    Done,
}

/// The rules of one channel stream.
#[derive(Debug)]
pub struct ChannelStream {
    id: ChannelId,
    phase: Phase,
}

impl ChannelStream {
    /// The stream with QUIC stream index `id`, before its first frame.
    pub fn new(id: ChannelId) -> Self {
        ChannelStream {
            id,
            phase: Phase::Opening,
        }
    }

    /// The stream's channel id in the session's accounting.
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// Whether the driver should read another frame.
    pub fn wants_frames(&self) -> bool {
        self.phase != Phase::Done
    }

    /// Asked before the first frame is read: the refusal of a new stream of a
    /// closed session (rule 1), which needs nothing the client sent, so the
    /// driver answers it at once instead of first waiting for (and buffering)
    /// a frame it would not look at. `None` otherwise: read the first frame
    /// and hand it in ([`handle_input`](Self::handle_input) refuses it too if
    /// the session closed meanwhile). Not counted, as no refusal of a closed
    /// session is.
    pub fn refuse_unread(&mut self, session: &Session) -> Option<StreamStep> {
        if self.phase != Phase::Opening || !session.is_closed() {
            return None;
        }
        self.phase = Phase::Done;
        Some(refuse(ErrorCode::ShuttingDown, CHANNEL_REFUSED))
    }

    /// Takes what was read from the stream. `serves` tells whether this
    /// gateway serves a channel kind (asked only for `OpenChannel`).
    pub fn handle_input(
        &mut self,
        now: Instant,
        session: &mut Session,
        input: StreamInput,
        serves: impl FnOnce(ChannelKind) -> bool,
    ) -> StreamStep {
        // Ended by the client before any frame: nothing to answer, but the
        // stream cost the gateway what a refused one does (an accepted
        // stream, a task, a read), and a client never needs one.
        let abandoned =
            self.phase == Phase::Opening && matches!(input, StreamInput::Finished | StreamInput::Reset);
        let step = match (self.phase, input) {
            (Phase::Done, _) => StreamStep::Finish,
            (_, StreamInput::Finished | StreamInput::Reset) => StreamStep::Finish,
            // What a valid `OpenChannel` gets once the session is closed,
            // whatever the frame: not decoded, verified or routed for a
            // session on its way out.
            (Phase::Opening, _) if session.is_closed() => refuse(ErrorCode::ShuttingDown, CHANNEL_REFUSED),
            (Phase::Opening, StreamInput::BadFrame(e)) => refuse(e.code, e.message),
            (Phase::Open, StreamInput::BadFrame(e)) => fail(e.code, e.message),
            (Phase::Opening, StreamInput::Frame(frame)) => self.open(now, session, &frame, serves),
            (Phase::Open, StreamInput::Frame(frame)) => self.request(now, session, &frame),
        };
        if abandoned || matches!(step, StreamStep::Refuse { .. } | StreamStep::Fail { .. }) {
            // The client's fault (a refusal for the session's close is not
            // counted: the session is closed already).
            session.channel_failed(now);
        }
        self.phase = match (&step, self.phase) {
            // The session is closing (e.g. a refusal over its bound kicked
            // it): nothing more is read, so a flood stops costing work at
            // once, not when the connection is gone.
            _ if session.is_closed() => Phase::Done,
            (StreamStep::Opened(_), _) => Phase::Open,
            (StreamStep::Dispatch(_) | StreamStep::Answer { .. }, phase) => phase,
            _ => Phase::Done,
        };
        step
    }

    fn open(
        &mut self,
        now: Instant,
        session: &mut Session,
        frame: &[u8],
        serves: impl FnOnce(ChannelKind) -> bool,
    ) -> StreamStep {
        session.handle_received(now);
        let kind = match ChannelMsg::decode(frame) {
            Ok(ChannelMsg::Open(kind)) => kind,
            Ok(_) => return refuse(ErrorCode::UnexpectedFrame, "first frame must be OpenChannel"),
            Err(e) => return refuse(e.code(), e.to_string()),
        };
        if !serves(kind) {
            return refuse(
                ErrorCode::UnknownChannel,
                "this gateway does not serve that channel",
            );
        }
        match session.open_channel(now, self.id, kind) {
            Ok(()) => StreamStep::Opened(kind),
            Err(code) => refuse(code, CHANNEL_REFUSED),
        }
    }

    fn request(&mut self, now: Instant, session: &mut Session, frame: &[u8]) -> StreamStep {
        match ChannelMsg::decode(frame) {
            Ok(ChannelMsg::Request(req)) if req.request_id == 0 => {
                session.handle_received(now);
                fail(
                    ErrorCode::InvalidRequest,
                    "request_id 0 is reserved for channel-level errors",
                )
            }
            Ok(ChannelMsg::Request(req)) => match session.admit_request(now, self.id, req.request_id) {
                Verdict::Admit => StreamStep::Dispatch(req),
                Verdict::Refuse {
                    code,
                    retry_after,
                    message,
                } => StreamStep::Answer {
                    request_id: req.request_id,
                    code,
                    retry_after,
                    message,
                },
            },
            Ok(_) => {
                session.handle_received(now);
                fail(
                    ErrorCode::UnexpectedFrame,
                    "only Request frames may follow OpenChannel",
                )
            }
            Err(e) => fail(e.code(), e.to_string()),
        }
    }
}

/// The message of a stream [`Session::open_channel`] refused (the session is
/// closed, or at its channel limit), and of any new stream of a closed session.
const CHANNEL_REFUSED: &str = "channel refused";

fn refuse(code: ErrorCode, message: impl Into<String>) -> StreamStep {
    StreamStep::Refuse {
        code,
        message: message.into(),
    }
}

fn fail(code: ErrorCode, message: impl Into<String>) -> StreamStep {
    StreamStep::Fail {
        code,
        message: message.into(),
    }
}

#[cfg(test)]
#[path = "channel_tests.rs"]
mod tests;

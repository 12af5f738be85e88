//! The session state machine: every rule about a live session, with no IO.
//!
//! Inputs arrive through `handle_*` / `admit_*` calls with the current time; what
//! the session wants done comes out of [`Session::poll_action`]; when it next needs
//! to be woken comes out of [`Session::poll_timeout`]. The driver
//! (`crate::driver`) owns the sockets and simply executes actions. Nothing here
//! reads a clock, so tests run on a fake one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_schema::{ChannelKind, ControlMsg, ErrorCode, GoAway, Kick};

use super::rate::TokenBucket;
use super::strikes::Strikes;

/// How long a write on the control stream may block before the client is
/// deemed unable to keep up ([`Session::handle_control_write_timeout`]).
pub const CONTROL_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Identifies a channel within its session (the QUIC stream index).
pub type ChannelId = u64;

/// The per-session limits the machine enforces (from `LimitsConfig` and
/// `SessionConfig`; see their docs for defaults and trade-offs).
#[derive(Debug, Clone)]
pub struct SessionLimits {
    pub max_channels: u32,
    pub max_in_flight_per_channel: u32,
    pub outbound_queue_frames: usize,
    pub outbound_queue_bytes: usize,
    pub request_rate_per_sec: f64,
    pub request_burst: f64,
    pub control_rate_per_sec: f64,
    pub control_burst: f64,
    pub idle_timeout: Duration,
    /// Refused requests a session may get in one
    /// [`REFUSAL_WINDOW`](super::REFUSAL_WINDOW); the next closes it.
    pub max_refused_requests_per_window: u32,
    /// Channels a session may have refused or failed for what its client
    /// sent in one [`REFUSAL_WINDOW`](super::REFUSAL_WINDOW); the next closes
    /// it ([`Session::channel_failed`]).
    pub max_failed_channels_per_window: u32,
}

/// Something the driver must do for the session.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write this frame on the control stream.
    SendControl(ControlMsg),
    /// Mint a fresh resume token for the session's player and send it as
    /// `ResumeTokenRefresh` on the control stream (see
    /// [`Session::enable_resume_refresh`]). The machine holds no keys: they are
    /// the driver's business.
    RefreshResumeToken,
    /// Close the QUIC connection with this application error code. Always the
    /// last action; after it the machine emits nothing more.
    Close { code: ErrorCode, message: String },
}

/// The answer to [`Session::admit_request`].
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Dispatch the request; call [`Session::request_done`] when it is answered.
    Admit,
    /// Answer the request with this error instead of dispatching it.
    Refuse {
        code: ErrorCode,
        retry_after: Option<Duration>,
        message: &'static str,
    },
}

/// The answer to [`Session::enqueue`] when the channel's queue is full: the
/// session is being closed with `SlowConsumer`, drop the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowConsumer;

/// Which bound a session broke when it was kicked with `RateLimited`: three
/// share that wire code, and operators tell them apart by
/// `outpost_rate_limit_kicks_total{cause}`, which the driver counts from
/// [`Session::rate_limit_cause`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitCause {
    /// Control frames over `control_rate_per_sec` (section 3.2).
    ControlFrames,
    /// Refused requests over `max_refused_requests_per_window`.
    RefusedRequests,
    /// Channels refused or failed over `max_failed_channels_per_window`.
    FailedChannels,
}

impl RateLimitCause {
    pub const ALL: [RateLimitCause; 3] = [
        RateLimitCause::ControlFrames,
        RateLimitCause::RefusedRequests,
        RateLimitCause::FailedChannels,
    ];

    /// The metric's `cause` label.
    pub fn as_str(self) -> &'static str {
        match self {
            RateLimitCause::ControlFrames => "control_frames",
            RateLimitCause::RefusedRequests => "refused_requests",
            RateLimitCause::FailedChannels => "failed_channels",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Active,
    /// GoAway sent; the connection is closed at `close_at` if still open.
    Draining {
        close_at: Instant,
    },
    /// Kept here, not in a field of its own, so the session grows by nothing.
    Closed {
        rate_limited: Option<RateLimitCause>,
    },
}

#[derive(Debug, Default)]
struct ChannelState {
    /// Request ids admitted and not yet answered (at most
    /// `max_in_flight_per_channel`).
    in_flight: HashSet<u64>,
    queued_frames: usize,
    queued_bytes: usize,
}

/// One player's live session, as a deterministic state machine.
#[derive(Debug)]
pub struct Session {
    /// Shared by every session of the gateway: the same for all of them, and
    /// one pointer instead of 72 bytes in each (memory per idle session).
    limits: Arc<SessionLimits>,
    phase: Phase,
    /// When the client last sent anything; the idle timeout counts from here.
    last_rx: Instant,
    /// Pings and other control frames (cheap for the client to send in bulk).
    control_rate: TokenBucket,
    /// Channel requests, across all channels of the session.
    request_rate: TokenBucket,
    /// Requests refused, and channels refused or failed, in the current window.
    strikes: Strikes,
    /// Open channels, each with its in-flight and outbound-queue accounting.
    channels: HashMap<ChannelId, ChannelState>,
    /// Actions not yet taken by the driver.
    actions: VecDeque<Action>,
    /// When on: how often a fresh resume token is due, and when the next one is.
    resume_refresh: Option<ResumeRefresh>,
}

/// The resume-token refresh timer (see [`Session::enable_resume_refresh`]).
#[derive(Debug, Clone, Copy)]
struct ResumeRefresh {
    every: Duration,
    next: Instant,
}

impl Session {
    /// A session that was just welcomed at `now`.
    pub fn new(limits: impl Into<Arc<SessionLimits>>, now: Instant) -> Self {
        let limits = limits.into();
        Session {
            control_rate: TokenBucket::new(limits.control_burst, now),
            request_rate: TokenBucket::new(limits.request_burst, now),
            strikes: Strikes::new(),
            limits,
            phase: Phase::Active,
            last_rx: now,
            channels: HashMap::new(),
            actions: VecDeque::new(),
            resume_refresh: None,
        }
    }

    /// Asks for a fresh resume token every `every`, the first one `every` after
    /// `now` (the `Welcome` just carried one). Off by default: only clients that
    /// said in `Hello` they understand `ResumeTokenRefresh` get it. A zero
    /// interval is treated as off. The timer runs while active and while
    /// draining (a drained client may take until the drain deadline to leave,
    /// and the refresh keeps its token valid meanwhile at no extra cost), and
    /// stops when the session closes.
    pub fn enable_resume_refresh(&mut self, every: Duration, now: Instant) {
        self.resume_refresh = (!every.is_zero()).then_some(ResumeRefresh {
            every,
            next: now + every,
        });
    }

    /// True once the machine has emitted its `Close`.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed { .. })
    }

    /// Which bound closed the session with `Kick { RateLimited }`, if one did.
    pub fn rate_limit_cause(&self) -> Option<RateLimitCause> {
        match self.phase {
            Phase::Closed { rate_limited } => rate_limited,
            _ => None,
        }
    }

    /// True while draining (GoAway sent, not yet closed).
    pub fn is_draining(&self) -> bool {
        matches!(self.phase, Phase::Draining { .. })
    }

    /// Any frame arrived from the client on any stream.
    pub fn handle_received(&mut self, now: Instant) {
        self.last_rx = self.last_rx.max(now);
    }

    /// A frame arrived on the control stream (already verified).
    pub fn handle_control(&mut self, now: Instant, msg: ControlMsg) {
        if self.is_closed() {
            return;
        }
        self.handle_received(now);
        let (rate, burst) = (self.limits.control_rate_per_sec, self.limits.control_burst);
        if self.control_rate.try_take(now, rate, burst).is_err() {
            return self.rate_limit(RateLimitCause::ControlFrames, "too many control frames");
        }
        match msg {
            ControlMsg::Ping { nonce } => self
                .actions
                .push_back(Action::SendControl(ControlMsg::Pong { nonce })),
            ControlMsg::Pong { .. } => {}
            _ => self.close(
                ErrorCode::UnexpectedFrame,
                "unexpected frame on the control stream",
            ),
        }
    }

    /// A control-stream frame failed framing or verification.
    pub fn handle_control_error(&mut self, code: ErrorCode, message: &str) {
        self.close(code, message);
    }

    /// The client finished its control stream: a logout.
    pub fn handle_control_finished(&mut self) {
        self.close(ErrorCode::Unspecified, "client ended the session");
    }

    /// The client opened a channel. Refused when closed or over the channel limit.
    pub fn open_channel(&mut self, now: Instant, id: ChannelId, _kind: ChannelKind) -> Result<(), ErrorCode> {
        self.handle_received(now);
        if self.is_closed() {
            return Err(ErrorCode::ShuttingDown);
        }
        if self.channels.len() >= self.limits.max_channels as usize {
            return Err(ErrorCode::TooManyInFlight);
        }
        self.channels.entry(id).or_default();
        Ok(())
    }

    /// The channel's stream ended; its accounting is dropped.
    pub fn close_channel(&mut self, id: ChannelId) {
        self.channels.remove(&id);
    }

    /// A request arrived on a channel: admit it, or say what to answer instead.
    /// In order: a `request_id` already in flight on the channel is
    /// `InvalidRequest`, one over the in-flight bound `TooManyInFlight`, one
    /// over the session's rate `RateLimited` (PROTOCOL.md 4). Refused requests
    /// take no rate token. Each of those refusals counts against the session's
    /// `max_refused_requests_per_window` (per
    /// [`REFUSAL_WINDOW`](super::REFUSAL_WINDOW)): the one over it is still
    /// refused and also closes the session with `Kick { RateLimited }`.
    /// (Request id 0 never gets here: it names the whole channel, so the
    /// driver treats it as a protocol error.)
    pub fn admit_request(&mut self, now: Instant, id: ChannelId, request_id: u64) -> Verdict {
        self.handle_received(now);
        if self.is_closed() {
            return Verdict::Refuse {
                code: ErrorCode::ShuttingDown,
                retry_after: None,
                message: "session closed",
            };
        }
        let Some(ch) = self.channels.get_mut(&id) else {
            return Verdict::Refuse {
                code: ErrorCode::UnexpectedFrame,
                retry_after: None,
                message: "no such channel",
            };
        };
        let (code, retry_after, message) = if ch.in_flight.contains(&request_id) {
            (
                ErrorCode::InvalidRequest,
                None,
                "request_id is already in flight on this channel",
            )
        } else if ch.in_flight.len() >= self.limits.max_in_flight_per_channel as usize {
            (
                ErrorCode::TooManyInFlight,
                None,
                "too many requests in flight on this channel",
            )
        } else {
            let (rate, burst) = (self.limits.request_rate_per_sec, self.limits.request_burst);
            match self.request_rate.try_take(now, rate, burst) {
                Ok(()) => {
                    ch.in_flight.insert(request_id);
                    return Verdict::Admit;
                }
                Err(wait) => (ErrorCode::RateLimited, Some(wait), "request rate limit exceeded"),
            }
        };
        if self
            .strikes
            .refuse(now, self.limits.max_refused_requests_per_window)
        {
            self.rate_limit(
                RateLimitCause::RefusedRequests,
                "too many refused requests: honour retry_after_ms and max_in_flight_per_channel",
            );
        }
        Verdict::Refuse {
            code,
            retry_after,
            message,
        }
    }

    /// The gateway refused a channel the client opened, or ended one with a
    /// channel-level error, for what the client sent (`ChannelStream`: a bad
    /// or unexpected frame, request id 0, an unknown channel kind, the
    /// channel limit), or the client ended a stream before its first frame
    /// (finished or reset it). Counted against the session's
    /// `max_failed_channels_per_window` (per
    /// [`REFUSAL_WINDOW`](super::REFUSAL_WINDOW)): the one over it closes the
    /// session with `Kick { RateLimited }`. Nothing is counted once the
    /// session is closed (its channels are refused with `ShuttingDown`).
    pub fn channel_failed(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        if self
            .strikes
            .fail_channel(now, self.limits.max_failed_channels_per_window)
        {
            self.rate_limit(
                RateLimitCause::FailedChannels,
                "too many channels refused or failed: fix what the client sends on its channels",
            );
        }
    }

    /// An admitted request was answered (or abandoned).
    pub fn request_done(&mut self, id: ChannelId, request_id: u64) {
        if let Some(ch) = self.channels.get_mut(&id) {
            ch.in_flight.remove(&request_id);
        }
    }

    /// A frame of `bytes` is about to be queued for the client on a channel.
    /// Over the channel's queue bounds the session closes with `SlowConsumer`.
    pub fn enqueue(&mut self, id: ChannelId, bytes: usize) -> Result<(), SlowConsumer> {
        if self.is_closed() {
            return Err(SlowConsumer);
        }
        let Some(ch) = self.channels.get_mut(&id) else {
            return Err(SlowConsumer);
        };
        if ch.queued_frames + 1 > self.limits.outbound_queue_frames
            || ch.queued_bytes + bytes > self.limits.outbound_queue_bytes
        {
            self.kick(
                ErrorCode::SlowConsumer,
                "client is not reading its streams fast enough",
            );
            return Err(SlowConsumer);
        }
        ch.queued_frames += 1;
        ch.queued_bytes += bytes;
        Ok(())
    }

    /// Whether a frame of `bytes` the gateway sends on its own initiative
    /// (see `ChannelSink::push_paced`) may be queued now: the channel's queue
    /// is empty, or stays within half its bounds with the frame. True for a
    /// closed session or channel, so the caller's send fails instead of waiting.
    pub fn has_room_for_paced(&self, id: ChannelId, bytes: usize) -> bool {
        let Some(ch) = self.channels.get(&id).filter(|_| !self.is_closed()) else {
            return true;
        };
        ch.queued_frames == 0
            || (ch.queued_frames < self.limits.outbound_queue_frames / 2
                && ch.queued_bytes + bytes <= self.limits.outbound_queue_bytes / 2)
    }

    /// A queued frame of `bytes` was handed to QUIC.
    pub fn dequeued(&mut self, id: ChannelId, bytes: usize) {
        if let Some(ch) = self.channels.get_mut(&id) {
            ch.queued_frames = ch.queued_frames.saturating_sub(1);
            ch.queued_bytes = ch.queued_bytes.saturating_sub(bytes);
        }
    }

    /// The gateway drains: tell the client to reconnect after `reconnect_after`,
    /// and close at `deadline` if it is still here.
    pub fn begin_drain(&mut self, reconnect_after: Duration, deadline: Instant) {
        if self.phase != Phase::Active {
            return;
        }
        self.phase = Phase::Draining { close_at: deadline };
        self.actions
            .push_back(Action::SendControl(ControlMsg::GoAway(GoAway {
                reason: ErrorCode::Draining,
                reconnect_after_ms: u32::try_from(reconnect_after.as_millis()).unwrap_or(u32::MAX),
                message: "gateway draining; reconnect with your resume token".into(),
            })));
    }

    /// Ends the session with a Kick the client can show, then a close.
    pub fn kick(&mut self, reason: ErrorCode, message: &str) {
        if self.is_closed() {
            return;
        }
        self.actions.push_back(Action::SendControl(ControlMsg::Kick(Kick {
            reason,
            message: message.into(),
        })));
        self.close(reason, message);
    }

    /// Kicks with `RateLimited` for `cause`.
    fn rate_limit(&mut self, cause: RateLimitCause, message: &str) {
        if self.is_closed() {
            return;
        }
        self.kick(ErrorCode::RateLimited, message);
        self.phase = Phase::Closed {
            rate_limited: Some(cause),
        };
    }

    /// A write on the control stream blocked for [`CONTROL_WRITE_TIMEOUT`]:
    /// the client is not reading it. Closes with `SlowConsumer` and drops
    /// whatever was still to be sent, a queued Kick or Close included (they
    /// could not be written either; a Kick that was not delivered is not
    /// lingered for).
    pub fn handle_control_write_timeout(&mut self) {
        self.actions.clear();
        self.phase = Phase::Closed { rate_limited: None };
        self.actions.push_back(Action::Close {
            code: ErrorCode::SlowConsumer,
            message: "control stream not read".into(),
        });
    }

    /// Closes without a Kick (protocol errors, drain deadline).
    fn close(&mut self, code: ErrorCode, message: &str) {
        if self.is_closed() {
            return;
        }
        self.phase = Phase::Closed { rate_limited: None };
        self.actions.push_back(Action::Close {
            code,
            message: message.into(),
        });
    }

    /// The time passed; act on whatever deadline has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.handle_deadlines(now);
        if self.is_closed() {
            return;
        }
        if let Some(r) = &mut self.resume_refresh {
            if now >= r.next {
                // Counted from now, not from the missed deadline: a late wake-up
                // (a busy runtime) never makes a burst of refreshes.
                r.next = now + r.every;
                self.actions.push_back(Action::RefreshResumeToken);
            }
        }
    }

    /// The drain deadline and the idle timeout.
    fn handle_deadlines(&mut self, now: Instant) {
        match self.phase {
            Phase::Closed { .. } => {}
            Phase::Draining { close_at } if now >= close_at => {
                self.close(ErrorCode::Draining, "drain deadline reached")
            }
            _ if now >= self.last_rx + self.limits.idle_timeout => self.kick(
                ErrorCode::IdleTimeout,
                "no frames received within the idle timeout",
            ),
            _ => {}
        }
    }

    /// When the driver must call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let idle = self.last_rx + self.limits.idle_timeout;
        let next = match self.phase {
            Phase::Closed { .. } => return None,
            Phase::Draining { close_at } => close_at.min(idle),
            Phase::Active => idle,
        };
        Some(self.resume_refresh.map_or(next, |r| next.min(r.next)))
    }

    /// Whether [`poll_action`](Self::poll_action) has an action to return.
    pub fn has_action(&self) -> bool {
        !self.actions.is_empty()
    }

    /// The next action for the driver, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        let action = self.actions.pop_front();
        if self.actions.is_empty() {
            // Memory per idle session: a drained queue keeps no buffer (it
            // would hold room for 4 actions, one `ControlMsg` each, for the
            // session's life after its first Pong).
            self.actions = VecDeque::new();
        }
        action
    }
}

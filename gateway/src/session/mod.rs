//! Sessions without IO.
//!
//! A session is the gateway's view of one logged-in player connection. Its rules
//! (heartbeats and idle timeout, resume-token refresh, rate limits, in-flight
//! bounds, the bounds on refused requests and failed channels, outbound queue
//! bounds, drain timing) live in [`Session`], a deterministic state machine in the style of
//! `quinn-proto`: inputs via `handle_*`/`admit_*` with the time passed in,
//! outputs via [`Session::poll_action`] and [`Session::poll_timeout`]. The login
//! that precedes it (Hello to Welcome or a refusal) is the [`Login`] machine, in
//! the same style; the few decisions the driver needs besides (drain reconnect
//! delay, presence kicks) are pure functions in [`rules`]. Each channel stream's
//! rules (first frame, request ids, what may follow) are the [`ChannelStream`]
//! machine, which consults the session's accounting. The one component
//! that touches QUIC and tokio is `crate::driver`.

mod channel;
mod login;
mod machine;
mod rate;
pub mod rules;
mod strikes;

pub use channel::{ChannelStream, StreamInput, StreamStep};
pub use login::{
    ForeignFacts, FrameError, LoggedIn, Login, LoginConfig, LoginRefusal, LoginStep, PresenceOutcome,
    QueueDecision, QueueUpdate,
};
pub use machine::{
    Action, ChannelId, RateLimitCause, Session, SessionLimits, SlowConsumer, Verdict, CONTROL_WRITE_TIMEOUT,
};
pub use rate::{retry_after_ms, TokenBucket};
pub use strikes::REFUSAL_WINDOW;

#[cfg(test)]
mod login_pair;
#[cfg(test)]
mod login_queue_tests;
#[cfg(test)]
mod login_tests;
#[cfg(test)]
mod strike_tests;
#[cfg(test)]
mod tests;

//! Sessions without IO.
//!
//! A session is the gateway's view of one logged-in player connection. Its rules
//! (heartbeats and idle timeout, resume-token refresh, rate limits, in-flight
//! bounds, outbound queue bounds, drain timing) live in [`Session`], a deterministic state machine in the
//! style of `quinn-proto`: inputs via `handle_*`/`admit_*` with the time passed in,
//! outputs via [`Session::poll_action`] and [`Session::poll_timeout`]. The one
//! component that touches QUIC and tokio is `crate::driver`.

mod machine;
mod rate;

pub use machine::{Action, ChannelId, Session, SessionLimits, SlowConsumer, Verdict};
pub use rate::TokenBucket;

#[cfg(test)]
mod tests;

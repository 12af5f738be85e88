//! What the session publishes to channel tasks and handles: the connection
//! state ([`ConnState`], a `watch`), the live connection ([`LiveConn`]) with
//! its GoAway move protocol, what the last `Welcome` said ([`WelcomeInfo`]),
//! and the state they all share ([`Shared`]). The actor driving it is
//! `session.rs`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::events::EventHub;

/// What the session knows from the last `Welcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WelcomeInfo {
    /// The logged-in player.
    pub player_id: String,
    /// Whether the last login resumed the previous session.
    pub resumed: bool,
    /// Region of the gateway and home region of the player.
    pub region: String,
    pub home_region: String,
    /// The gateway this connection goes to.
    pub gateway: SocketAddr,
    /// Negotiated maximum frame size, bytes of FlatBuffer.
    pub max_frame_size: u32,
    pub heartbeat_interval: Duration,
    pub idle_timeout: Duration,
    pub max_in_flight_per_channel: u32,
    /// Token for later logins at any gateway (the SDK already prefers it on reconnect).
    pub session_token: String,
    /// Opaque resume token (the SDK presents it on reconnect by itself): the
    /// newest one, from `Welcome` or from the gateway's later
    /// `ResumeTokenRefresh` (every half resume window, PROTOCOL.md 3.4).
    pub resume_token: String,
    pub protocol_version: u16,
}

/// A live, logged-in connection as seen by channel tasks.
#[derive(Debug)]
pub(crate) struct LiveConn {
    pub conn: quinn::Connection,
    /// Increases with every successful login; channel tasks re-open on change.
    pub generation: u64,
    pub max_frame: u32,
    pub max_in_flight: usize,
    /// Set once the connection is being left after a GoAway: no new request
    /// may be sent on it.
    pub(crate) moving: AtomicBool,
    /// Requests sent on this connection and not yet answered, all channels.
    pub(crate) in_flight: AtomicUsize,
    /// Notified when `in_flight` drops to 0.
    pub(crate) idle: Notify,
}

impl LiveConn {
    /// Claims the right to send one request on this connection; `false` (and
    /// nothing claimed) once the connection is moving. Pair every `true` with one
    /// [`release`](Self::release).
    ///
    /// The counter is raised before the flag is read, and the actor sets the flag
    /// before it reads the counter (both `SeqCst`): either the actor sees this
    /// request and waits for its answer, or this request sees the flag and waits
    /// for the next connection. None is sent on a connection being closed.
    pub(crate) fn try_claim(&self) -> bool {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.moving.load(Ordering::SeqCst) {
            self.release(1);
            return false;
        }
        true
    }

    /// `n` requests were answered or abandoned.
    pub(crate) fn release(&self, n: usize) {
        if n > 0 && self.in_flight.fetch_sub(n, Ordering::SeqCst) == n {
            self.idle.notify_one();
        }
    }

    /// Whether new requests must wait for the next connection.
    pub(crate) fn is_moving(&self) -> bool {
        self.moving.load(Ordering::SeqCst)
    }

    /// Stops new requests on this connection.
    pub(crate) fn begin_move(&self) {
        self.moving.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_quiet(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
    }
}

#[derive(Debug, Clone)]
pub(crate) enum ConnState {
    /// No usable connection; the actor is (re)connecting.
    Connecting,
    Connected(Arc<LiveConn>),
    /// The session ended for good.
    Closed(ClientError),
}

/// State shared by the actor, channel tasks and handles.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: ClientConfig,
    pub quinn_cfg: quinn::ClientConfig,
    pub state: watch::Sender<ConnState>,
    pub events: EventHub,
    pub info: Mutex<Option<WelcomeInfo>>,
    /// The SDK's own telemetry buffer (see `telemetry.rs`).
    pub telemetry: crate::telemetry::Recorder,
}

impl Shared {
    /// Waits (up to `timeout`) for a logged-in connection.
    pub(crate) async fn wait_live(&self, timeout: Duration) -> Result<Arc<LiveConn>, ClientError> {
        let mut rx = self.state.subscribe();
        let fut = async {
            loop {
                let s = rx.borrow_and_update().clone();
                match s {
                    ConnState::Connected(l) => return Ok(l),
                    ConnState::Closed(e) => return Err(e),
                    ConnState::Connecting => {}
                }
                if rx.changed().await.is_err() {
                    return Err(ClientError::Closed);
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .unwrap_or(Err(ClientError::Timeout))
    }
}

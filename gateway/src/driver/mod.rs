//! The driver: the one part of the gateway that touches QUIC and tokio for a
//! session. It runs the login's [`Login`](crate::session::Login) state machine,
//! then the session's [`Session`](crate::session::Session) one: feeding each
//! what arrives, executing what it asks for, and waking it at its deadlines.
//!
//! Tasks per connection: the session loop (this module's `run_session`, which
//! also reads the control stream and watches the presence claim, so an idle
//! session is one task of ours beside quinn's connection driver), and per
//! channel one reader loop plus one writer. They share the state machine behind
//! a short-held mutex ([`SessionCore`]); the session loop is woken through one
//! `Notify` (its registry inbox's) whenever a channel task leaves the machine
//! actions, a command arrives, or the gateway drains or shuts down (one task
//! per gateway, [`relay_gateway_signals`], wakes every session then). What the
//! control stream's frames ask for (a Pong) the loop sees in the same turn
//! that read them, with no wake-up. A session's deadlines (idle timeout,
//! resume-token refresh) are one `tokio::time::Sleep` for the session's life,
//! set to the earliest and moved only when it moves: an entry in tokio's
//! shared timer wheel, not a task.

mod channel;
mod login;
pub(crate) mod queue;
pub(crate) mod queue_addr;
mod session;
#[cfg(test)]
mod size_tests;
pub(crate) mod tickets;

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_schema::ErrorCode;
use tokio::sync::{broadcast, watch};

use crate::auth::Authenticator;
use crate::channels::Router;
use crate::config::GatewayConfig;
use outpost_backend::presence::Presence;
use outpost_backend::store::AnyStore;

use crate::regions::Regions;
use crate::registry::{Inbox, Reachable, Registry};
use crate::session::{Action, LoginConfig, Session, SessionLimits};
use crate::transfers::Transfers;

pub(crate) use login::serve_connection;

/// A drain in progress: sessions pick their reconnect delay uniformly within
/// `window` and are closed at `deadline`.
#[derive(Debug, Clone, Copy)]
pub struct DrainPlan {
    pub window: Duration,
    pub deadline: Instant,
}

/// What a connection needs, from its QUIC handshake to its session's end:
/// one per gateway, shared by every connection task (and its channel tasks)
/// behind an `Arc`. The operator side and the background tasks hold it too,
/// inside [`ControlPlane`](crate::control::ControlPlane), but nothing here
/// exists for them alone: what only they use lives there.
pub(crate) struct SessionDeps {
    /// The validated gateway configuration: the region's name, the session
    /// settings a session reads at its end (presence, resume window) and the
    /// admission settings the accept loop reads per handshake.
    pub config: GatewayConfig,
    /// Every session machine's limits (channels, in-flight, queues, rates,
    /// idle timeout), built once from `config` and cloned into each session.
    pub limits: Arc<SessionLimits>,
    /// The settings of the login rules (from `config`), shared by every
    /// login machine.
    pub login: Arc<LoginConfig>,
    /// Admission (the `max_sessions` slots) and this gateway's live sessions
    /// by player: logins take a slot, sessions register to be kicked or
    /// superseded.
    pub registry: Registry,
    /// Checks credentials and resume tokens, issues session and resume
    /// tokens (at login, and the session's periodic resume-token refresh).
    pub auth: Authenticator,
    /// Maps a channel stream's kind to the service that serves it.
    pub router: Router,
    /// One live session per player across gateways (global store): the
    /// login claims it, the session watches it and a logout ends it.
    pub presence: Presence<AnyStore>,
    /// This gateway's name in presence claims (its QUIC address).
    pub name: String,
    /// This gateway's region (`config.region`), shared by every session's
    /// channels.
    pub region: Arc<str>,
    /// Where an ended session leaves its player's matchmaking ticket for a
    /// check after the resume window (the control plane runs the checks).
    pub tickets: tickets::TicketReaper,
    /// `Some` once the gateway drains: logins are refused, sessions get a
    /// GoAway. The sending side is the control plane's.
    pub drain: watch::Receiver<Option<DrainPlan>>,
    /// Fires once when the gateway shuts down: every session closes.
    pub shutdown: broadcast::Sender<()>,
    /// QUIC handshakes in progress (drives `quic_retry = "auto"`).
    pub handshaking: AtomicUsize,
    /// The region's login queue, when `queue.enabled`: logins enter it,
    /// sessions hold and release its slots.
    pub queue: Option<Arc<queue::RegionQueue>>,
    /// Cross-region transfers: the `transfer` foreign-login policy moves a
    /// player here during login (the admin API starts and reads them too).
    pub transfers: Transfers,
    /// Stores of the regions this gateway reaches: a foreign login checks
    /// that the player's home region is reachable.
    pub regions: Arc<Regions>,
}

/// Wakes every live session when the gateway starts draining or shuts down;
/// sessions look at both signals each time their loop wakes instead of each
/// waiting on them (memory per idle session: the two waits were 184 bytes in
/// every session's task). Subscribed here, before the accept loop starts, so
/// no signal is missed; ends at shutdown.
pub(crate) fn relay_gateway_signals(
    shared: &Arc<SessionDeps>,
) -> impl std::future::Future<Output = ()> + Send {
    let mut shutdown = shared.shutdown.subscribe();
    let mut drain = shared.drain.clone();
    let shared = shared.clone();
    async move {
        loop {
            tokio::select! {
                _ = shutdown.recv() => {
                    shared.registry.wake_all();
                    return;
                }
                Ok(()) = drain.changed() => shared.registry.wake_all(),
            }
        }
    }
}

/// A session's state machine, and its inbox: the registry's way to reach the
/// session, whose `Notify` is also the signal that wakes its loop.
pub struct SessionCore {
    machine: Mutex<Session>,
    inbox: Inbox,
}

impl Reachable for SessionCore {
    fn inbox(&self) -> &Inbox {
        &self.inbox
    }
}

/// Channels reach the session through this trait only (queue accounting and
/// wake-ups), never through the driver's types.
impl crate::channels::SessionQueues for SessionCore {
    fn enqueue(&self, id: crate::session::ChannelId, len: usize) -> Result<(), crate::session::SlowConsumer> {
        self.with_machine(|m| m.enqueue(id, len))
    }

    fn dequeued(&self, id: crate::session::ChannelId, len: usize) {
        self.with_machine(|m| m.dequeued(id, len))
    }

    fn has_room_for_paced(&self, id: crate::session::ChannelId, len: usize) -> bool {
        self.with_machine(|m| m.has_room_for_paced(id, len))
    }

    fn wake(&self) {
        SessionCore::wake(self)
    }
}

impl SessionCore {
    fn new(session: Session) -> Self {
        SessionCore {
            machine: Mutex::new(session),
            inbox: Inbox::default(),
        }
    }

    /// Runs `f` on the machine. Keep `f` short: never await inside.
    pub fn with_machine<R>(&self, f: impl FnOnce(&mut Session) -> R) -> R {
        f(&mut self.machine.lock().expect("session machine lock"))
    }

    /// Asks the session loop to look for new actions.
    pub fn wake(&self) {
        self.inbox.wake();
    }

    fn poll_action(&self) -> Option<Action> {
        self.with_machine(|m| m.poll_action())
    }
}

/// QUIC application error code for a protocol error code.
pub(crate) fn var_code(code: ErrorCode) -> quinn::VarInt {
    quinn::VarInt::from_u32(u32::from(code.0))
}

/// Frames a channel's read loop handles in a row before its task yields to
/// the runtime.
///
/// Why: quinn's stream reads do not use tokio's cooperative budget, so a loop
/// whose stream stays readable (a client pipelining many small frames) never
/// returns `Pending` by itself. It then kept its worker thread until the
/// buffered data ran out: the session's own writes waited (a channel's writer
/// is a task of its own, so its answers piled up in the outbound queue and the
/// session was closed as a slow consumer although the client read them), and
/// so did every other task on that thread (other sessions, quinn's endpoint
/// and connection drivers). The rate limits and in-flight bounds did not help:
/// they bound what is admitted, not what is read (a refused request is read,
/// answered, and the loop goes on). The same value as the SDK's channel loop:
/// a turn stays short, and the answers of one turn (at most 16, plus up to
/// `max_in_flight_per_channel` finished requests') far below the outbound
/// queue's default 256 frames, at the cost of one yield per 16 frames. Not a
/// limit on what a client may send, only on how long one task runs without a
/// break (`tests/flood.rs`). A yield does not make the writer run first when
/// the runtime has other worker threads, so a channel also stops reading
/// while half its queue is unwritten (`channel.rs`). The control stream's
/// reader, a future inside the session loop's `select!`, takes tokio's budget
/// per frame instead (a `yield_now` there would not yield the task: the
/// `select!` polls it again at once whenever another branch is ready).
pub(crate) const READ_BURST: u32 = 16;

/// How long we wait for a final frame (Reject, Kick) to be acknowledged before
/// closing the connection anyway.
const FINAL_FRAME_LINGER: Duration = Duration::from_millis(500);

//! The connection actor: one background task per client that owns the control
//! stream, sends heartbeats, reacts to GoAway / Kick, reconnects and resumes
//! after connection loss, and tells when the telemetry batch is sent.
//!
//! A GoAway is a planned move, and no call may fail because of it: when its
//! delay has elapsed the actor marks the connection as *moving* ([`LiveConn`]),
//! channel tasks stop sending new requests on it (they queue them for the next
//! connection), and the actor closes it only once every request already sent
//! has been answered (bounded by the request timeout). Pings asked for while
//! moving or reconnecting are sent on the next connection.
//!
//! The actor publishes the connection state on a `watch` channel
//! ([`ConnState`]); channel tasks (see `channel.rs`) follow it to re-open their
//! streams on every new connection. Commands from `Client` handles (ping,
//! close, the test kill switch) arrive on an mpsc queue; when every handle is
//! gone the queue closes and the actor logs out.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use outpost_schema::{Credentials, ErrorCode, Welcome};
use tokio::sync::{oneshot, Notify};

pub use crate::conn_state::WelcomeInfo;
pub(crate) use crate::conn_state::{ConnState, LiveConn, Shared};

use crate::backoff;
use crate::connection::Established;
use crate::error::{is_fatal_reject, is_final_kick, ClientError};
use crate::events::Event;
use crate::login::establish;
use crate::mailbox;
use crate::telemetry_flush::FlushSchedule;

mod drive;

/// Heartbeat interval when the gateway announces 0 (PROTOCOL.md 3.2 default).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// Never ping more often than this, whatever the gateway says.
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
/// In-flight requests per channel when the gateway announces 0.
const DEFAULT_MAX_IN_FLIGHT: u32 = 32;
/// Upper bound of the client's per-channel in-flight map, whatever the gateway says.
const MAX_IN_FLIGHT_CAP: u32 = 1024;
/// How long a clean close waits for CONNECTION_CLOSE to leave.
const CLOSE_LINGER: Duration = Duration::from_millis(300);

type PingReply = oneshot::Sender<Result<Duration, ClientError>>;

pub(crate) enum Command {
    Ping(PingReply),
    Close(oneshot::Sender<()>),
    Kill,
}

/// Why one connection ended.
enum Outcome {
    /// `close()` or every handle dropped.
    Closed,
    Lost(ClientError),
    Kicked {
        code: ErrorCode,
        message: String,
    },
    /// GoAway delay elapsed; move now.
    GoAway,
}

fn heartbeat_interval(w: &Welcome) -> Duration {
    match w.heartbeat_interval_ms {
        0 => DEFAULT_HEARTBEAT,
        v => Duration::from_millis(u64::from(v)).max(MIN_HEARTBEAT),
    }
}

/// Where the session token for the next login comes from. The tokens are
/// kept once, in the published [`WelcomeInfo`] (`Shared::info`), not also
/// here: they are a few hundred bytes each, per client (issue 21).
enum SessionToken {
    /// None usable: log in with the configured credentials.
    None,
    /// The one in the published `WelcomeInfo`.
    Published,
    /// An earlier one, kept because the last `Welcome` carried none.
    Kept(String),
}

pub(crate) struct Actor {
    shared: Arc<Shared>,
    cmds: mailbox::Receiver<Command>,
    /// Whether the published resume token may be presented (not after a
    /// Kick or a `ResumeRejected`).
    resume_ok: bool,
    session_token: SessionToken,
    generation: u64,
    nonce: u64,
    /// Replies to `close()` calls, answered when the actor is done.
    closers: Vec<oneshot::Sender<()>>,
    /// Pings asked for while moving or reconnecting: sent on the next connection.
    deferred_pings: Vec<PingReply>,
    /// When to send the telemetry batch (`None`: telemetry off); driven by
    /// the connection loop.
    flush: Option<FlushSchedule>,
}

impl Actor {
    pub(crate) fn spawn(
        shared: Arc<Shared>,
        cmds: mailbox::Receiver<Command>,
        est: Established,
        flush: Option<FlushSchedule>,
    ) {
        let mut actor = Actor {
            shared,
            cmds,
            resume_ok: false,
            session_token: SessionToken::None,
            generation: 0,
            nonce: 0,
            closers: Vec::new(),
            deferred_pings: Vec::new(),
            flush,
        };
        let live = actor.install(&est);
        // Both boxed: the task's future would otherwise hold each twice (an
        // async fn's arguments and the locals they are moved into), for
        // the session's whole life.
        tokio::spawn(Box::new(actor).run(Box::new(est), live));
    }

    /// Publishes a fresh login: tokens, info, state, event.
    fn install(&mut self, est: &Established) -> Arc<LiveConn> {
        let w = &est.welcome;
        self.generation += 1;
        self.resume_ok = !w.resume_token.is_empty();
        let max_in_flight = match w.max_in_flight_per_channel {
            0 => DEFAULT_MAX_IN_FLIGHT,
            v => v.min(MAX_IN_FLIGHT_CAP),
        };
        let info = WelcomeInfo {
            player_id: w.player_id.clone(),
            resumed: w.resumed,
            region: w.region.clone(),
            home_region: w.home_region.clone(),
            gateway: est.gateway,
            max_frame_size: est.max_frame,
            heartbeat_interval: heartbeat_interval(w),
            idle_timeout: Duration::from_millis(u64::from(w.idle_timeout_ms)),
            max_in_flight_per_channel: max_in_flight,
            session_token: w.session_token.clone(),
            resume_token: w.resume_token.clone(),
            protocol_version: w.protocol_version,
        };
        let mut published = self.shared.info.lock().unwrap_or_else(|p| p.into_inner());
        if !w.session_token.is_empty() {
            self.session_token = SessionToken::Published;
        } else if let (SessionToken::Published, Some(old)) = (&self.session_token, published.as_ref()) {
            // This Welcome carries none: the previous one stays usable.
            self.session_token = SessionToken::Kept(old.session_token.clone());
        }
        *published = Some(info);
        drop(published);
        let live = Arc::new(LiveConn {
            conn: est.conn.clone(),
            generation: self.generation,
            max_frame: est.max_frame,
            max_in_flight: max_in_flight as usize,
            moving: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
        });
        self.shared.state.send_replace(ConnState::Connected(live.clone()));
        self.shared.events.emit(Event::Connected { resumed: w.resumed });
        tracing::debug!(gateway = %est.gateway, resumed = w.resumed, "outpost session connected");
        live
    }

    /// Ends the session for good.
    fn finish(&mut self, reason: ClientError) {
        self.shared.state.send_replace(ConnState::Closed(reason.clone()));
        for r in self.deferred_pings.drain(..) {
            let _ = r.send(Err(reason.clone()));
        }
        self.shared.events.emit(Event::Closed { reason });
        for c in self.closers.drain(..) {
            let _ = c.send(());
        }
        // Answer whatever is still queued so no caller waits for its timeout.
        self.cmds.close();
        while let Some(cmd) = self.cmds.try_recv() {
            match cmd {
                Command::Ping(r) => {
                    let _ = r.send(Err(ClientError::Closed));
                }
                Command::Close(r) => {
                    let _ = r.send(());
                }
                Command::Kill => {}
            }
        }
    }

    pub(crate) async fn run(mut self: Box<Self>, mut est: Box<Established>, mut live: Arc<LiveConn>) {
        loop {
            let endpoint = est.endpoint.clone();
            let outcome = self.drive(est, &live).await;
            if !matches!(outcome, Outcome::Closed) {
                self.shared.state.send_replace(ConnState::Connecting);
            }
            let auto = self.shared.config.auto_reconnect;
            let mut immediate = false;
            let (err, final_kick) = match outcome {
                Outcome::Closed => {
                    let _ = tokio::time::timeout(CLOSE_LINGER, endpoint.wait_idle()).await;
                    self.finish(ClientError::Closed);
                    return;
                }
                Outcome::Kicked { code, message } => {
                    // PROTOCOL.md 3.4: never resume after a Kick.
                    self.resume_ok = false;
                    let err = ClientError::Kicked {
                        code,
                        message: message.clone(),
                    };
                    self.shared.events.emit(Event::Kicked { code, message });
                    (err, is_final_kick(code))
                }
                Outcome::Lost(err) => {
                    tracing::debug!(error = %err, "outpost connection lost");
                    (err, false)
                }
                Outcome::GoAway => {
                    immediate = true;
                    (ClientError::ConnectionLost("moved after GoAway".into()), false)
                }
            };
            self.shared
                .events
                .emit(Event::Disconnected { reason: err.clone() });
            if final_kick || !auto {
                self.finish(err);
                return;
            }
            endpoint.close(ErrorCode::Unspecified.0.into(), b"");
            // Boxed: the reconnect (handshakes, login, maybe a queue wait) is
            // the largest state of this task but rarely live; inline, every
            // session's task would reserve room for it all the time.
            match Box::pin(self.reconnect(immediate)).await {
                Some(next) => {
                    live = self.install(&next);
                    est = Box::new(next);
                }
                None => return,
            }
        }
    }

    /// Keeps a ping for the next connection (dropping those whose caller gave up).
    fn defer_ping(&mut self, reply: PingReply) {
        self.deferred_pings.retain(|r| !r.is_closed());
        self.deferred_pings.push(reply);
    }

    /// Reconnects with backoff until a login succeeds; `None` when the session
    /// ended instead (closed, fatal rejection, attempts exhausted).
    async fn reconnect(&mut self, mut immediate: bool) -> Option<Established> {
        let shared = self.shared.clone();
        let config = &shared.config;
        let policy = &config.reconnect;
        let mut attempt = 0u32;
        let mut floor: Option<Duration> = None;
        let mut last_err = ClientError::ConnectionLost("connection lost".into());
        loop {
            attempt += 1;
            if policy.max_attempts.is_some_and(|max| attempt > max) {
                self.finish(last_err);
                return None;
            }
            let delay = if immediate {
                floor.unwrap_or_default()
            } else {
                backoff::random_delay(policy, attempt, floor)
            };
            immediate = false;
            self.shared.events.emit(Event::Reconnecting { attempt, delay });
            if self.serve_while(tokio::time::sleep(delay)).await.is_none() {
                self.finish(ClientError::Closed);
                return None;
            }
            let (credentials, resume_token) = self.login_tokens();
            let dial = establish(&shared, credentials, resume_token);
            let Some(result) = self.serve_while(dial).await else {
                self.finish(ClientError::Closed);
                return None;
            };
            match result {
                Ok(est) => return Some(est),
                Err(e) => {
                    tracing::debug!(attempt, error = %e, "outpost reconnect attempt failed");
                    floor = e.retry_after();
                    match &e {
                        ClientError::Rejected { code, .. } if *code == ErrorCode::ResumeRejected => {
                            self.resume_ok = false;
                            immediate = true;
                        }
                        ClientError::Rejected { code, .. } if is_fatal_reject(*code) => {
                            let dropped = std::mem::replace(&mut self.session_token, SessionToken::None);
                            if !matches!(dropped, SessionToken::None) {
                                // The stored session token is no good any more:
                                // fall back to the configured credentials at once.
                                immediate = true;
                            } else {
                                self.finish(e);
                                return None;
                            }
                        }
                        _ => {}
                    }
                    last_err = e;
                }
            }
        }
    }

    /// The credentials and resume token of the next login.
    fn login_tokens(&self) -> (Credentials, Option<String>) {
        let published = self.shared.info.lock().unwrap_or_else(|p| p.into_inner());
        let credentials = match (&self.session_token, published.as_ref()) {
            (SessionToken::Published, Some(w)) => Credentials::Token(w.session_token.clone()),
            (SessionToken::Kept(t), _) => Credentials::Token(t.clone()),
            _ => self.shared.config.credentials.clone(),
        };
        let resume_token = published
            .as_ref()
            .filter(|_| self.resume_ok)
            .map(|w| w.resume_token.clone());
        (credentials, resume_token)
    }

    /// Runs `fut` while answering commands; `None` if the app closed the client.
    async fn serve_while<F: std::future::Future>(&mut self, fut: F) -> Option<F::Output> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return Some(out),
                cmd = self.cmds.recv() => match cmd {
                    None => return None,
                    Some(Command::Close(reply)) => {
                        self.closers.push(reply);
                        return None;
                    }
                    // Sent on the next connection (the caller's timeout still applies).
                    Some(Command::Ping(reply)) => self.defer_ping(reply),
                    Some(Command::Kill) => {}
                },
            }
        }
    }
}

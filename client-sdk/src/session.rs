//! The connection actor: one background task per client that owns the control
//! stream, sends heartbeats, reacts to GoAway / Kick, and reconnects and
//! resumes after connection loss.
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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use outpost_schema::{ControlMsg, Credentials, ErrorCode, Welcome};
use quinn::ConnectionError;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

pub use crate::conn_state::WelcomeInfo;
pub(crate) use crate::conn_state::{ConnState, LiveConn, Shared};

use crate::backoff;
use crate::connection::Established;
use crate::error::{is_fatal_reject, is_final_kick, ClientError};
use crate::events::Event;
use crate::framing::{read_control, write_frame, ReadError};
use crate::login::establish;

/// Heartbeat interval when the gateway announces 0 (PROTOCOL.md 3.2 default).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// Never ping more often than this, whatever the gateway says.
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
/// In-flight requests per channel when the gateway announces 0.
const DEFAULT_MAX_IN_FLIGHT: u32 = 32;
/// Upper bound of the client's per-channel in-flight map, whatever the gateway says.
const MAX_IN_FLIGHT_CAP: u32 = 1024;
/// Pings awaiting a Pong; the oldest is failed when more are sent.
const MAX_PENDING_PINGS: usize = 32;
/// How long a clean close waits for CONNECTION_CLOSE to leave.
const CLOSE_LINGER: Duration = Duration::from_millis(300);

type PingReply = oneshot::Sender<Result<Duration, ClientError>>;
/// A Ping awaiting its Pong: nonce, when it was sent, who waits (none for heartbeats).
type PendingPing = (u64, Instant, Option<PingReply>);

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

fn app_code(e: &ConnectionError) -> Option<ErrorCode> {
    match e {
        ConnectionError::ApplicationClosed(c) => u16::try_from(c.error_code.into_inner()).ok().map(ErrorCode),
        _ => None,
    }
}

pub(crate) struct Actor {
    shared: Arc<Shared>,
    cmds: mpsc::Receiver<Command>,
    resume_token: Option<String>,
    session_token: Option<String>,
    generation: u64,
    nonce: u64,
    /// Replies to `close()` calls, answered when the actor is done.
    closers: Vec<oneshot::Sender<()>>,
    /// Pings asked for while moving or reconnecting: sent on the next connection.
    deferred_pings: Vec<PingReply>,
}

impl Actor {
    pub(crate) fn spawn(shared: Arc<Shared>, cmds: mpsc::Receiver<Command>, est: Established) {
        let mut actor = Actor {
            shared,
            cmds,
            resume_token: None,
            session_token: None,
            generation: 0,
            nonce: 0,
            closers: Vec::new(),
            deferred_pings: Vec::new(),
        };
        let live = actor.install(&est);
        tokio::spawn(actor.run(est, live));
    }

    /// Publishes a fresh login: tokens, info, state, event.
    fn install(&mut self, est: &Established) -> Arc<LiveConn> {
        let w = &est.welcome;
        self.generation += 1;
        self.resume_token = Some(w.resume_token.clone()).filter(|t| !t.is_empty());
        if !w.session_token.is_empty() {
            self.session_token = Some(w.session_token.clone());
        }
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
        *self.shared.info.lock().unwrap_or_else(|p| p.into_inner()) = Some(info);
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
        while let Ok(cmd) = self.cmds.try_recv() {
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

    async fn run(mut self, mut est: Established, mut live: Arc<LiveConn>) {
        loop {
            let endpoint = est.endpoint.clone();
            let outcome = self.drive(est, &live).await;
            if !matches!(outcome, Outcome::Closed) {
                self.shared.state.send_replace(ConnState::Connecting);
            }
            let auto = self.shared.config.auto_reconnect;
            let mut immediate = false;
            match outcome {
                Outcome::Closed => {
                    let _ = tokio::time::timeout(CLOSE_LINGER, endpoint.wait_idle()).await;
                    self.finish(ClientError::Closed);
                    return;
                }
                Outcome::Kicked { code, message } => {
                    // PROTOCOL.md 3.4: never resume after a Kick.
                    self.resume_token = None;
                    let err = ClientError::Kicked {
                        code,
                        message: message.clone(),
                    };
                    self.shared.events.emit(Event::Kicked { code, message });
                    self.shared
                        .events
                        .emit(Event::Disconnected { reason: err.clone() });
                    if is_final_kick(code) || !auto {
                        self.finish(err);
                        return;
                    }
                }
                Outcome::Lost(err) => {
                    tracing::debug!(error = %err, "outpost connection lost");
                    self.shared
                        .events
                        .emit(Event::Disconnected { reason: err.clone() });
                    if !auto {
                        self.finish(err);
                        return;
                    }
                }
                Outcome::GoAway => {
                    let err = ClientError::ConnectionLost("moved after GoAway".into());
                    self.shared
                        .events
                        .emit(Event::Disconnected { reason: err.clone() });
                    if !auto {
                        self.finish(err);
                        return;
                    }
                    immediate = true;
                }
            }
            endpoint.close(ErrorCode::Unspecified.0.into(), b"");
            // Boxed: the reconnect (handshakes, login, maybe a queue wait) is
            // the largest state of this task but rarely live; inline, every
            // session's task would reserve room for it all the time.
            match Box::pin(self.reconnect(immediate)).await {
                Some(next) => {
                    live = self.install(&next);
                    est = next;
                }
                None => return,
            }
        }
    }

    /// Drives one logged-in connection until it ends.
    async fn drive(&mut self, est: Established, live: &LiveConn) -> Outcome {
        let Established {
            socket,
            conn,
            mut ctrl_send,
            ctrl_recv,
            max_frame,
            welcome,
            ..
        } = est;
        // Boxed items: a tokio channel allocates its slots in blocks of 32, so
        // inline control messages would cost every session 32 of them.
        let (ctrl_tx, mut ctrl_rx) = mpsc::channel::<Box<Result<ControlMsg, ReadError>>>(16);
        let reader = tokio::spawn(control_reader(ctrl_recv, max_frame, ctrl_tx));
        let hb = heartbeat_interval(&welcome);
        let mut tick = tokio::time::interval_at(Instant::now() + hb, hb);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_pong = Instant::now();
        let mut pings: VecDeque<PendingPing> = VecDeque::new();
        let mut goaway_at: Option<Instant> = None;
        // Set once the GoAway delay elapsed: leave when quiet, or at this instant.
        let mut move_by: Option<Instant> = None;
        for reply in std::mem::take(&mut self.deferred_pings) {
            if !reply.is_closed() {
                if let Err(e) = self.send_ping(&mut ctrl_send, &mut pings, Some(reply)).await {
                    return self.closed_outcome(&conn, e).await;
                }
            }
        }

        let outcome = loop {
            if move_by.is_some() && live.is_quiet() && !pings.iter().any(|p| p.2.is_some()) {
                // Every request sent here was answered: leave now.
                conn.close(ErrorCode::Draining.0.into(), b"moving after GoAway");
                break Outcome::GoAway;
            }
            let goaway_sleep = tokio::time::sleep_until(goaway_at.unwrap_or_else(Instant::now));
            let move_sleep = tokio::time::sleep_until(move_by.unwrap_or_else(Instant::now));
            tokio::select! {
                cmd = self.cmds.recv() => match cmd {
                    None => {
                        conn.close(ErrorCode::Unspecified.0.into(), b"client dropped");
                        break Outcome::Closed;
                    }
                    Some(Command::Close(reply)) => {
                        self.closers.push(reply);
                        let _ = ctrl_send.finish();
                        conn.close(ErrorCode::Unspecified.0.into(), b"logout");
                        break Outcome::Closed;
                    }
                    Some(Command::Kill) => {
                        socket.kill();
                        conn.close(ErrorCode::Unspecified.0.into(), b"");
                        break Outcome::Lost(ClientError::ConnectionLost("connection killed (debug hook)".into()));
                    }
                    Some(Command::Ping(reply)) if move_by.is_some() => self.defer_ping(reply),
                    Some(Command::Ping(reply)) => {
                        if let Err(e) = self.send_ping(&mut ctrl_send, &mut pings, Some(reply)).await {
                            break self.closed_outcome(&conn, e).await;
                        }
                    }
                },
                // Woken when the last request in flight is answered (checked above).
                _ = live.idle.notified(), if move_by.is_some() => {}
                msg = ctrl_rx.recv() => match msg.map(|m| *m) {
                    Some(Ok(ControlMsg::Pong { nonce })) => {
                        last_pong = Instant::now();
                        if let Some(pos) = pings.iter().position(|p| p.0 == nonce) {
                            if let Some((_, sent, Some(reply))) = pings.remove(pos) {
                                let _ = reply.send(Ok(sent.elapsed()));
                            }
                        }
                    }
                    Some(Ok(ControlMsg::GoAway(g))) => {
                        let after = Duration::from_millis(u64::from(g.reconnect_after_ms));
                        self.shared.events.emit(Event::GoAway { reconnect_after: after });
                        let at = Instant::now() + after;
                        goaway_at = Some(goaway_at.map_or(at, |g| g.min(at)));
                    }
                    Some(Ok(ControlMsg::ResumeTokenRefresh { resume_token })) => {
                        self.refresh_resume_token(resume_token);
                    }
                    Some(Ok(ControlMsg::Kick(k))) => {
                        conn.close(k.reason.0.into(), b"kicked");
                        break Outcome::Kicked { code: k.reason, message: k.message };
                    }
                    Some(Ok(_)) => {
                        let err = ClientError::unexpected("unexpected frame on the control stream");
                        conn.close(ErrorCode::UnexpectedFrame.0.into(), b"unexpected control frame");
                        break Outcome::Lost(err);
                    }
                    Some(Err(ReadError::Decode(e))) => {
                        conn.close(e.code().0.into(), b"bad control frame");
                        break Outcome::Lost(ClientError::protocol(&e));
                    }
                    Some(Err(ReadError::Io(detail))) => break self.closed_outcome(&conn, detail).await,
                    None => break self.closed_outcome(&conn, "control stream ended".into()).await,
                },
                _ = tick.tick() => {
                    if last_pong.elapsed() > hb * 2 {
                        conn.close(ErrorCode::IdleTimeout.0.into(), b"no pong");
                        break Outcome::Lost(ClientError::ConnectionLost(format!(
                            "no Pong for {} ms (2 heartbeat intervals)",
                            (hb * 2).as_millis()
                        )));
                    }
                    if let Err(e) = self.send_ping(&mut ctrl_send, &mut pings, None).await {
                        break self.closed_outcome(&conn, e).await;
                    }
                }
                _ = goaway_sleep, if goaway_at.is_some() && move_by.is_none() => {
                    // Stop sending here; requests already sent get their answers
                    // before the connection is closed (checked at the loop's top).
                    live.begin_move();
                    move_by = Some(Instant::now() + self.shared.config.request_timeout);
                }
                _ = move_sleep, if move_by.is_some() => {
                    tracing::debug!("requests still unanswered a request timeout after GoAway; moving anyway");
                    conn.close(ErrorCode::Draining.0.into(), b"moving after GoAway");
                    break Outcome::GoAway;
                }
                e = conn.closed() => break Self::map_close(e),
            }
        };
        reader.abort();
        let err = match &outcome {
            Outcome::Closed => ClientError::Closed,
            _ => ClientError::ConnectionLost("connection ended before the Pong".into()),
        };
        for (_, _, reply) in pings {
            if let Some(r) = reply {
                let _ = r.send(Err(err.clone()));
            }
        }
        outcome
    }

    /// Keeps the newest resume token (PROTOCOL.md 3.4); an empty one is ignored.
    fn refresh_resume_token(&mut self, token: String) {
        if token.is_empty() {
            return;
        }
        if let Some(info) = self
            .shared
            .info
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            info.resume_token.clone_from(&token);
        }
        self.resume_token = Some(token);
        tracing::trace!("outpost resume token refreshed");
    }

    /// Keeps a ping for the next connection (dropping those whose caller gave up).
    fn defer_ping(&mut self, reply: PingReply) {
        self.deferred_pings.retain(|r| !r.is_closed());
        self.deferred_pings.push(reply);
    }

    async fn send_ping(
        &mut self,
        ctrl_send: &mut quinn::SendStream,
        pings: &mut VecDeque<PendingPing>,
        reply: Option<PingReply>,
    ) -> Result<(), String> {
        self.nonce = self.nonce.wrapping_add(1);
        if pings.len() >= MAX_PENDING_PINGS {
            if let Some((_, _, Some(r))) = pings.pop_front() {
                let _ = r.send(Err(ClientError::Timeout));
            }
        }
        pings.push_back((self.nonce, Instant::now(), reply));
        write_frame(ctrl_send, &ControlMsg::Ping { nonce: self.nonce }.encode()).await
    }

    /// The control stream failed: find out why from the connection.
    async fn closed_outcome(&self, conn: &quinn::Connection, detail: String) -> Outcome {
        match tokio::time::timeout(Duration::from_millis(200), conn.closed()).await {
            Ok(e) => Self::map_close(e),
            Err(_) => {
                conn.close(ErrorCode::BadFrame.0.into(), b"control stream failed");
                Outcome::Lost(ClientError::ConnectionLost(detail))
            }
        }
    }

    fn map_close(e: ConnectionError) -> Outcome {
        match app_code(&e) {
            // The Kick frame may be overtaken by the close carrying its reason.
            Some(code) if is_final_kick(code) => Outcome::Kicked {
                code,
                message: match &e {
                    ConnectionError::ApplicationClosed(c) => String::from_utf8_lossy(&c.reason).into_owned(),
                    _ => String::new(),
                },
            },
            _ => Outcome::Lost(ClientError::ConnectionLost(e.to_string())),
        }
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
            let credentials = match &self.session_token {
                Some(t) => Credentials::Token(t.clone()),
                None => config.credentials.clone(),
            };
            let dial = establish(&shared, credentials, self.resume_token.clone());
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
                            self.resume_token = None;
                            immediate = true;
                        }
                        ClientError::Rejected { code, .. } if is_fatal_reject(*code) => {
                            if self.session_token.take().is_some() {
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

/// Reads the control stream and forwards decoded frames to the actor; ends at
/// the first error.
async fn control_reader(
    mut recv: quinn::RecvStream,
    max_frame: u32,
    tx: mpsc::Sender<Box<Result<ControlMsg, ReadError>>>,
) {
    loop {
        match read_control(&mut recv, max_frame).await {
            Ok(Some(msg)) => {
                if tx.send(Box::new(Ok(msg))).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                let _ = tx.send(Box::new(Err(e))).await;
                return;
            }
        }
    }
}

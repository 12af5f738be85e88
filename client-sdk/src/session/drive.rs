//! Driving one logged-in connection: the control stream (Pongs, GoAway,
//! resume-token refreshes, Kick), heartbeats, commands from `Client` handles,
//! the GoAway move (stop sending, leave once every request sent here was
//! answered), and the telemetry flush schedule (`telemetry_flush.rs`). The
//! actor itself, its reconnects and its state are in the parent module.

use std::collections::VecDeque;
use std::time::Duration;

use outpost_schema::{ControlMsg, ErrorCode};
use quinn::ConnectionError;
use tokio::time::Instant;

use super::{heartbeat_interval, Actor, Command, LiveConn, Outcome, PingReply};
use crate::connection::{Established, KillSwitch};
use crate::error::{is_final_kick, ClientError};
use crate::events::Event;
use crate::framing::{write_frame, FrameReader, ReadError};
use crate::telemetry_flush::report_done;

/// Pings awaiting a Pong; the oldest is failed when more are sent.
const MAX_PENDING_PINGS: usize = 32;
/// A Ping awaiting its Pong: nonce, when it was sent, who waits (none for heartbeats).
type PendingPing = (u64, Instant, Option<PingReply>);

/// What `drive` tracks on one connection's control stream.
struct ControlState {
    /// Pings awaiting their Pong, oldest first.
    pings: VecDeque<PendingPing>,
    /// When the last Pong arrived: two heartbeat intervals without one and
    /// the connection counts as lost (see `ticks_since_pong`).
    last_pong: Instant,
    /// Heartbeat ticks this client ran since the last Pong. The loss rule
    /// also needs three of them, so that a pause of the client itself (a
    /// loading hitch that blocks the runtime, a suspended mobile app, a
    /// debugger) is not taken for the gateway's silence: after the pause
    /// the delayed tick fires once, the Pong already waiting in the stream is
    /// read next, and only a gateway that stays silent while the client
    /// runs loses the connection.
    ticks_since_pong: u32,
    /// When the next heartbeat Ping is due.
    next_heartbeat: Instant,
    /// When the earliest GoAway's delay elapses.
    goaway_at: Option<Instant>,
    /// Set once the GoAway delay elapsed: leave when quiet, or at this instant.
    move_by: Option<Instant>,
}

impl ControlState {
    /// When the loop's one timer must fire next: the next heartbeat, the end
    /// of a GoAway's delay, or the deadline of the move that followed it.
    fn next_deadline(&self) -> Instant {
        match (self.move_by, self.goaway_at) {
            (Some(m), _) => self.next_heartbeat.min(m),
            (None, Some(g)) => self.next_heartbeat.min(g),
            (None, None) => self.next_heartbeat,
        }
    }
}

/// What `drive` keeps of an [`Established`] while the connection lasts (the
/// `Welcome`, the endpoint and the address are not needed any more).
struct Link {
    socket: KillSwitch,
    conn: quinn::Connection,
    ctrl_send: quinn::SendStream,
    ctrl_recv: quinn::RecvStream,
    max_frame: u32,
    heartbeat: Duration,
}

impl Link {
    /// A plain function, not part of the async `drive`: the `Established` and
    /// its `Welcome` are gone (their heap too) before the loop starts.
    fn new(est: Box<Established>) -> Link {
        let Established {
            socket,
            conn,
            ctrl_send,
            ctrl_recv,
            max_frame,
            welcome,
            ..
        } = *est;
        Link {
            socket,
            conn,
            ctrl_send,
            ctrl_recv,
            max_frame,
            heartbeat: heartbeat_interval(&welcome),
        }
    }
}

/// What one event of the loop means for the connection.
enum Step {
    Continue,
    End(Outcome),
    /// The control stream failed (the detail): the connection tells why.
    Failed(String),
}

fn app_code(e: &ConnectionError) -> Option<ErrorCode> {
    match e {
        ConnectionError::ApplicationClosed(c) => u16::try_from(c.error_code.into_inner()).ok().map(ErrorCode),
        _ => None,
    }
}

impl Actor {
    /// Drives one logged-in connection until it ends.
    ///
    /// This future lives as long as the connection, in every client's task
    /// (memory per client, issue 21): the `Established` comes boxed and is
    /// reduced to a [`Link`] at once, one timer serves heartbeats and the
    /// GoAway move, the control stream is read here (no reader task and
    /// queue), and the rare diagnosis of a failed stream is boxed.
    pub(super) async fn drive(&mut self, est: Box<Established>, live: &LiveConn) -> Outcome {
        let mut link = Link::new(est);
        // `FrameReader` keeps a half-read frame when another branch of the
        // select wins.
        let mut reader = FrameReader::default();
        let now = Instant::now();
        let mut st = ControlState {
            pings: VecDeque::new(),
            last_pong: now,
            ticks_since_pong: 0,
            next_heartbeat: now + link.heartbeat,
            goaway_at: None,
            move_by: None,
        };
        for reply in std::mem::take(&mut self.deferred_pings) {
            if !reply.is_closed() {
                if let Err(e) = self
                    .send_ping(&mut link.ctrl_send, &mut st.pings, Some(reply))
                    .await
                {
                    return Box::pin(self.closed_outcome(&link.conn, e)).await;
                }
            }
        }
        let timer = tokio::time::sleep_until(st.next_deadline());
        tokio::pin!(timer);

        let outcome = loop {
            if st.move_by.is_some() && live.is_quiet() && !st.pings.iter().any(|p| p.2.is_some()) {
                // Every request sent here was answered: leave now.
                link.conn
                    .close(ErrorCode::Draining.0.into(), b"moving after GoAway");
                break Outcome::GoAway;
            }
            let due = match &self.flush {
                Some(f) => st.next_deadline().min(f.next()),
                None => st.next_deadline(),
            };
            if timer.deadline() != due {
                timer.as_mut().reset(due);
            }
            let step = tokio::select! {
                cmd = self.cmds.recv() => self.on_command(cmd, &mut link, &mut st).await,
                // Woken when the last request in flight is answered (checked above).
                _ = live.idle.notified(), if st.move_by.is_some() => Step::Continue,
                // Once the stream ended or failed, `on_control` ends the connection.
                msg = reader.control(&mut link.ctrl_recv, link.max_frame) => {
                    self.on_control(msg.transpose(), &link.conn, &mut st)
                }
                () = &mut timer => self.on_timer(due, live, &mut link, &mut st).await,
                // The telemetry batch filled: send it now.
                _ = self.shared.telemetry.filled().notified(), if self.flush.is_some() => {
                    if let Some(f) = &mut self.flush {
                        f.flush(&self.shared.telemetry, Instant::now());
                    }
                    Step::Continue
                }
                () = report_done(&mut self.flush) => {
                    if let Some(f) = &mut self.flush {
                        f.finished(&self.shared.telemetry, Instant::now());
                    }
                    Step::Continue
                }
                e = link.conn.closed() => Step::End(Self::map_close(e)),
            };
            match step {
                Step::Continue => {}
                Step::End(outcome) => break outcome,
                Step::Failed(detail) => break Box::pin(self.closed_outcome(&link.conn, detail)).await,
            }
        };
        let err = match &outcome {
            Outcome::Closed => ClientError::Closed,
            _ => ClientError::ConnectionLost("connection ended before the Pong".into()),
        };
        for (_, _, reply) in st.pings {
            if let Some(r) = reply {
                let _ = r.send(Err(err.clone()));
            }
        }
        outcome
    }

    /// A command from a `Client` handle (`None`: every handle is gone).
    async fn on_command(&mut self, cmd: Option<Command>, link: &mut Link, st: &mut ControlState) -> Step {
        let conn = &link.conn;
        match cmd {
            None => {
                conn.close(ErrorCode::Unspecified.0.into(), b"client dropped");
                Step::End(Outcome::Closed)
            }
            Some(Command::Close(reply)) => {
                self.closers.push(reply);
                let _ = link.ctrl_send.finish();
                conn.close(ErrorCode::Unspecified.0.into(), b"logout");
                Step::End(Outcome::Closed)
            }
            Some(Command::Kill) => {
                link.socket.kill();
                conn.close(ErrorCode::Unspecified.0.into(), b"");
                Step::End(Outcome::Lost(ClientError::ConnectionLost(
                    "connection killed (debug hook)".into(),
                )))
            }
            Some(Command::Ping(reply)) if st.move_by.is_some() => {
                self.defer_ping(reply);
                Step::Continue
            }
            Some(Command::Ping(reply)) => {
                match self
                    .send_ping(&mut link.ctrl_send, &mut st.pings, Some(reply))
                    .await
                {
                    Ok(()) => Step::Continue,
                    Err(e) => Step::Failed(e),
                }
            }
        }
    }

    /// A frame (or the end) of the control stream.
    fn on_control(
        &mut self,
        msg: Option<Result<ControlMsg, ReadError>>,
        conn: &quinn::Connection,
        st: &mut ControlState,
    ) -> Step {
        match msg {
            Some(Ok(ControlMsg::Pong { nonce })) => {
                st.last_pong = Instant::now();
                st.ticks_since_pong = 0;
                if let Some(pos) = st.pings.iter().position(|p| p.0 == nonce) {
                    if let Some((_, sent, Some(reply))) = st.pings.remove(pos) {
                        let _ = reply.send(Ok(sent.elapsed()));
                    }
                }
                Step::Continue
            }
            Some(Ok(ControlMsg::GoAway(g))) => {
                let after = Duration::from_millis(u64::from(g.reconnect_after_ms));
                self.shared.events.emit(Event::GoAway {
                    reconnect_after: after,
                });
                let at = Instant::now() + after;
                st.goaway_at = Some(st.goaway_at.map_or(at, |g| g.min(at)));
                Step::Continue
            }
            Some(Ok(ControlMsg::ResumeTokenRefresh { resume_token })) => {
                self.refresh_resume_token(resume_token);
                Step::Continue
            }
            Some(Ok(ControlMsg::Kick(k))) => {
                conn.close(k.reason.0.into(), b"kicked");
                Step::End(Outcome::Kicked {
                    code: k.reason,
                    message: k.message,
                })
            }
            Some(Ok(_)) => {
                let err = ClientError::unexpected("unexpected frame on the control stream");
                conn.close(ErrorCode::UnexpectedFrame.0.into(), b"unexpected control frame");
                Step::End(Outcome::Lost(err))
            }
            Some(Err(ReadError::Decode(e))) => {
                conn.close(e.code().0.into(), b"bad control frame");
                Step::End(Outcome::Lost(ClientError::protocol(&e)))
            }
            Some(Err(ReadError::Io(detail))) => Step::Failed(detail),
            None => Step::Failed("control stream ended".into()),
        }
    }

    /// The loop's timer fired at `due` (see [`ControlState::next_deadline`]):
    /// the move's deadline, the end of a GoAway's delay, a heartbeat, or more
    /// than one of them.
    async fn on_timer(
        &mut self,
        due: Instant,
        live: &LiveConn,
        link: &mut Link,
        st: &mut ControlState,
    ) -> Step {
        // The timer fired, so `due` has passed even if the clock reads a hair before it.
        let now = Instant::now().max(due);
        if let Some(f) = self.flush.as_mut().filter(|f| now >= f.next()) {
            f.tick(&self.shared.telemetry, now);
        }
        if st.move_by.is_some_and(|m| now >= m) {
            tracing::debug!("requests still unanswered a request timeout after GoAway; moving anyway");
            link.conn
                .close(ErrorCode::Draining.0.into(), b"moving after GoAway");
            return Step::End(Outcome::GoAway);
        }
        if st.move_by.is_none() && st.goaway_at.is_some_and(|g| now >= g) {
            // Stop sending here; requests already sent get their answers
            // before the connection is closed (checked at the loop's top).
            live.begin_move();
            st.move_by = Some(now + self.shared.config.request_timeout);
        }
        if now < st.next_heartbeat {
            return Step::Continue;
        }
        let hb = link.heartbeat;
        // As an interval that delays missed ticks: a heartbeat late by a whole
        // interval restarts the schedule from now instead of bursting.
        st.next_heartbeat = if now >= st.next_heartbeat + hb {
            now + hb
        } else {
            st.next_heartbeat + hb
        };
        st.ticks_since_pong = st.ticks_since_pong.saturating_add(1);
        // Three ticks: a silent gateway is caught at the same tick as by the
        // wall clock alone (the Pong before the first unanswered Ping came
        // about one interval before it), a paused client is not.
        if st.ticks_since_pong >= 3 && st.last_pong.elapsed() > hb * 2 {
            link.conn.close(ErrorCode::IdleTimeout.0.into(), b"no pong");
            return Step::End(Outcome::Lost(ClientError::ConnectionLost(format!(
                "no Pong for {} ms (2 heartbeat intervals)",
                (hb * 2).as_millis()
            ))));
        }
        match self.send_ping(&mut link.ctrl_send, &mut st.pings, None).await {
            Ok(()) => Step::Continue,
            Err(e) => Step::Failed(e),
        }
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
            info.resume_token = token;
            self.resume_ok = true;
        }
        tracing::trace!("outpost resume token refreshed");
    }

    /// Sends a Ping (`reply`: who waits for its Pong; none for heartbeats),
    /// failing the oldest pending one when too many wait.
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
}

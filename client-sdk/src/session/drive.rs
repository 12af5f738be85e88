//! Driving one logged-in connection: the control stream (Pongs, GoAway,
//! resume-token refreshes, Kick), heartbeats, commands from `Client` handles,
//! and the GoAway move (stop sending, leave once every request sent here was
//! answered). The actor itself, its reconnects and its state are in the
//! parent module.

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

/// Pings awaiting a Pong; the oldest is failed when more are sent.
const MAX_PENDING_PINGS: usize = 32;
/// A Ping awaiting its Pong: nonce, when it was sent, who waits (none for heartbeats).
type PendingPing = (u64, Instant, Option<PingReply>);

/// What `drive` tracks on one connection's control stream.
struct ControlState {
    /// Pings awaiting their Pong, oldest first.
    pings: VecDeque<PendingPing>,
    /// When the last Pong arrived: two heartbeat intervals without one and
    /// the connection counts as lost.
    last_pong: Instant,
    /// When the earliest GoAway's delay elapses.
    goaway_at: Option<Instant>,
    /// Set once the GoAway delay elapsed: leave when quiet, or at this instant.
    move_by: Option<Instant>,
}

fn app_code(e: &ConnectionError) -> Option<ErrorCode> {
    match e {
        ConnectionError::ApplicationClosed(c) => u16::try_from(c.error_code.into_inner()).ok().map(ErrorCode),
        _ => None,
    }
}

impl Actor {
    /// Drives one logged-in connection until it ends.
    pub(super) async fn drive(&mut self, est: Established, live: &LiveConn) -> Outcome {
        let Established {
            socket,
            conn,
            mut ctrl_send,
            mut ctrl_recv,
            max_frame,
            welcome,
            ..
        } = est;
        // The control stream is read by this loop itself, not by a task of its
        // own feeding a queue (memory per client, issue 21). `FrameReader`
        // keeps a half-read frame when another branch of the select wins.
        let mut reader = FrameReader::default();
        let hb = heartbeat_interval(&welcome);
        let mut tick = tokio::time::interval_at(Instant::now() + hb, hb);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut st = ControlState {
            pings: VecDeque::new(),
            last_pong: Instant::now(),
            goaway_at: None,
            move_by: None,
        };
        for reply in std::mem::take(&mut self.deferred_pings) {
            if !reply.is_closed() {
                if let Err(e) = self.send_ping(&mut ctrl_send, &mut st.pings, Some(reply)).await {
                    return self.closed_outcome(&conn, e).await;
                }
            }
        }

        let outcome = loop {
            if st.move_by.is_some() && live.is_quiet() && !st.pings.iter().any(|p| p.2.is_some()) {
                // Every request sent here was answered: leave now.
                conn.close(ErrorCode::Draining.0.into(), b"moving after GoAway");
                break Outcome::GoAway;
            }
            let goaway_sleep = tokio::time::sleep_until(st.goaway_at.unwrap_or_else(Instant::now));
            let move_sleep = tokio::time::sleep_until(st.move_by.unwrap_or_else(Instant::now));
            tokio::select! {
                cmd = self.cmds.recv() => {
                    if let Some(outcome) = self.on_command(cmd, &socket, &conn, &mut ctrl_send, &mut st).await {
                        break outcome;
                    }
                }
                // Woken when the last request in flight is answered (checked above).
                _ = live.idle.notified(), if st.move_by.is_some() => {}
                // Once the stream ended or failed, `on_control` ends the connection.
                msg = reader.control(&mut ctrl_recv, max_frame) => {
                    if let Some(outcome) = self.on_control(msg.transpose(), &conn, &mut st).await {
                        break outcome;
                    }
                }
                _ = tick.tick() => {
                    if let Some(outcome) = self.on_heartbeat(hb, &conn, &mut ctrl_send, &mut st).await {
                        break outcome;
                    }
                }
                _ = goaway_sleep, if st.goaway_at.is_some() && st.move_by.is_none() => {
                    // Stop sending here; requests already sent get their answers
                    // before the connection is closed (checked at the loop's top).
                    live.begin_move();
                    st.move_by = Some(Instant::now() + self.shared.config.request_timeout);
                }
                _ = move_sleep, if st.move_by.is_some() => {
                    tracing::debug!("requests still unanswered a request timeout after GoAway; moving anyway");
                    conn.close(ErrorCode::Draining.0.into(), b"moving after GoAway");
                    break Outcome::GoAway;
                }
                e = conn.closed() => break Self::map_close(e),
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

    /// A command from a `Client` handle (`None`: every handle is gone); the
    /// connection's outcome if it ends the connection.
    async fn on_command(
        &mut self,
        cmd: Option<Command>,
        socket: &KillSwitch,
        conn: &quinn::Connection,
        ctrl_send: &mut quinn::SendStream,
        st: &mut ControlState,
    ) -> Option<Outcome> {
        match cmd {
            None => {
                conn.close(ErrorCode::Unspecified.0.into(), b"client dropped");
                Some(Outcome::Closed)
            }
            Some(Command::Close(reply)) => {
                self.closers.push(reply);
                let _ = ctrl_send.finish();
                conn.close(ErrorCode::Unspecified.0.into(), b"logout");
                Some(Outcome::Closed)
            }
            Some(Command::Kill) => {
                socket.kill();
                conn.close(ErrorCode::Unspecified.0.into(), b"");
                Some(Outcome::Lost(ClientError::ConnectionLost(
                    "connection killed (debug hook)".into(),
                )))
            }
            Some(Command::Ping(reply)) if st.move_by.is_some() => {
                self.defer_ping(reply);
                None
            }
            Some(Command::Ping(reply)) => match self.send_ping(ctrl_send, &mut st.pings, Some(reply)).await {
                Ok(()) => None,
                Err(e) => Some(self.closed_outcome(conn, e).await),
            },
        }
    }

    /// A frame (or the end) of the control stream; the connection's outcome
    /// if it ends the connection.
    async fn on_control(
        &mut self,
        msg: Option<Result<ControlMsg, ReadError>>,
        conn: &quinn::Connection,
        st: &mut ControlState,
    ) -> Option<Outcome> {
        match msg {
            Some(Ok(ControlMsg::Pong { nonce })) => {
                st.last_pong = Instant::now();
                if let Some(pos) = st.pings.iter().position(|p| p.0 == nonce) {
                    if let Some((_, sent, Some(reply))) = st.pings.remove(pos) {
                        let _ = reply.send(Ok(sent.elapsed()));
                    }
                }
                None
            }
            Some(Ok(ControlMsg::GoAway(g))) => {
                let after = Duration::from_millis(u64::from(g.reconnect_after_ms));
                self.shared.events.emit(Event::GoAway {
                    reconnect_after: after,
                });
                let at = Instant::now() + after;
                st.goaway_at = Some(st.goaway_at.map_or(at, |g| g.min(at)));
                None
            }
            Some(Ok(ControlMsg::ResumeTokenRefresh { resume_token })) => {
                self.refresh_resume_token(resume_token);
                None
            }
            Some(Ok(ControlMsg::Kick(k))) => {
                conn.close(k.reason.0.into(), b"kicked");
                Some(Outcome::Kicked {
                    code: k.reason,
                    message: k.message,
                })
            }
            Some(Ok(_)) => {
                let err = ClientError::unexpected("unexpected frame on the control stream");
                conn.close(ErrorCode::UnexpectedFrame.0.into(), b"unexpected control frame");
                Some(Outcome::Lost(err))
            }
            Some(Err(ReadError::Decode(e))) => {
                conn.close(e.code().0.into(), b"bad control frame");
                Some(Outcome::Lost(ClientError::protocol(&e)))
            }
            Some(Err(ReadError::Io(detail))) => Some(self.closed_outcome(conn, detail).await),
            None => Some(self.closed_outcome(conn, "control stream ended".into()).await),
        }
    }

    /// A heartbeat tick: gives up after two intervals without a Pong, else
    /// sends a Ping; the connection's outcome if it ends the connection.
    async fn on_heartbeat(
        &mut self,
        hb: Duration,
        conn: &quinn::Connection,
        ctrl_send: &mut quinn::SendStream,
        st: &mut ControlState,
    ) -> Option<Outcome> {
        if st.last_pong.elapsed() > hb * 2 {
            conn.close(ErrorCode::IdleTimeout.0.into(), b"no pong");
            return Some(Outcome::Lost(ClientError::ConnectionLost(format!(
                "no Pong for {} ms (2 heartbeat intervals)",
                (hb * 2).as_millis()
            ))));
        }
        match self.send_ping(ctrl_send, &mut st.pings, None).await {
            Ok(()) => None,
            Err(e) => Some(self.closed_outcome(conn, e).await),
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
            info.resume_token.clone_from(&token);
        }
        self.resume_token = Some(token);
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

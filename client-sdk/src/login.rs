//! Logging in on a control stream: `Hello`, then `Welcome`, `Reject`, or a
//! wait in the region's login queue (`Queued` updates until `Welcome`,
//! PROTOCOL.md 3.7); and [`establish`], one whole login as `connect` and every
//! reconnect make it: dial the gateways, wait in the queue if there is one,
//! and come back to the queue with the token when a queued connection is lost.

use std::time::Duration;

use outpost_schema::{
    negotiate_max_frame_size, ControlMsg, Credentials, ErrorCode, Hello, Queued, Welcome,
    HANDSHAKE_MAX_FRAME_SIZE, PROTOCOL_VERSION,
};
use quinn::{ConnectionError, RecvStream, SendStream};
use tokio::time::Instant;

use crate::backoff;
use crate::config::{ClientConfig, QueuePolicy};
use crate::connection::{dial_and_login, Dial, Established};
use crate::error::{is_fatal_reject, ms, ClientError};
use crate::events::{Event, EventHub};
use crate::framing::{read_control, write_frame, ReadError};
use crate::queue::QueueWait;
use crate::session::Shared;

/// A queued connection from which nothing arrives for this many ping
/// intervals is treated as lost.
const QUEUE_SILENCE_INTERVALS: u32 = 3;

pub(crate) fn hello(config: &ClientConfig, credentials: Credentials, resume_token: Option<String>) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        client_version: config.client_version.clone(),
        platform: config.platform,
        credentials: Some(credentials),
        resume_token,
        max_frame_size: config.max_frame_size,
        // This SDK keeps the newest token from ResumeTokenRefresh (see `session.rs`).
        accepts_resume_refresh: true,
        accepts_queue: config.queue.enabled,
        queue_token: None,
    }
}

/// One whole login: dials the configured gateways and logs in at the best
/// one; if the login is queued, waits for admission, reporting
/// [`Event::Queued`] / [`Event::Admitted`]. A connection lost while queued
/// is re-established (with `reconnect` backoff, the lost gateway tried last)
/// presenting the newest queue token, until `queue.max_wait` from the first
/// `Queued`. A failure before any `Queued` is returned as is (the caller
/// decides about retries).
pub(crate) async fn establish(
    shared: &Shared,
    credentials: Credentials,
    resume_token: Option<String>,
) -> Result<Established, ClientError> {
    let config = &shared.config;
    let dial = Dial {
        config,
        quinn_cfg: &shared.quinn_cfg,
    };
    let mut wait = QueueWait::new(config.queue.max_wait, config.debug_queue_drop_after);
    let mut attempt = 0u32;
    let mut just_refused = false;
    loop {
        let mut hello = hello(config, credentials.clone(), resume_token.clone());
        hello.queue_token = wait.token();
        let heard_before = wait.received();
        let err = match dial_and_login(&dial, &hello, &mut wait, &shared.events).await {
            Ok(est) => {
                if let Some(ev) = wait.admitted(Instant::now()) {
                    shared.events.emit(ev);
                }
                return Ok(est);
            }
            Err(e) => e,
        };
        if !wait.is_queued() {
            return Err(err);
        }
        if wait.received() > heard_before {
            // The place was reached again: a new series of attempts.
            attempt = 0;
        }
        tracing::debug!(error = %err, "outpost queued login interrupted");
        if let ClientError::Rejected { code, .. } = &err {
            if !just_refused && wait.on_refused(*code) {
                just_refused = true;
                continue;
            }
            if is_fatal_reject(*code) {
                return Err(err);
            }
        }
        just_refused = false;
        let now = Instant::now();
        let Some(deadline) = wait.deadline().filter(|_| !wait.expired(now)) else {
            return Err(ClientError::Timeout);
        };
        attempt += 1;
        if config.reconnect.max_attempts.is_some_and(|max| attempt > max) {
            return Err(err);
        }
        let delay = backoff::random_delay(&config.reconnect, attempt, err.retry_after()).min(deadline - now);
        shared.events.emit(Event::Reconnecting { attempt, delay });
        tokio::time::sleep(delay).await;
    }
}

/// The gateway's first answer to `Hello`.
pub(crate) enum Answer {
    /// Logged in; with the negotiated maximum frame size.
    Welcome(Welcome, u32),
    /// The login waits in the queue.
    Queued(Queued),
}

/// Maps a connection that closed during login: the gateway closes with the
/// `Reject` reason as the application code, and that close may overtake the
/// `Reject` frame itself.
fn login_close_error(e: ConnectionError) -> ClientError {
    match e {
        ConnectionError::ApplicationClosed(c) => {
            let code = u16::try_from(c.error_code.into_inner())
                .map(ErrorCode)
                .unwrap_or(ErrorCode::Internal);
            ClientError::Rejected {
                code,
                message: String::from_utf8_lossy(&c.reason).into_owned(),
                retry_after: None,
            }
        }
        other => ClientError::Connect(other.to_string()),
    }
}

fn closed(conn: &quinn::Connection, detail: String) -> ClientError {
    match conn.close_reason() {
        Some(e) => login_close_error(e),
        None => ClientError::Connect(detail),
    }
}

/// Maps the first frame of an answer (or its absence) to the login's result.
async fn answer(
    conn: &quinn::Connection,
    msg: Result<Option<ControlMsg>, ReadError>,
    proposed_max_frame: u32,
) -> Result<Answer, ClientError> {
    match msg {
        Ok(Some(ControlMsg::Welcome(w))) => {
            let max_frame = negotiate_max_frame_size(proposed_max_frame, w.max_frame_size);
            Ok(Answer::Welcome(w, max_frame))
        }
        Ok(Some(ControlMsg::Queued(q))) => Ok(Answer::Queued(q)),
        Ok(Some(ControlMsg::Reject(r))) => Err(ClientError::Rejected {
            code: r.reason,
            message: r.message,
            retry_after: ms(r.retry_after_ms),
        }),
        Ok(Some(_)) => Err(ClientError::unexpected("expected Welcome, Queued or Reject")),
        Ok(None) => {
            // Give the CONNECTION_CLOSE carrying the reason a moment to arrive.
            let _ = tokio::time::timeout(Duration::from_millis(500), conn.closed()).await;
            Err(closed(conn, "control stream ended before Welcome".into()))
        }
        Err(ReadError::Io(detail)) => Err(closed(conn, detail)),
        Err(ReadError::Decode(e)) => Err(ClientError::protocol(&e)),
    }
}

/// Sends `Hello` on a new control stream and reads the first answer, within `timeout`.
pub(crate) async fn login(
    conn: &quinn::Connection,
    hello: &Hello,
    proposed_max_frame: u32,
    timeout: Duration,
) -> Result<(Answer, SendStream, RecvStream), ClientError> {
    let fut = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(login_close_error)?;
        write_frame(&mut send, &ControlMsg::Hello(hello.clone()).encode())
            .await
            .map_err(|d| closed(conn, d))?;
        let msg = read_control(&mut recv, HANDSHAKE_MAX_FRAME_SIZE).await;
        Ok((answer(conn, msg, proposed_max_frame).await?, send, recv))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| ClientError::Timeout)?
}

/// Waits on a queued connection until `Welcome`: pings every
/// `policy.ping_interval`, reports each `Queued`. Ends with the error when
/// the gateway refuses, the connection is lost or silent, or the wait's
/// deadline passes (the connection is then closed with code 0: the client
/// leaves the queue).
pub(crate) async fn wait_admitted(
    conn: &quinn::Connection,
    gateway: std::net::SocketAddr,
    streams: (SendStream, RecvStream),
    wait: &mut QueueWait,
    events: &EventHub,
    policy: &QueuePolicy,
    proposed_max_frame: u32,
) -> Result<(Welcome, u32, SendStream, RecvStream), ClientError> {
    let (mut send, mut recv) = streams;
    let deadline = wait
        .deadline()
        .unwrap_or_else(|| Instant::now() + policy.max_wait);
    let mut ping = tokio::time::interval_at(Instant::now() + policy.ping_interval, policy.ping_interval);
    let silence = policy.ping_interval * QUEUE_SILENCE_INTERVALS;
    let mut heard = Instant::now();
    let mut nonce = 0u64;
    loop {
        let msg = {
            let read = read_control(&mut recv, HANDSHAKE_MAX_FRAME_SIZE);
            tokio::pin!(read);
            loop {
                tokio::select! {
                    msg = &mut read => break msg,
                    _ = ping.tick() => {
                        if heard.elapsed() > silence {
                            conn.close(ErrorCode::IdleTimeout.0.into(), b"gateway silent");
                            return Err(ClientError::ConnectionLost(format!(
                                "nothing from the gateway for {} ms while queued",
                                silence.as_millis()
                            )));
                        }
                        nonce += 1;
                        write_frame(&mut send, &ControlMsg::Ping { nonce }.encode())
                            .await
                            .map_err(|d| lost(conn, d))?;
                    }
                    _ = tokio::time::sleep_until(deadline) => {
                        conn.close(ErrorCode::Unspecified.0.into(), b"queue wait over");
                        return Err(ClientError::Timeout);
                    }
                }
            }
        };
        heard = Instant::now();
        if let Ok(Some(ControlMsg::Pong { .. })) = msg {
            continue;
        }
        match answer(conn, msg, proposed_max_frame).await {
            Ok(Answer::Welcome(w, max_frame)) => return Ok((w, max_frame, send, recv)),
            Ok(Answer::Queued(q)) => {
                events.emit(wait.on_queued(&q, gateway, Instant::now()));
                if wait.take_debug_drop() {
                    // Test hook: abandon the connection as a lost network would.
                    conn.close(1u32.into(), b"abandoned (debug hook)");
                    return Err(ClientError::ConnectionLost(
                        "queued connection dropped (debug hook)".into(),
                    ));
                }
            }
            Err(ClientError::Connect(detail)) => return Err(ClientError::ConnectionLost(detail)),
            Err(e) => {
                if let ClientError::Protocol { code, .. } = &e {
                    conn.close(code.0.into(), b"protocol error");
                }
                return Err(e);
            }
        }
    }
}

/// A write on a queued connection failed: a refusal if the gateway closed it
/// with a code, else a loss.
fn lost(conn: &quinn::Connection, detail: String) -> ClientError {
    match closed(conn, detail) {
        ClientError::Connect(d) => ClientError::ConnectionLost(d),
        e => e,
    }
}

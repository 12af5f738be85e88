//! The session loop's heartbeat path over a raw client (issue 21, session
//! 12): a Ping is answered at once, not at the loop's next timer, and the
//! idle timeout still fires on time once the Pings stop, however often they
//! moved its deadline before. The loop keeps one timer for the session's life
//! and moves it only when the deadline moves; the control stream's reader
//! hands the loop its Pongs through the same `select!` turn instead of waking
//! it. A regression in either shows here as a late Pong or a missing Kick.

mod common;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use common::*;
use outpost_schema::{ControlMsg, ErrorCode};

const HEARTBEAT: Duration = Duration::from_millis(500);
const IDLE: Duration = Duration::from_secs(3);

/// The next control frame that is not a resume-token refresh.
async fn next_control(recv: &mut quinn::RecvStream) -> Result<ControlMsg> {
    loop {
        match ControlMsg::decode(&read_raw_frame(recv, 1 << 16).await?)? {
            ControlMsg::ResumeTokenRefresh { .. } => continue,
            other => return Ok(other),
        }
    }
}

#[tokio::test]
async fn pings_are_answered_at_once_and_the_idle_timeout_fires_after_the_last() -> Result<()> {
    let world = World::new().await?;
    let gw = world
        .gateway(|c| {
            c.session.heartbeat_interval_ms = HEARTBEAT.as_millis() as u64;
            c.session.idle_timeout_ms = IDLE.as_millis() as u64;
        })
        .await?;
    let conn = raw_connect(&gw).await?;
    let (mut send, mut recv, _) = raw_login(&conn, wire_device()).await?;

    // Pings for longer than the idle timeout: each must come back well before
    // the loop's timer would have woken it (the idle deadline, at least
    // IDLE - HEARTBEAT after any Ping), and none may end the session.
    let pings = (IDLE.as_millis() / HEARTBEAT.as_millis()) as u64 + 3;
    let mut last_ping = Instant::now();
    for nonce in 1..=pings {
        tokio::time::sleep(HEARTBEAT).await;
        last_ping = Instant::now();
        send.write_all(&ControlMsg::Ping { nonce }.encode()).await?;
        let answer = tokio::time::timeout(Duration::from_secs(1), next_control(&mut recv)).await;
        match answer {
            Ok(Ok(ControlMsg::Pong { nonce: n })) if n == nonce => {}
            Ok(other) => bail!("Ping {nonce} was answered with {other:?}"),
            Err(_) => bail!("Ping {nonce} not answered within 1 s"),
        }
    }
    assert!(conn.close_reason().is_none(), "{:?}", conn.close_reason());

    // Silence: the Kick comes at the idle timeout counted from the last Ping,
    // neither before it nor long after.
    let kick = tokio::time::timeout(IDLE * 3, next_control(&mut recv)).await??;
    let after = last_ping.elapsed();
    match kick {
        ControlMsg::Kick(k) => assert_eq!(k.reason, ErrorCode::IdleTimeout, "{k:?}"),
        other => bail!("expected the IdleTimeout Kick, got {other:?}"),
    }
    assert!(
        after >= IDLE,
        "kicked {after:?} after the last Ping (idle timeout {IDLE:?})"
    );
    assert!(
        after <= IDLE + Duration::from_secs(2),
        "kicked only {after:?} after the last Ping (idle timeout {IDLE:?})"
    );
    Ok(())
}

//! Issue #12, defect 1: a resume token is bound to the session it was issued
//! to. A later login, a kick (an operator's from any gateway) or a logout
//! revokes it on every gateway of the region, and a revoked token never
//! displaces the legitimate newer session. Two real gateways over QUIC on
//! loopback sharing one real embedded store; a raw client speaks the frames.

mod common;

use std::time::Duration;

use anyhow::{bail, Result};
use common::*;
use outpost_client::Credentials;
use outpost_schema::{ControlMsg, ErrorCode, Welcome};

/// A raw session: its connection and control stream.
struct Raw {
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    welcome: Welcome,
}

async fn login(gw: &TestGateway, creds: &Credentials) -> Result<Raw> {
    let conn = raw_connect(gw).await?;
    let (send, recv, welcome) = raw_login(&conn, creds.clone()).await?;
    Ok(Raw {
        conn,
        send,
        recv,
        welcome,
    })
}

/// Presents `token` (and `creds`, if any) in a Hello on a new connection;
/// returns the gateway's answer and the connection.
async fn present(
    gw: &TestGateway,
    token: &str,
    creds: Option<Credentials>,
) -> Result<(
    ControlMsg,
    quinn::Connection,
    quinn::SendStream,
    quinn::RecvStream,
)> {
    let conn = raw_connect(gw).await?;
    let (send, recv, answer) = raw_hello(&conn, creds, Some(token.to_owned()), true).await?;
    Ok((answer, conn, send, recv))
}

fn assert_resume_rejected(answer: &ControlMsg, what: &str) {
    match answer {
        ControlMsg::Reject(r) => assert_eq!(r.reason, ErrorCode::ResumeRejected, "{what}: {r:?}"),
        other => panic!("{what}: expected Reject {{ ResumeRejected }}, got {other:?}"),
    }
}

/// Reads control frames until a Kick; then the connection must close with the
/// kick's reason as its application error code.
async fn expect_kick(raw: &mut Raw, reason: ErrorCode) -> Result<()> {
    let kick = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ControlMsg::decode(&read_raw_frame(&mut raw.recv, 1 << 16).await?)? {
                ControlMsg::Kick(k) => return Ok::<_, anyhow::Error>(k),
                _ => continue,
            }
        }
    })
    .await??;
    assert_eq!(kick.reason, reason, "{kick:?}");
    let closed = tokio::time::timeout(Duration::from_secs(5), raw.conn.closed()).await?;
    expect_closed_with(&closed, reason)
}

/// The session answers a Ping: it is alive and was not kicked.
async fn assert_alive(raw: &mut Raw) -> Result<()> {
    raw.send
        .write_all(&ControlMsg::Ping { nonce: 7 }.encode())
        .await?;
    let pong = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ControlMsg::decode(&read_raw_frame(&mut raw.recv, 1 << 16).await?)? {
                ControlMsg::Pong { nonce } => return Ok::<_, anyhow::Error>(nonce),
                ControlMsg::Kick(k) => bail!("the newer session was kicked: {k:?}"),
                _ => continue,
            }
        }
    })
    .await??;
    assert_eq!(pong, 7);
    Ok(())
}

#[tokio::test]
async fn a_replaced_sessions_resume_token_resumes_nowhere() -> Result<()> {
    let world = World::new().await?;
    let a = world.gateway(|_| {}).await?;
    let b = world.gateway(|_| {}).await?;
    let creds = wire_device();
    let mut old = login(&a, &creds).await?;
    let old_token = old.welcome.resume_token.clone();
    // The player logs in again on the other gateway: the old session is kicked.
    let mut newer = login(&b, &creds).await?;
    expect_kick(&mut old, ErrorCode::ReplacedByNewLogin).await?;

    // The kicked session's token, alone, is refused on both gateways...
    for gw in [&a, &b] {
        let (answer, ..) = present(gw, &old_token, None).await?;
        assert_resume_rejected(&answer, "replaced session's token");
    }
    // ...and did not displace the legitimate newer session.
    assert_alive(&mut newer).await?;
    assert_eq!(b.handle.sessions_live(), 1);

    // The newer session's own token still resumes (and that resume in turn
    // revokes it and replaces the newer connection).
    let (answer, ..) = present(&a, &newer.welcome.resume_token, None).await?;
    match answer {
        ControlMsg::Welcome(w) => assert!(w.resumed),
        other => bail!("the current session's token must resume: {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn an_operator_kick_on_any_gateway_kicks_and_revokes_everywhere() -> Result<()> {
    let world = World::new().await?;
    let a = world.gateway(|_| {}).await?;
    let b = world.gateway(|_| {}).await?;
    let creds = wire_device();
    let mut session = login(&a, &creds).await?;
    let token = session.welcome.resume_token.clone();
    let player = session.welcome.player_id.clone();

    // The operator uses gateway B's admin API; the session lives on A.
    let admin = b.admin;
    let kicked = tokio::task::spawn_blocking(move || http(admin, "POST", &format!("/players/{player}/kick")))
        .await??;
    assert!(kicked.starts_with("HTTP/1.1 200"), "{kicked}");
    expect_kick(&mut session, ErrorCode::KickedByOperator).await?;
    assert!(eventually(Duration::from_secs(5), || a.handle.sessions_live() == 0).await);

    for gw in [&a, &b] {
        let (answer, ..) = present(gw, &token, None).await?;
        assert_resume_rejected(&answer, "operator-kicked session's token");
    }
    // With credentials the revoked token falls back to a full login.
    let (answer, ..) = present(&b, &token, Some(creds)).await?;
    match answer {
        ControlMsg::Welcome(w) => assert!(!w.resumed, "a full login, not a resume"),
        other => bail!("credentials must still log in: {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn an_operator_kick_revokes_a_disconnected_but_resumable_session() -> Result<()> {
    let world = World::new().await?;
    let a = world.gateway(|_| {}).await?;
    let session = login(&a, &wire_device()).await?;
    let token = session.welcome.resume_token.clone();
    let player = session.welcome.player_id.clone();
    // The connection is lost, not logged out: resumable.
    abandon(&session.conn);
    assert!(eventually(Duration::from_secs(5), || a.handle.sessions_live() == 0).await);

    let admin = a.admin;
    let kicked = tokio::task::spawn_blocking(move || http(admin, "POST", &format!("/players/{player}/kick")))
        .await??;
    assert!(
        kicked.starts_with("HTTP/1.1 200"),
        "a resumable session was revoked: {kicked}"
    );
    let (answer, ..) = present(&a, &token, None).await?;
    assert_resume_rejected(&answer, "token of a session kicked while disconnected");
    Ok(())
}

#[tokio::test]
async fn a_lost_connection_resumes_but_a_logout_does_not() -> Result<()> {
    let world = World::new().await?;
    let a = world.gateway(|_| {}).await?;
    let b = world.gateway(|_| {}).await?;
    let session = login(&a, &wire_device()).await?;
    // Lost (any code but 0): resumable, on the other gateway too.
    abandon(&session.conn);
    let (answer, conn, ..) = present(&b, &session.welcome.resume_token, None).await?;
    let resumed = match answer {
        ControlMsg::Welcome(w) => {
            assert!(w.resumed);
            w
        }
        other => bail!("a lost connection must resume: {other:?}"),
    };
    // Logout: close with code 0. Its token no longer resumes anywhere.
    conn.close(0u32.into(), b"logout");
    assert!(eventually(Duration::from_secs(5), || b.handle.sessions_live() == 0).await);
    for gw in [&a, &b] {
        let (answer, ..) = present(gw, &resumed.resume_token, None).await?;
        assert_resume_rejected(&answer, "token of a logged-out session");
    }
    Ok(())
}

#[tokio::test]
async fn finishing_the_control_stream_is_a_logout() -> Result<()> {
    let world = World::new().await?;
    let a = world.gateway(|_| {}).await?;
    let mut session = login(&a, &wire_device()).await?;
    session.send.finish()?;
    let closed = tokio::time::timeout(Duration::from_secs(5), session.conn.closed()).await?;
    assert!(
        matches!(&closed, quinn::ConnectionError::ApplicationClosed(c) if c.error_code.into_inner() == 0),
        "{closed:?}"
    );
    let (answer, ..) = present(&a, &session.welcome.resume_token, None).await?;
    assert_resume_rejected(&answer, "token of a session whose control stream was finished");
    Ok(())
}

#[tokio::test]
async fn an_idle_timeout_kick_leaves_the_session_resumable() -> Result<()> {
    // The client may never see an IdleTimeout Kick (its network is down): that
    // outage is what resume exists for, so the kick revokes nothing.
    let world = World::new().await?;
    let a = world
        .gateway(|c| {
            c.session.heartbeat_interval_ms = 200;
            c.session.idle_timeout_ms = 600;
        })
        .await?;
    let mut session = login(&a, &wire_device()).await?;
    expect_kick(&mut session, ErrorCode::IdleTimeout).await?;
    let (answer, ..) = present(&a, &session.welcome.resume_token, None).await?;
    match answer {
        ControlMsg::Welcome(w) => assert!(w.resumed),
        other => bail!("an idle-timed-out session must resume: {other:?}"),
    }
    Ok(())
}

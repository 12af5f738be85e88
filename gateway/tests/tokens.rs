//! Welcome's tokens over real QUIC: a still-fresh session token comes back
//! unchanged (no signature), an aging or rotated-out one is replaced, and
//! session tokens (Ed25519) and resume tokens (MAC) are not interchangeable.

mod common;

use std::time::Duration;

use anyhow::{bail, Result};
use common::*;
use outpost_backend::identity::{unix_now, Identity};
use outpost_schema::{ControlMsg, Credentials, ErrorCode, Welcome};

/// Hello on a fresh raw connection; the gateway's answer.
async fn hello(
    gw: &TestGateway,
    credentials: Option<Credentials>,
    resume_token: Option<String>,
) -> Result<ControlMsg> {
    let conn = raw_connect(gw).await?;
    let (_send, _recv, answer) = raw_hello(&conn, credentials, resume_token, true).await?;
    abandon(&conn); // not a logout: the session stays resumable
    Ok(answer)
}

async fn welcome(gw: &TestGateway, credentials: Credentials) -> Result<Welcome> {
    match hello(gw, Some(credentials), None).await? {
        ControlMsg::Welcome(w) => Ok(w),
        other => bail!("expected Welcome, got {other:?}"),
    }
}

#[tokio::test]
async fn a_fresh_session_token_comes_back_unchanged_and_an_aging_one_is_replaced() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let ttl = world.config().session.session_token_ttl_secs;
    let first = welcome(&gw, wire_device()).await?;
    let identity = Identity::open(world.store.clone()).await?;
    let verifier = identity.verifier().await?;

    // Fresh (issued 10 s ago, almost the whole TTL left): handed back as is.
    // (Signatures are deterministic: a token re-signed now would differ only
    // because its `iat` and `exp` would.)
    let fresh = identity
        .issue_token_at(&first.player_id, Duration::from_secs(ttl), unix_now() - 10)
        .await?
        .token;
    let again = welcome(&gw, Credentials::Token(fresh.clone())).await?;
    assert_eq!(again.player_id, first.player_id);
    assert_eq!(again.session_token, fresh);

    // Less than half the TTL left: a new token, valid for a whole TTL.
    let aging = identity
        .issue_token(&first.player_id, Duration::from_secs(ttl / 2 - 60))
        .await?
        .token;
    let renewed = welcome(&gw, Credentials::Token(aging.clone())).await?;
    assert_ne!(renewed.session_token, aging);
    let claims = verifier.verify(&renewed.session_token, unix_now())?;
    assert_eq!(claims.sub, first.player_id);
    assert!(
        claims.exp >= unix_now() + ttl - 5,
        "renewed token lives a whole TTL"
    );

    // After a rotation, a token of the old key still logs in but is replaced by
    // one of the new key (once this gateway has reloaded its keyring).
    let new_kid = identity.rotate_signing_key().await?;
    let mut replaced = None;
    for _ in 0..100 {
        let w = welcome(&gw, Credentials::Token(fresh.clone())).await?;
        assert_eq!(w.player_id, first.player_id);
        if w.session_token != fresh {
            replaced = Some(w.session_token);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let replaced = replaced.expect("the gateway reloads its keyring after a rotation");
    let claims = identity.verifier().await?.verify(&replaced, unix_now())?;
    assert_eq!(claims.kid, new_kid);
    Ok(())
}

#[tokio::test]
async fn session_and_resume_tokens_are_not_interchangeable() -> Result<()> {
    let world = World::new().await?;
    let gw = world.gateway(|_| {}).await?;
    let w = welcome(&gw, wire_device()).await?;
    assert_ne!(w.session_token, w.resume_token);

    // The resume token resumes; the session token presented as one does not.
    match hello(&gw, None, Some(w.resume_token.clone())).await? {
        ControlMsg::Welcome(r) => assert!(r.resumed && r.player_id == w.player_id, "{r:?}"),
        other => bail!("expected a resumed Welcome, got {other:?}"),
    }
    match hello(&gw, None, Some(w.session_token.clone())).await? {
        ControlMsg::Reject(r) => assert_eq!(r.reason, ErrorCode::ResumeRejected),
        other => bail!("expected ResumeRejected, got {other:?}"),
    }
    // The resume token is no login credential.
    match hello(&gw, Some(Credentials::Token(w.resume_token.clone())), None).await? {
        ControlMsg::Reject(r) => assert_eq!(r.reason, ErrorCode::TokenMalformed),
        other => bail!("expected TokenMalformed, got {other:?}"),
    }
    // A resume token with one MAC character changed is refused; with
    // credentials beside it, the login falls back to them (not resumed).
    let mut forged = w.resume_token.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged)?;
    match hello(&gw, None, Some(forged.clone())).await? {
        ControlMsg::Reject(r) => assert_eq!(r.reason, ErrorCode::ResumeRejected),
        other => bail!("expected ResumeRejected, got {other:?}"),
    }
    match hello(
        &gw,
        Some(Credentials::Token(w.session_token.clone())),
        Some(forged),
    )
    .await?
    {
        ControlMsg::Welcome(r) => assert!(!r.resumed && r.player_id == w.player_id, "{r:?}"),
        other => bail!("expected a full login, got {other:?}"),
    }
    Ok(())
}

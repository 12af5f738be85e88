//! Accepting a connection and the login handshake: Hello in, Welcome or Reject out.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use outpost_schema::{
    negotiate_max_frame_size, ControlMsg, ErrorCode, Hello, Reject, Welcome, HANDSHAKE_MAX_FRAME_SIZE,
    MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use quinn::{Connection, RecvStream, SendStream};
use rand::Rng;
use tracing::{debug, warn};

use outpost_backend::presence::{Claim, ResumeRefused};
use outpost_backend::transfer::{decide_login, LoginAction, LoginContext};

use super::{session, var_code, Shared, FINAL_FRAME_LINGER};
use crate::auth::Principal;
use crate::frame_io::read_frame;
use crate::registry::Slot;

/// Serves one incoming connection from handshake to close.
pub(crate) async fn serve_connection(shared: Arc<Shared>, incoming: quinn::Incoming) {
    // Memory per idle session: the login phase awaits large, short-lived futures
    // (QUIC handshake, store transactions, transfer steps, a lingering Reject).
    // Awaited inline, rustc reserves room for them in this task's state for the
    // whole life of the session: measured 6.5 KB per session, against 1.3 KB for
    // the session loop. Boxed, that memory is freed once Welcome is out.
    let Some(w) = Box::pin(login(shared, incoming)).await else {
        return;
    };
    session::run_session(w).await;
}

/// A connection that was sent `Welcome`, ready for its session loop.
pub(super) struct Welcomed {
    pub shared: Arc<Shared>,
    pub conn: Connection,
    /// The control stream.
    pub send: SendStream,
    pub recv: RecvStream,
    pub principal: Principal,
    /// What the client said about itself in `Hello`.
    pub client: Arc<crate::channels::ClientInfo>,
    /// Negotiated in `Welcome`.
    pub max_frame_size: u32,
    /// The client's `Hello` said it understands `ResumeTokenRefresh`.
    pub accepts_resume_refresh: bool,
    /// The session's place under the capacity limit.
    pub slot: Slot,
    /// The session's presence claim, written before `Welcome`; `None` when
    /// cross-gateway presence is off or the claim could not be written.
    pub claim: Option<Claim>,
}

/// Handshake, Hello, admission and authentication; `None` once the connection
/// was refused or lost.
async fn login(shared: Arc<Shared>, incoming: quinn::Incoming) -> Option<Welcomed> {
    shared.handshaking.fetch_add(1, Ordering::Relaxed);
    let handshake = incoming.await;
    shared.handshaking.fetch_sub(1, Ordering::Relaxed);
    let conn = match handshake {
        Ok(conn) => {
            metrics::counter!("outpost_handshakes_total", "result" => "ok").increment(1);
            conn
        }
        Err(e) => {
            metrics::counter!("outpost_handshakes_total", "result" => "failed").increment(1);
            debug!(error = %e, "handshake failed");
            return None;
        }
    };
    let hello_timeout = shared.config.hello_timeout();
    let first = tokio::time::timeout(hello_timeout, async {
        let (send, mut recv) = conn.accept_bi().await.ok()?;
        let frame = read_frame(&mut recv, HANDSHAKE_MAX_FRAME_SIZE).await;
        Some((send, recv, frame))
    })
    .await;
    let (mut send, recv, frame) = match first {
        Ok(Some(v)) => v,
        Ok(None) => return None, // the client went away before opening the control stream
        Err(_) => {
            conn.close(
                var_code(ErrorCode::HelloTimeout),
                b"no Hello within the hello timeout",
            );
            return None;
        }
    };
    let hello = match frame {
        Ok(Some(frame)) => match ControlMsg::decode(&frame) {
            Ok(ControlMsg::Hello(h)) => h,
            Ok(_) => {
                return reject(
                    &conn,
                    send,
                    ErrorCode::UnexpectedFrame,
                    "the first frame must be Hello",
                    0,
                )
                .await
            }
            Err(e) => return reject(&conn, send, e.code(), &e.to_string(), 0).await,
        },
        Ok(None) => return None,
        Err(e) => return reject(&conn, send, e.code(), &e.to_string(), 0).await,
    };
    if let Err((code, message, retry_after_ms)) = precheck(&shared, &hello) {
        return reject(&conn, send, code, &message, retry_after_ms).await;
    }
    // Admission before any authentication work, so a login storm above capacity
    // costs us one Reject each and nothing more.
    let Some(slot) = shared.registry.try_admit() else {
        let a = &shared.config.admission;
        let retry = a.busy_retry_after_ms + rand::thread_rng().gen_range(0..=a.busy_retry_jitter_ms);
        return reject(&conn, send, ErrorCode::ServerBusy, "gateway at capacity", retry).await;
    };
    let (mut principal, claim) = match authenticate(&shared, &hello).await {
        Ok(v) => v,
        Err((code, message, retry)) => return reject(&conn, send, code, &message, retry).await,
    };
    let tokens = match shared.auth.issue(&mut principal) {
        Ok(t) => t,
        Err(r) => return reject(&conn, send, r.code, &r.message, 1_000).await,
    };
    let max_frame_size = negotiate_max_frame_size(hello.max_frame_size, shared.config.limits.max_frame_size);
    let s = &shared.config.session;
    let welcome = ControlMsg::Welcome(Welcome {
        protocol_version: PROTOCOL_VERSION,
        player_id: principal.player_id.to_string(),
        resume_token: tokens.resume_token,
        resumed: principal.resumed,
        max_frame_size,
        heartbeat_interval_ms: s.heartbeat_interval_ms.try_into().unwrap_or(u32::MAX),
        idle_timeout_ms: s.idle_timeout_ms.try_into().unwrap_or(u32::MAX),
        max_in_flight_per_channel: shared.config.limits.max_in_flight_per_channel,
        region: shared.config.region.clone(),
        session_token: tokens.session_token,
        home_region: principal.home_region.clone(),
    });
    if send.write_all(&welcome.encode()).await.is_err() {
        return None;
    }
    let result = if principal.resumed { "resumed" } else { "welcome" };
    metrics::counter!("outpost_logins_total", "result" => result).increment(1);
    let client = Arc::new(crate::channels::ClientInfo::from_hello(
        &hello.client_version,
        hello.platform,
    ));
    Some(Welcomed {
        shared,
        conn,
        send,
        recv,
        principal,
        client,
        max_frame_size,
        accepts_resume_refresh: hello.accepts_resume_refresh,
        slot,
        claim,
    })
}

/// A login refused: the code, message and `retry_after_ms` of its `Reject`.
type Refused = (ErrorCode, String, u32);

/// Authentication, the foreign-login policy and the presence claim, in that
/// order: the claim is written only for a login that will be welcomed (a claim
/// displaces the player's other session), and before `Welcome`, so that every
/// resume token handed out names a session presence knows.
///
/// A resume is accepted only if presence still holds the session its token
/// names, un-ended (checked in the claim's own transaction: no extra round
/// trip). A revoked resume falls back to the Hello's credentials, as an invalid
/// token does; without credentials it is `ResumeRejected`.
async fn authenticate(shared: &Shared, hello: &Hello) -> Result<(Principal, Option<Claim>), Refused> {
    let refused = |r: crate::auth::Refusal| (r.code, r.message, 0);
    let mut principal = shared.auth.login(hello).await.map_err(refused)?;
    apply_foreign_policy(shared, &mut principal).await?;
    match claim_presence(shared, &principal).await? {
        Ok(claim) => Ok((principal, claim)),
        Err(revoked) => {
            metrics::counter!("outpost_resumes_revoked_total").increment(1);
            if hello.credentials.is_none() {
                return Err((
                    ErrorCode::ResumeRejected,
                    format!("resume token revoked: {revoked}"),
                    0,
                ));
            }
            let mut principal = shared.auth.login_credentials(hello).await.map_err(refused)?;
            apply_foreign_policy(shared, &mut principal).await?;
            let claim = claim_presence(shared, &principal)
                .await?
                .expect("a credentials login is never a resume");
            Ok((principal, claim))
        }
    }
}

/// Writes the session's presence claim (a resume: checks and replaces the
/// claim its token names). The outer `Err` refuses the login; the inner one
/// says the resume token was revoked. A failed plain claim is logged and the
/// login goes on: one session per player then holds on this gateway only.
async fn claim_presence(
    shared: &Shared,
    principal: &Principal,
) -> Result<Result<Option<Claim>, ResumeRefused>, Refused> {
    if !shared.config.session.cross_gateway_presence {
        return Ok(Ok(None));
    }
    let since_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut claim = Claim::new(since_ms, principal.session_id, shared.name.clone());
    let player = &principal.player_id;
    if let Some(token_session) = principal.resume_of {
        return match shared.presence.resume(player, token_session, &mut claim).await {
            Ok(Ok(())) => Ok(Ok(Some(claim))),
            Ok(Err(revoked)) => Ok(Err(revoked)),
            // Fail closed: a resume that cannot be checked is not accepted.
            Err(e) => Err((
                ErrorCode::Unavailable,
                format!("cannot check the resume: {e}"),
                1_000,
            )),
        };
    }
    match shared.presence.claim(player, &claim).await {
        Ok(_) => Ok(Ok(Some(claim))),
        Err(e) => {
            warn!(error = %e, "presence claim failed; one-session-per-player holds on this gateway only");
            Ok(Ok(None))
        }
    }
}

/// Runs the foreign-login policy for a player homed in another region.
async fn apply_foreign_policy(shared: &Shared, principal: &mut Principal) -> Result<(), Refused> {
    if principal.home_region == shared.config.region {
        return Ok(());
    }
    if let Some(new_home) = foreign_login(shared, principal).await? {
        // Moved here: the presented token names the old home.
        principal.home_region = new_home;
        principal.reusable_session_token = None;
    }
    Ok(())
}

/// Applies the foreign-login policy to a player homed in another region.
/// `Ok(None)`: serve as is; `Ok(Some(home))`: the player was moved here.
async fn foreign_login(shared: &Shared, p: &Principal) -> Result<Option<String>, Refused> {
    let unavailable = |e: &dyn std::fmt::Display| (ErrorCode::Unavailable, e.to_string(), 1_000);
    let in_progress = shared
        .transfers
        .in_progress(&p.player_id)
        .await
        .map_err(|e| unavailable(&e))?;
    let ctx = LoginContext {
        gateway_region: &shared.config.region,
        home_region: &p.home_region,
        home_reachable: shared.regions.store(&p.home_region).is_some(),
        transfer_in_progress: in_progress,
    };
    match decide_login(shared.config.foreign_login_policy, ctx) {
        LoginAction::ServeLocally | LoginAction::ServeViaHome { .. } => Ok(None),
        LoginAction::Redirect { home } => Err((
            ErrorCode::WrongRegion,
            format!("home region is {home}; connect to a gateway there"),
            0,
        )),
        LoginAction::RetryLater => Err((
            ErrorCode::Unavailable,
            "player is being moved between regions".into(),
            1_000,
        )),
        LoginAction::TransferHere { .. } => {
            let moved = tokio::time::timeout(
                Duration::from_secs(10),
                shared.transfers.move_player(&p.player_id, &shared.config.region),
            )
            .await
            .map_err(|_| {
                (
                    ErrorCode::Unavailable,
                    "transfer still running; retry".to_owned(),
                    2_000,
                )
            })?
            .map_err(|e| unavailable(&e))?;
            Ok(Some(moved.to))
        }
    }
}

/// Checks that need no IO: protocol version, drain state.
fn precheck(shared: &Shared, hello: &Hello) -> Result<(), Refused> {
    if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&hello.protocol_version) {
        return Err((
            ErrorCode::UnsupportedProtocolVersion,
            format!(
                "protocol version {} not supported; this gateway serves {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}",
                hello.protocol_version
            ),
            0,
        ));
    }
    if let Some(plan) = *shared.drain.borrow() {
        let window = plan.window.as_millis().min(u128::from(u32::MAX)) as u32;
        let retry = rand::thread_rng().gen_range(0..=window);
        return Err((
            ErrorCode::Draining,
            "gateway draining; connect to another gateway".into(),
            retry,
        ));
    }
    Ok(())
}

/// Sends `Reject`, waits briefly for it to be delivered, and closes. Returns
/// `None`, so that a refusing login path reads `return reject(..).await`.
async fn reject<T>(
    conn: &Connection,
    mut send: SendStream,
    code: ErrorCode,
    message: &str,
    retry_after_ms: u32,
) -> Option<T> {
    metrics::counter!("outpost_logins_total", "result" => "reject", "code" => format!("{code:?}"))
        .increment(1);
    let frame = ControlMsg::Reject(Reject {
        reason: code,
        message: message.to_owned(),
        retry_after_ms,
    })
    .encode();
    if send.write_all(&frame).await.is_ok() && send.finish().is_ok() {
        let _ = tokio::time::timeout(FINAL_FRAME_LINGER, send.stopped()).await;
    }
    conn.close(var_code(code), message.as_bytes());
    None
}

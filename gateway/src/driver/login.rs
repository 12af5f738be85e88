//! Accepting a connection and the login handshake: Hello in, Welcome or Reject
//! out. A pump for the [`Login`] state machine: it performs the steps the
//! machine asks for (reads, the authenticator, stores, writes) and feeds their
//! results back; every decision (order of checks, codes, `retry_after_ms`) is
//! the machine's.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use outpost_schema::{ControlMsg, Reject, HANDSHAKE_MAX_FRAME_SIZE};
use quinn::{Connection, RecvStream, SendStream};
use tracing::{debug, warn};

use outpost_backend::presence::Claim;
use outpost_backend::store::Watch;

use super::queue::{Held, Waiting};
use super::{session, var_code, SessionDeps, FINAL_FRAME_LINGER};
use crate::auth::Principal;
use crate::frame_io::read_frame;
use crate::registry::Slot;
use crate::session::{rules, ForeignFacts, FrameError, Login, LoginRefusal, LoginStep, PresenceOutcome};

/// Serves one incoming connection from handshake to close.
pub(crate) fn serve_connection(
    shared: Arc<SessionDeps>,
    incoming: quinn::Incoming,
) -> impl Future<Output = ()> + Send + 'static {
    // Memory per idle session: the login phase awaits large, short-lived futures
    // (QUIC handshake, store transactions, transfer steps, a lingering Reject).
    // Awaited inline, rustc reserves room for them in this task's state for the
    // whole life of the session. Boxed, that memory is freed once Welcome is out.
    // Boxed here, outside the `async` block: the block's state then holds the
    // box, not this function's arguments (an async fn keeps room for its
    // arguments for its whole life, `incoming` is 384 bytes) nor the unboxed
    // login future (a temporary of the `await` statement would keep its room).
    let login = Box::pin(login(shared, incoming));
    async move {
        let Some(w) = login.await else {
            return;
        };
        // Boxed: an async fn keeps room for its arguments for its whole life.
        session::run_session(Box::new(w)).await;
    }
}

/// A connection that was sent `Welcome`, ready for its session loop.
pub(super) struct Welcomed {
    pub shared: Arc<SessionDeps>,
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
    /// The session's presence claim, written before `Welcome`, with the store
    /// watch registered in the claim's own transaction (the session's
    /// displacement watch starts from it; `None` if a newer login already
    /// held the presence); `None` when cross-gateway presence is off or the
    /// claim could not be written.
    pub claim: Option<(Claim, Option<Watch>)>,
    /// The session's slot in the region's login queue (released when the
    /// session ends); `None` when the queue is off.
    pub queue_slot: Option<u64>,
}

/// What the login holds on the IO side while the machine runs.
struct LoginIo {
    shared: Arc<SessionDeps>,
    conn: Connection,
    control: Option<(SendStream, RecvStream)>,
    slot: Option<Slot>,
    claim: Option<(Claim, Option<Watch>)>,
    /// What the login holds in the region queue.
    held: Held,
    /// The player the queue entry belongs to.
    player: Option<Arc<str>>,
}

/// One QUIC handshake in progress, counted in [`SessionDeps::handshaking`]
/// from [`Handshaking::enter`] until dropped.
struct Handshaking<'a>(&'a AtomicUsize);

impl<'a> Handshaking<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Handshaking(count)
    }
}

impl Drop for Handshaking<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Handshake, then the login machine's steps; `None` once the connection was
/// refused or lost.
async fn login(shared: Arc<SessionDeps>, incoming: quinn::Incoming) -> Option<Welcomed> {
    let handshake = {
        // Counted while the handshake runs, and uncounted however it ends
        // (including this future being dropped mid-handshake): a count that
        // leaked upwards would leave `quic_retry = "auto"` retrying every
        // client for the life of the process.
        let _counted = Handshaking::enter(&shared.handshaking);
        incoming.await
    };
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
    let mut login = Login::new(shared.login.clone(), Instant::now(), rules::uniform);
    let mut io = LoginIo {
        shared,
        conn,
        control: None,
        slot: None,
        claim: None,
        held: Held::Nothing,
        player: None,
    };
    let first = within(&mut login, first_frame(&io.conn)).await;
    match first {
        Some(Some((send, recv, frame))) => {
            io.control = Some((send, recv));
            let drain = io.shared.drain.borrow().map(|plan| plan.window);
            login.handle_first_frame(frame, drain);
        }
        // The client went away before opening the control stream or sending a frame.
        Some(None) => login.handle_lost(),
        None => {} // the machine timed out
    }
    while let Some(step) = login.poll_action() {
        match step {
            LoginStep::SendWelcome(welcome) => return welcome_out(io, login, welcome).await,
            LoginStep::Reject(refusal) => {
                release_held(&mut io).await;
                return reject(io, refusal).await;
            }
            LoginStep::Close { code, message } => {
                release_held(&mut io).await;
                io.conn.close(var_code(code), message.as_bytes());
                return None;
            }
            step => perform(&mut io, &mut login, step).await,
        }
    }
    release_held(&mut io).await;
    None
}

/// A login that ends without `Welcome` gives back what it holds in the queue:
/// a slot is freed; a place is detached (kept for the grace: the client may
/// come back with its token).
async fn release_held(io: &mut LoginIo) {
    let Some(rq) = io.shared.queue.as_ref() else {
        return;
    };
    match std::mem::replace(&mut io.held, Held::Nothing) {
        Held::Nothing => {}
        Held::Slot(slot) => {
            if let Some(player) = io.player.as_deref() {
                rq.end_session(player, slot, true).await;
            }
        }
        Held::Place(w) => {
            rq.detach(&w.place).await;
        }
    }
}

/// Accepts the control stream and reads its first frame: `None` when the
/// client went away first.
async fn first_frame(conn: &Connection) -> Option<(SendStream, RecvStream, Result<ControlMsg, FrameError>)> {
    let (send, mut recv) = conn.accept_bi().await.ok()?;
    let frame = match read_frame(&mut recv, HANDSHAKE_MAX_FRAME_SIZE).await {
        Ok(Some(frame)) => ControlMsg::decode(&frame).map_err(|e| frame_error(e.code(), &e)),
        Ok(None) => return None,
        Err(e) => Err(frame_error(e.code(), &e)),
    };
    Some((send, recv, frame))
}

fn frame_error(code: outpost_schema::ErrorCode, e: &dyn std::fmt::Display) -> FrameError {
    FrameError {
        code,
        message: e.to_string(),
    }
}

/// Runs `fut` until the machine's next deadline; `None` when that came first
/// (the machine was told, and `fut` dropped).
async fn within<F: Future>(login: &mut Login, fut: F) -> Option<F::Output> {
    let Some(deadline) = login.poll_timeout() else {
        return Some(fut.await);
    };
    match tokio::time::timeout_at(deadline.into(), fut).await {
        Ok(v) => Some(v),
        Err(_) => {
            // The timer fired at the deadline; the clock read may lag it by a hair.
            login.handle_timeout(Instant::now().max(deadline));
            None
        }
    }
}

/// Performs one backend step and feeds its result to the machine.
async fn perform(io: &mut LoginIo, login: &mut Login, step: LoginStep) {
    let shared = &io.shared;
    match step {
        LoginStep::Admit => {
            io.slot = shared.registry.try_admit();
            login.handle_admission(io.slot.is_some());
        }
        LoginStep::Resume => {
            let hello = login.hello().expect("Hello received");
            let token = hello.resume_token.as_deref().unwrap_or_default();
            let result = shared.auth.login_resume(token).await;
            login.handle_resume(result);
        }
        LoginStep::Authenticate => {
            let hello = login.hello().expect("Hello received");
            let result = shared.auth.login_credentials(hello).await;
            login.handle_auth(result);
        }
        LoginStep::CheckForeign { player, home } => {
            let facts = shared.transfers.in_progress(&player).await;
            let facts = facts
                .map(|transfer_in_progress| ForeignFacts {
                    transfer_in_progress,
                    home_reachable: shared.regions.store(&home).is_some(),
                })
                .map_err(|e| e.to_string());
            login.handle_foreign(Instant::now(), facts);
        }
        LoginStep::Transfer { player } => {
            let moving = shared.transfers.move_player(&player, &shared.config.region);
            if let Some(moved) = within(login, moving).await {
                login.handle_transfer(moved.map(|m| m.to).map_err(|e| e.to_string()));
            }
        }
        LoginStep::ClaimPresence {
            player,
            session_id,
            resume_of,
        } => {
            let (outcome, claim) = claim_presence(shared, &player, session_id, resume_of).await;
            if let PresenceOutcome::ResumeRevoked(_) = outcome {
                metrics::counter!("outpost_resumes_revoked_total").increment(1);
            }
            io.claim = claim;
            login.handle_presence(outcome);
        }
        LoginStep::EnterQueue { player, mode, token } => {
            let Some(rq) = shared.queue.as_ref() else {
                return login.handle_queue(crate::session::QueueDecision::Admitted);
            };
            let keys = shared.auth.queue_keys();
            let remote = io.conn.remote_address().ip();
            let (decision, held) = rq.enter(keys, &player, (mode, token.as_deref()), remote).await;
            io.player = Some(player);
            io.held = held;
            login.handle_queue(decision);
        }
        LoginStep::SendQueued(queued) => send_queued_and_wait(io, login, queued).await,
        LoginStep::IssueTokens => {
            let principal = login.principal_mut().expect("authenticated");
            let tokens = shared.auth.issue(principal);
            login.handle_tokens(tokens);
        }
        LoginStep::SendWelcome(_) | LoginStep::Reject(_) | LoginStep::Close { .. } => {
            unreachable!("final steps are the caller's")
        }
    }
}

/// Sends a `Queued`, waits one update interval (answering `Ping`s) and feeds
/// the machine what became of the place.
async fn send_queued_and_wait(io: &mut LoginIo, login: &mut Login, queued: outpost_schema::Queued) {
    let (Some(rq), Some((send, recv))) = (io.shared.queue.as_ref(), io.control.as_mut()) else {
        return login.handle_lost();
    };
    let Held::Place(w) = &mut io.held else {
        return login.handle_lost();
    };
    let Waiting {
        place, last_heard, ..
    } = &mut **w;
    if send
        .write_all(&ControlMsg::Queued(queued).encode())
        .await
        .is_err()
    {
        rq.detach(place).await;
        io.held = Held::Nothing;
        return login.handle_lost();
    }
    match rq.wait(place, last_heard, send, recv).await {
        Some(update) => {
            if update == crate::session::QueueUpdate::Admitted {
                w.record_admitted();
                io.held = Held::Slot(w.place.place);
            }
            login.handle_queue_update(update);
        }
        None => {
            io.held = Held::Nothing; // detached by `wait`
            login.handle_lost();
        }
    }
}

/// Writes the session's presence claim; for a resume, checks and replaces the
/// claim of the session its token names, in the claim's own transaction (no
/// extra round trip). The same transaction registers the watch the session's
/// displacement check starts from.
async fn claim_presence(
    shared: &SessionDeps,
    player: &str,
    session_id: u64,
    resume_of: Option<u64>,
) -> (PresenceOutcome, Option<(Claim, Option<Watch>)>) {
    let since_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut claim = Claim::new(since_ms, session_id, shared.name.clone());
    if let Some(token_session) = resume_of {
        return match shared
            .presence
            .resume_watched(player, token_session, &mut claim)
            .await
        {
            Ok(Ok(watch)) => (PresenceOutcome::Claimed, Some((claim, Some(watch)))),
            Ok(Err(revoked)) => (PresenceOutcome::ResumeRevoked(revoked), None),
            Err(e) => (PresenceOutcome::ResumeUnchecked(e.to_string()), None),
        };
    }
    match shared.presence.claim_watched(player, &claim).await {
        Ok(Some(watch)) => (PresenceOutcome::Claimed, Some((claim, Some(watch)))),
        // A newer login already holds the presence: no watch, so the session's
        // displacement check reads the newer claim at once and kicks.
        Ok(None) => (PresenceOutcome::Claimed, Some((claim, None))),
        Err(e) => {
            warn!(error = %e, "presence claim failed; one-session-per-player holds on this gateway only");
            (PresenceOutcome::ClaimFailed, None)
        }
    }
}

/// Sends `Welcome` and hands the connection to its session loop.
async fn welcome_out(io: LoginIo, login: Login, welcome: outpost_schema::Welcome) -> Option<Welcomed> {
    let LoginIo {
        shared,
        conn,
        control,
        slot,
        claim,
        held,
        ..
    } = io;
    let queue_slot = match held {
        Held::Slot(slot) => Some(slot),
        _ => None,
    };
    let (mut send, recv) = control?;
    let logged_in = login.into_logged_in()?;
    if send
        .write_all(&ControlMsg::Welcome(welcome).encode())
        .await
        .is_err()
    {
        return None;
    }
    let principal = logged_in.principal;
    let result = if principal.resumed { "resumed" } else { "welcome" };
    metrics::counter!("outpost_logins_total", "result" => result).increment(1);
    let hello = logged_in.hello;
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
        max_frame_size: logged_in.max_frame_size,
        accepts_resume_refresh: hello.accepts_resume_refresh,
        slot: slot?,
        claim,
        queue_slot,
    })
}

/// Sends `Reject`, waits briefly for it to be delivered, and closes. Returns
/// `None`, so that a refusing login path reads `return reject(..).await`.
async fn reject<T>(io: LoginIo, refusal: LoginRefusal) -> Option<T> {
    let LoginRefusal {
        code,
        message,
        retry_after_ms,
    } = refusal;
    metrics::counter!("outpost_logins_total", "result" => "reject", "code" => format!("{code:?}"))
        .increment(1);
    let frame = ControlMsg::Reject(Reject {
        reason: code,
        message: message.clone(),
        retry_after_ms,
    })
    .encode();
    let mut control = io.control;
    if let Some((send, _)) = control.as_mut() {
        if send.write_all(&frame).await.is_ok() && send.finish().is_ok() {
            let _ = tokio::time::timeout(FINAL_FRAME_LINGER, send.stopped()).await;
        }
    }
    io.conn.close(var_code(code), message.as_bytes());
    drop(control);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handshake_dropped_midway_is_uncounted() {
        let count = AtomicUsize::new(0);
        let mut handshake = Box::pin(async {
            let _counted = Handshaking::enter(&count);
            std::future::pending::<()>().await
        });
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(handshake.as_mut().poll(&mut cx).is_pending());
        assert_eq!(count.load(Ordering::Relaxed), 1, "counted while it runs");
        drop(handshake);
        assert_eq!(count.load(Ordering::Relaxed), 0, "uncounted once dropped");
    }
}

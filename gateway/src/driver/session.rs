//! The session loop: runs one welcomed session until it closes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use outpost_backend::presence::{Claim, SessionEnd};
use outpost_backend::store::Watch;
use outpost_schema::{ControlMsg, ErrorCode, Kick};
use quinn::RecvStream;
use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::{channel, var_code, SessionCore, SessionDeps, FINAL_FRAME_LINGER};
use crate::auth::Principal;
use crate::frame_io::{read_frame, FrameReadError};
use crate::metrics::catalogue::RATE_LIMIT_KICKS;
use crate::registry::SessionCommand;
use crate::session::{rules, Action, Session, CONTROL_WRITE_TIMEOUT};

/// How a session ended.
enum End {
    /// The machine (or the gateway) closed it with a code; `kicked` if a Kick
    /// frame went out first and deserves a moment to be delivered.
    Close {
        code: ErrorCode,
        message: String,
        kicked: bool,
    },
    /// The connection is already gone (client left, network lost).
    Lost,
}

/// How long a closing session waits for its channel writers to reset their
/// streams. They only need to be scheduled once: a few ms even when busy.
const WRITERS_STOP_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// How long ending a presence claim (a logout) may hold up the session's
/// close. The claim is relaxed soft state (no fsync), so this is
/// only reached when the global store is in trouble; the close goes ahead
/// then and the token stays valid until it expires, which the log says.
const END_CLAIM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

pub(super) async fn run_session(w: Box<super::login::Welcomed>) {
    let super::login::Welcomed {
        shared,
        conn,
        send: control_send,
        recv: control_recv,
        principal,
        client,
        max_frame_size,
        accepts_resume_refresh,
        slot,
        claim,
        queue_slot,
    } = *w;
    let core = Arc::new(SessionCore::new(new_machine(&shared, accepts_resume_refresh)));
    let mut s = Running {
        home_region: principal.home_region.as_str().into(),
        shared,
        core,
        conn,
        control_send,
        principal,
        client,
        max_frame_size,
        writers: None,
        tasks: None,
    };
    let (player, session_id) = (s.principal.player_id.clone(), s.principal.session_id);
    s.shared.registry.register(&player, session_id, s.core.clone());
    metrics::gauge!("outpost_sessions_live").increment(1.0);

    // The control stream and the presence watch are polled by the session
    // loop itself (no task of their own: memory and a wake-up per frame).
    // They are dropped only after the connection is closed: dropped before
    // it, a slow consumer's CONNECTION_CLOSE did not arrive within 10 s
    // (tests/kicks.rs; why was not investigated).
    let control = control_reader(s.core.clone(), control_recv, s.max_frame_size);
    tokio::pin!(control);
    // The watch compares claims by login time and session id only: the
    // claim's copy of the gateway's name (a heap string) is not kept.
    let claim = claim.map(|(claim, watch)| {
        let claim = Claim {
            gateway: String::new(),
            ..claim
        };
        (claim, watch)
    });
    let presence = watch_presence(s.shared.clone(), player.clone(), claim);
    tokio::pin!(presence);
    let (end, superseded) = s.serve(control, presence).await;

    // The session is over: its presence watch is no longer polled, so the
    // writes below (a logout's end of the claim) wake nothing that reads the
    // key again for a Kick nobody takes any more.
    let logout = !superseded && is_logout(&end, &s.conn);
    release_claims(&s.shared, &s.principal, logout, queue_slot).await;
    close_connection(&mut s.writers, &mut s.control_send, &s.conn, end).await;
    s.shared.registry.unregister(&player, &*s.core);
    s.shared.tickets.session_ended(player, session_id);
    // A lost connection leaves the presence claim in place (the session stays
    // resumable): claims are ordered by login time, so a stale one never
    // displaces a newer login, and not releasing saves a store write per
    // session (measured: about 5 points of login rate).
    metrics::gauge!("outpost_sessions_live").decrement(1.0);
    if let Some(mut tasks) = s.tasks.take() {
        tasks.shutdown().await;
    }
    drop(slot);
}

/// A welcomed session while its loop runs: what the loop feeds the machine
/// from and writes its actions to, and what every channel task gets a copy of.
struct Running {
    shared: Arc<SessionDeps>,
    core: Arc<SessionCore>,
    conn: quinn::Connection,
    /// The control stream's sending side (the loop reads the other side).
    control_send: quinn::SendStream,
    principal: Principal,
    /// The session's home region, for its channels.
    home_region: Arc<str>,
    client: Arc<crate::channels::ClientInfo>,
    max_frame_size: u32,
    /// What the channel writers share with the session; made with the first
    /// channel: an idle session (control stream only) does not pay for
    /// channels it never uses.
    writers: Option<Writers>,
    /// Channel tasks; made with the first channel (an empty `JoinSet`
    /// allocates its lists: 80 bytes an idle session need not hold).
    tasks: Option<JoinSet<()>>,
}

impl Running {
    /// Runs the session until it ends: feeds the machine the control stream
    /// (`control` reads it), its deadlines, presence (`presence` watches it),
    /// kicks, drain and shutdown, carries out its actions and opens channels. True with the end if the same session went
    /// on over a newer connection (not a logout: its claim must stay).
    async fn serve(
        &mut self,
        mut control: Pin<&mut impl Future<Output = ()>>,
        mut presence: Pin<&mut impl Future<Output = Option<Kick>>>,
    ) -> (End, bool) {
        let mut control_done = false;
        let mut presence_done = false;
        let mut drain = self.shared.drain.clone();
        let mut shutdown = self.shared.shutdown.subscribe();
        let mut kicked = false;
        let mut check_drain = true;
        let core = self.core.clone();
        // One timer for the session's whole life, moved only when the
        // machine's next deadline moves (a Ping moves the idle deadline): a
        // turn of the loop that leaves the deadline where it was touches no
        // timer, where a `Sleep` made per turn was registered in and removed
        // from tokio's timer wheel every turn. `armed`: whether it is set to
        // the deadline it holds (not before the first turn, after it fired, or
        // once the machine has no deadline); a flag, not a copy of the
        // deadline, as the loop's state is memory per idle session.
        let timer = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(timer);
        let mut armed = false;

        loop {
            if let Some(end) = take_command(&core) {
                return (end, true);
            }
            // Drain and shutdown wake the loop through the registry
            // (`relay_gateway_signals`), which wakes every live session.
            if !matches!(shutdown.try_recv(), Err(TryRecvError::Empty)) {
                let end = End::Close {
                    code: ErrorCode::ShuttingDown,
                    message: "gateway shutting down".into(),
                    kicked: false,
                };
                return (end, false);
            }
            check_drain |= drain.has_changed().unwrap_or(false);
            if check_drain {
                check_drain = false;
                if let Some(plan) = *drain.borrow_and_update() {
                    let delay = rules::drain_reconnect_delay(plan.window, rules::uniform);
                    core.with_machine(|m| m.begin_drain(delay, plan.deadline));
                }
            }
            if core.with_machine(|m| m.has_action()) {
                // Boxed, and only when there is something to do: writing a
                // control frame within its timeout is the largest state of
                // this loop (768 bytes), and inline every idle session's task
                // would keep room for it while it waits in the select.
                let performed = perform_actions(
                    &self.shared,
                    &core,
                    &self.principal,
                    &mut self.control_send,
                    &mut kicked,
                );
                if let Some(end) = Box::pin(performed).await {
                    return (end, false);
                }
            }
            let deadline = core.with_machine(|m| m.poll_timeout());
            if deadline != armed.then(|| timer.deadline().into_std()) {
                if let Some(d) = deadline {
                    timer.as_mut().reset(d.into());
                }
                armed = deadline.is_some();
            }
            tokio::select! {
                _ = core.inbox.notified() => {}
                () = timer.as_mut(), if armed => {
                    // Fired: set again next turn, whatever the deadline then.
                    armed = false;
                    core.with_machine(|m| m.handle_timeout(Instant::now()));
                }
                done = control_turn(control.as_mut(), &core), if !control_done => control_done = done,
                kick = presence.as_mut(), if !presence_done => {
                    presence_done = true;
                    if let Some(Kick { reason, message }) = kick {
                        core.with_machine(|m| m.kick(reason, &message));
                    }
                }
                stream = self.conn.accept_bi() => match stream {
                    Ok((send, recv)) => self.open_channel(send, recv),
                    Err(e) => {
                        debug!(error = %e, "connection ended");
                        return (End::Lost, false);
                    }
                },
            }
        }
    }

    /// Starts the task of a channel the client opened.
    fn open_channel(&mut self, send: quinn::SendStream, recv: RecvStream) {
        let writers = self.writers.get_or_insert_with(Writers::new);
        let ctx = channel::ChannelTask {
            shared: self.shared.clone(),
            core: self.core.clone(),
            player_id: self.principal.player_id.clone(),
            home_region: self.home_region.clone(),
            region: self.shared.region.clone(),
            client: self.client.clone(),
            session_id: self.principal.session_id,
            max_frame_size: self.max_frame_size,
            writer_done: writers.done_tx.clone(),
            // Subscribed here, by the session loop, not in the channel's task:
            // a close (which only this loop starts) never finds a channel that
            // has yet to subscribe.
            closing: writers.closing.subscribe(),
        };
        self.tasks
            .get_or_insert_with(JoinSet::new)
            .spawn(ctx.run(send, recv));
    }
}

/// The session's side of its channel writers' [`WriterStop`](channel::WriterStop)s.
struct Writers {
    /// Every channel writer holds a clone of `done_tx`; `done_rx` sees the
    /// channel close once they all stopped (mini-redis' shutdown_complete).
    done_tx: mpsc::Sender<()>,
    done_rx: mpsc::Receiver<()>,
    /// The close code once the session closes with one: channel writers then
    /// reset their streams before the connection is closed (`channel.rs`).
    closing: watch::Sender<Option<quinn::VarInt>>,
}

impl Writers {
    fn new() -> Self {
        let (done_tx, done_rx) = mpsc::channel(1);
        Writers {
            done_tx,
            done_rx,
            closing: watch::Sender::new(None),
        }
    }
}

/// Takes a command from the rest of the gateway (the registry), which woke
/// the loop through the same `Notify` as everything else: a Kick goes to the
/// machine; `Some` when the same session went on over a newer connection.
fn take_command(core: &SessionCore) -> Option<End> {
    match core.inbox.try_recv()? {
        SessionCommand::Kick { reason, message } => {
            core.with_machine(|m| m.kick(reason, &message));
            None
        }
        SessionCommand::Superseded => Some(End::Close {
            code: ErrorCode::Unspecified,
            message: "session resumed on another connection".into(),
            kicked: false,
        }),
    }
}

/// A new session's machine, with resume-token refresh if the client takes it.
fn new_machine(shared: &SessionDeps, accepts_resume_refresh: bool) -> Session {
    let now = Instant::now();
    let mut machine = Session::new(shared.limits.clone(), now);
    if accepts_resume_refresh {
        machine.enable_resume_refresh(
            resume_refresh_interval(shared.config.session.resume_window_secs),
            now,
        );
    }
    machine
}

/// Carries out what the machine asks for until it asks for nothing more:
/// control frames go out (each within `CONTROL_WRITE_TIMEOUT`), resume
/// tokens are minted. `Some` when the session ends; `kicked` records whether
/// a Kick went out.
async fn perform_actions(
    shared: &SessionDeps,
    core: &SessionCore,
    principal: &Principal,
    control_send: &mut quinn::SendStream,
    kicked: &mut bool,
) -> Option<End> {
    while let Some(action) = core.poll_action() {
        let msg = match action {
            Action::SendControl(msg) => {
                *kicked |= matches!(msg, ControlMsg::Kick(_));
                msg
            }
            Action::RefreshResumeToken => match refreshed_resume_token(shared, principal) {
                Some(msg) => msg,
                None => continue,
            },
            Action::Close { code, message } => {
                // The machine emits one Close: each kick is counted once.
                if let Some(cause) = core.with_machine(|m| m.rate_limit_cause()) {
                    metrics::counter!(RATE_LIMIT_KICKS, "cause" => cause.as_str()).increment(1);
                }
                return Some(End::Close {
                    code,
                    message,
                    kicked: *kicked,
                });
            }
        };
        let frame = msg.encode();
        match tokio::time::timeout(CONTROL_WRITE_TIMEOUT, control_send.write_all(&frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Some(End::Lost),
            Err(_) => {
                // Whatever was being written (a Kick too) was not delivered.
                *kicked = false;
                core.with_machine(|m| m.handle_control_write_timeout());
            }
        }
    }
    None
}

/// What an ended session holds outside this gateway: a logout ends its
/// presence claim; its slot in the region's login queue is released.
async fn release_claims(shared: &SessionDeps, principal: &Principal, logout: bool, queue_slot: Option<u64>) {
    if logout {
        // Boxed: a store transaction within a timeout (800 bytes) that every
        // session's task would otherwise keep room for, for its whole life.
        Box::pin(end_claim(shared, principal)).await;
    }
    if let (Some(rq), Some(slot)) = (shared.queue.clone(), queue_slot) {
        // A superseded session's slot already moved to the newer login (the
        // release is then a no-op); a logout frees it, a loss reserves it
        // for the re-entry grace.
        let player = principal.player_id.clone();
        tokio::spawn(async move { rq.end_session(&player, slot, logout).await });
    }
}

/// Closes the connection with the session's code, if it is not gone already.
async fn close_connection(
    writers: &mut Option<Writers>,
    control_send: &mut quinn::SendStream,
    conn: &quinn::Connection,
    end: End,
) {
    if let End::Close {
        code,
        message,
        kicked,
    } = end
    {
        // Channel writers reset their streams first (see `write_frames`), so
        // nothing queued for the client holds up the Kick or the close.
        // Without channels there is no writer to tell.
        if let Some(Writers {
            done_tx,
            mut done_rx,
            closing,
        }) = writers.take()
        {
            closing.send_replace(Some(var_code(code)));
            drop(done_tx);
            let _ = tokio::time::timeout(WRITERS_STOP_WAIT, done_rx.recv()).await;
        }
        if kicked && control_send.finish().is_ok() {
            let _ = tokio::time::timeout(FINAL_FRAME_LINGER, control_send.stopped()).await;
        }
        metrics::counter!("outpost_session_closes_total", "code" => format!("{code:?}")).increment(1);
        conn.close(var_code(code), message.as_bytes());
    } else {
        metrics::counter!("outpost_session_closes_total", "code" => "ConnectionLost").increment(1);
    }
}

/// The Kick for when the session stops being the player's live one: a newer
/// login (on any gateway sharing the global store) holds the presence, or an
/// operator ended it from any gateway. The claim itself was written before
/// `Welcome`, usually with the watch registered in the same transaction.
/// Never completes without a claim (presence off) or while the session stays
/// the live one.
pub(super) async fn watch_presence(
    shared: Arc<SessionDeps>,
    player: Arc<str>,
    mut claim: Option<(Claim, Option<Watch>)>,
) -> Option<Kick> {
    // Memory per idle session: this future waits the whole session, so its
    // size counts. The claim and its watch are used where they are (an async
    // fn keeps room for its arguments; moved out, they would take room twice)
    // and the read after the watch fires, a store transaction, is boxed.
    let Some((claim, watch)) = &mut claim else {
        return std::future::pending().await;
    };
    // Registered by the claim's transaction: nothing to read until the key changes.
    if let Some(watch) = watch {
        if let Err(e) = watch.await {
            warn!(error = %e, "presence watch failed");
            return None;
        }
    }
    match Box::pin(shared.presence.displaced(&player, claim)).await {
        Ok(displacement) => rules::presence_kick(&displacement),
        Err(e) => {
            warn!(error = %e, "presence watch failed");
            None
        }
    }
}

/// A logout: marks the session's presence claim ended, revoking its resume
/// tokens on every gateway, if cross-gateway presence is on and the session
/// still holds the claim. (Operator kicks end the claim before the Kick goes
/// out, in `GatewayHandle::kick`; a `ReplacedByNewLogin` session's claim was
/// replaced by the newer one; other kicks revoke nothing, see
/// `outpost_backend::presence`.)
async fn end_claim(shared: &SessionDeps, principal: &Principal) {
    let end = SessionEnd::LoggedOut;
    if !shared.config.session.cross_gateway_presence {
        return;
    }
    let ending = shared
        .presence
        .end(&principal.player_id, principal.session_id, end);
    match tokio::time::timeout(END_CLAIM_TIMEOUT, ending).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            warn!(error = %e, "logout: cannot end the presence claim; its resume tokens stay valid until they expire")
        }
        Err(_) => warn!(
            "logout: ending the presence claim timed out; its resume tokens stay valid until they expire"
        ),
    }
}

/// Whether the client logged out (PROTOCOL.md §6): it finished its control
/// stream (the machine closes with `Unspecified`), or closed the connection
/// with application code 0.
fn is_logout(end: &End, conn: &quinn::Connection) -> bool {
    match end {
        End::Close { code, kicked, .. } => *code == ErrorCode::Unspecified && !kicked,
        End::Lost => matches!(
            conn.close_reason(),
            Some(quinn::ConnectionError::ApplicationClosed(c)) if c.error_code.into_inner() == 0
        ),
    }
}

/// Mints a fresh resume token for the session's player, as the frame to send.
/// `None` when that fails (no usable key): the client keeps its older token,
/// and the next interval tries again.
fn refreshed_resume_token(shared: &SessionDeps, principal: &Principal) -> Option<ControlMsg> {
    match shared.auth.issue_resume(principal) {
        Ok(resume_token) => {
            metrics::counter!("outpost_resume_refreshes_total", "result" => "ok").increment(1);
            Some(ControlMsg::ResumeTokenRefresh { resume_token })
        }
        Err(r) => {
            warn!(code = ?r.code, message = %r.message, "cannot refresh a resume token");
            metrics::counter!("outpost_resume_refreshes_total", "result" => "failed").increment(1);
            None
        }
    }
}

/// How often a live session gets a fresh resume token: half the resume window
/// (PROTOCOL.md 3.4), so the token a client holds always has at least half a
/// window of validity left (less the up-to-1 s rounding of the token's `exp` to
/// whole seconds). Cost: one HMAC-SHA256 (well under 1 us) and one small frame
/// per session per interval; at the default 120 s window, 1M sessions make
/// 16,667 refreshes/s.
fn resume_refresh_interval(resume_window_secs: u64) -> std::time::Duration {
    std::time::Duration::from_millis(resume_window_secs.saturating_mul(500))
}

/// One turn of the control stream's reader (`control`) in the session loop's
/// `select!`: ready with `true` once the reader ended, with `false` as soon as
/// the frames it read left the machine something to do (a Pong to send, a
/// Kick, a close), so the loop carries that out in the same poll of its task.
/// The reader used to wake the loop through the inbox's `Notify` after every
/// frame instead: the task woke itself and was polled a second time (every
/// branch of the `select!` again) for each heartbeat. Other wakers of the loop
/// (channel tasks, the registry) still go through the inbox.
fn control_turn<'a, F: Future<Output = ()>>(
    mut control: Pin<&'a mut F>,
    core: &'a SessionCore,
) -> impl Future<Output = bool> + 'a {
    std::future::poll_fn(move |cx| match control.as_mut().poll(cx) {
        Poll::Ready(()) => Poll::Ready(true),
        Poll::Pending if core.with_machine(|m| m.has_action()) => Poll::Ready(false),
        Poll::Pending => Poll::Pending,
    })
}

/// Reads the control stream and feeds the machine until the stream ends. It
/// never wakes the session loop itself: the loop polls it through
/// [`control_turn`], which sees what the frames left the machine to do.
///
/// Each frame takes a unit of tokio's cooperative budget, as a read from one
/// of tokio's own sockets would (quinn's reads take none). Once the task's
/// budget (128 units a turn) is spent, this future and the session loop's
/// `select!` return `Pending`: a client that keeps its control stream readable
/// no longer holds its worker thread for as long as it sends (see
/// [`READ_BURST`](super::READ_BURST)), and the loop gets to what the frames
/// asked for (Pongs; over the control rate, the Kick and the close) within a
/// turn or two instead of after the last buffered frame.
async fn control_reader(core: Arc<SessionCore>, mut recv: RecvStream, max_frame_size: u32) {
    loop {
        // Before the read: the session loop keeps this future (and so any
        // half-read frame) across its turns, but none is in progress here.
        tokio::task::coop::consume_budget().await;
        match read_frame(&mut recv, max_frame_size).await {
            Ok(Some(frame)) => match ControlMsg::decode(&frame) {
                Ok(msg) => core.with_machine(|m| m.handle_control(Instant::now(), msg)),
                Err(e) => return reject_control(&core, e.code(), &e.to_string()),
            },
            Ok(None) => return core.with_machine(|m| m.handle_control_finished()),
            Err(FrameReadError::Stream(_)) => return, // the connection is going away
            Err(e) => return reject_control(&core, e.code(), &e.to_string()),
        }
    }
}

/// A control frame that cannot be read or decoded: counted, and the machine
/// closes the session with its code.
fn reject_control(core: &SessionCore, code: ErrorCode, message: &str) {
    metrics::counter!("outpost_frames_rejected_total", "code" => format!("{code:?}")).increment(1);
    core.with_machine(|m| m.handle_control_error(code, message));
}

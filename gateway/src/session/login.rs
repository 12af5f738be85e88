//! The login state machine: every rule of the login sequence (PROTOCOL.md
//! §3.1, §3.4), with no IO.
//!
//! One [`Login`] per connection, from the end of the QUIC handshake to
//! `Welcome` or a refusal. Like [`Session`](super::Session), it is a
//! deterministic machine in the style of `quinn-proto`: inputs arrive through
//! `handle_*` calls (decoded frames, the results of the backend calls it asked
//! for, and `now`), what it wants done comes out of [`Login::poll_action`] as
//! [`LoginStep`]s, and when it must next be woken comes out of
//! [`Login::poll_timeout`]. Nothing here reads a clock, a socket, a store or a
//! random number generator: the uniform draws for `retry_after_ms` jitter come
//! from an injected [`Draw`].
//!
//! The sequence, and where each refusal comes from:
//!
//! 1. The first control frame, within the hello timeout (else `Close
//!    { HelloTimeout }`, no frame). A frame error is rejected with its own code
//!    (`BadFrame`, `FrameTooLarge`); a valid frame that is not `Hello` with
//!    `UnexpectedFrame`.
//! 2. Checks without IO: protocol version (`UnsupportedProtocolVersion`), then
//!    drain (`Draining`, `retry_after_ms` uniform within the drain window).
//! 3. Admission under the capacity limit ([`LoginStep::Admit`]), before any
//!    authentication work so a login storm above capacity costs one `Reject`
//!    each: `ServerBusy`, `retry_after_ms` = base + uniform jitter.
//! 4. Authentication: by the resume token if the Hello has one
//!    ([`LoginStep::Resume`]), else by its credentials
//!    ([`LoginStep::Authenticate`]), else `MissingCredentials`. A resume token
//!    that does not verify falls back to the credentials, or is
//!    `ResumeRejected` without them. Other refusals of the authenticator pass
//!    through with their code and no `retry_after_ms`.
//! 5. The foreign-login policy for a player homed elsewhere
//!    ([`LoginStep::CheckForeign`], then possibly [`LoginStep::Transfer`],
//!    bounded by `transfer_timeout`): `WrongRegion`, or `Unavailable`.
//! 6. The region's login queue ([`LoginStep::EnterQueue`], when
//!    `LoginConfig::queue` is on; see [`queue`](self::queue)): admitted, or
//!    `Queued` updates until admitted (`Welcome` then follows), or
//!    `ServerBusy` for a client that did not announce queue support, or a
//!    queue-token code (`QueueTokenInvalid`, `QueueTokenExpired`,
//!    `QueuePlaceGone`).
//! 7. The presence claim ([`LoginStep::ClaimPresence`]), written only for a
//!    login that will be welcomed and before `Welcome`. A revoked resume is
//!    treated like an invalid token: back to step 4 with the credentials, or
//!    `ResumeRejected` without them; a resume that cannot be checked is
//!    `Unavailable` (fail closed); a plain claim that cannot be written is
//!    ignored (one session per player then holds on this gateway only).
//! 8. Tokens ([`LoginStep::IssueTokens`]), then [`LoginStep::SendWelcome`].
//!
//! The driver (`crate::driver::login`) performs each step and feeds the result
//! back; it decides nothing. It keeps the IO-side objects (the capacity slot,
//! the presence claim, the streams) itself: the machine only needs to know
//! whether the step succeeded. After `SendWelcome`, `Reject` or `Close` the
//! machine emits nothing more.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_backend::presence::ResumeRefused;
use outpost_backend::queue::EnterMode;
use outpost_backend::transfer::{decide_login, ForeignLoginPolicy, LoginAction, LoginContext};
use outpost_schema::{
    negotiate_max_frame_size, ControlMsg, ErrorCode, Hello, Queued, Welcome, MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
};

use super::rules::Draw;

#[path = "login_queue.rs"]
pub mod queue;
use crate::auth::{IssuedTokens, Principal, Refusal, ResumeError};
pub use queue::{QueueDecision, QueueUpdate};

/// `retry_after_ms` of a refusal caused by a backend dependency.
const UNAVAILABLE_RETRY_MS: u32 = 1_000;
/// `retry_after_ms` when a transfer outlived `transfer_timeout`.
const TRANSFER_RETRY_MS: u32 = 2_000;

/// A refused login: what its `Reject` carries. The connection is then closed
/// with `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRefusal {
    pub code: ErrorCode,
    pub message: String,
    /// 0: no delay required.
    pub retry_after_ms: u32,
}

impl LoginRefusal {
    pub fn new(code: ErrorCode, message: impl Into<String>, retry_after_ms: u32) -> Self {
        LoginRefusal {
            code,
            message: message.into(),
            retry_after_ms,
        }
    }
}

impl From<Refusal> for LoginRefusal {
    /// An authenticator's refusal, with no delay.
    fn from(r: Refusal) -> Self {
        LoginRefusal::new(r.code, r.message, 0)
    }
}

/// The first control frame could not be read: its code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub code: ErrorCode,
    pub message: String,
}

/// The gateway settings the login rules read.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    /// This gateway's region.
    pub region: String,
    /// How long after the handshake the first frame may take.
    pub hello_timeout: Duration,
    /// The gateway's proposal for the frame size negotiation.
    pub max_frame_size: u32,
    pub heartbeat_interval_ms: u32,
    pub idle_timeout_ms: u32,
    pub max_in_flight_per_channel: u32,
    /// `ServerBusy`: `retry_after_ms` is this plus a uniform jitter in
    /// `0..=busy_retry_jitter_ms`.
    pub busy_retry_after_ms: u32,
    pub busy_retry_jitter_ms: u32,
    /// Whether logins claim the player's presence (and resumes are checked).
    pub cross_gateway_presence: bool,
    pub foreign_login_policy: ForeignLoginPolicy,
    /// How long a login waits for a transfer of its player to this region.
    pub transfer_timeout: Duration,
    /// Whether logins go through the region's login queue (PROTOCOL.md 3.7).
    pub queue: bool,
}

/// What the driver must find out for the foreign-login policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForeignFacts {
    /// The player has an unfinished transfer.
    pub transfer_in_progress: bool,
    /// This gateway has a store handle for the player's home region.
    pub home_reachable: bool,
}

/// The outcome of [`LoginStep::ClaimPresence`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceOutcome {
    /// The claim was written (for a resume: the token's session was still the
    /// player's live one, and the claim replaced it).
    Claimed,
    /// A plain claim could not be written; the login goes on without one.
    ClaimFailed,
    /// The resume token's session was replaced or ended.
    ResumeRevoked(ResumeRefused),
    /// The resume could not be checked (the store failed): the message.
    ResumeUnchecked(String),
}

/// Something the driver must do for the login.
#[derive(Debug, Clone, PartialEq)]
pub enum LoginStep {
    /// Reserve a place under the capacity limit; answer
    /// [`Login::handle_admission`].
    Admit,
    /// Authenticate by the resume token of [`Login::hello`]; answer
    /// [`Login::handle_resume`].
    Resume,
    /// Authenticate by the credentials of [`Login::hello`], ignoring any
    /// resume token; answer [`Login::handle_auth`].
    Authenticate,
    /// The player is homed in `home`, another region: find out the
    /// [`ForeignFacts`]; answer [`Login::handle_foreign`].
    CheckForeign { player: Arc<str>, home: String },
    /// Move the player's home to this region; answer
    /// [`Login::handle_transfer`] or, at [`Login::poll_timeout`],
    /// [`Login::handle_timeout`] (dropping the transfer).
    Transfer { player: Arc<str> },
    /// Write the session's presence claim (for a resume, check and replace the
    /// claim of session `resume_of`); answer [`Login::handle_presence`].
    ClaimPresence {
        player: Arc<str>,
        session_id: u64,
        resume_of: Option<u64>,
    },
    /// Enter the region's login queue; answer [`Login::handle_queue`].
    EnterQueue {
        player: Arc<str>,
        mode: EnterMode,
        /// The `Hello.queue_token`, if any.
        token: Option<String>,
    },
    /// Send this `Queued`, then wait for the place: answer
    /// [`Login::handle_queue_update`] at each update interval.
    SendQueued(Queued),
    /// Issue the tokens for [`Login::principal_mut`]; answer
    /// [`Login::handle_tokens`].
    IssueTokens,
    /// Send this `Welcome`: the login succeeded ([`Login::into_logged_in`]).
    SendWelcome(Welcome),
    /// Send `Reject`, then close the connection with its code.
    Reject(LoginRefusal),
    /// Close the connection with this code, sending nothing.
    Close { code: ErrorCode, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitHello {
        deadline: Instant,
    },
    Admitting,
    Resuming,
    Authenticating,
    CheckingForeign,
    Transferring {
        deadline: Instant,
    },
    EnteringQueue,
    Queued,
    Claiming,
    Issuing,
    Welcomed,
    /// Refused, closed or lost.
    Ended,
}

/// A welcomed login, handed to the session.
#[derive(Debug)]
pub struct LoggedIn {
    pub principal: Principal,
    pub hello: Hello,
    /// Negotiated in `Welcome`.
    pub max_frame_size: u32,
}

/// One connection's login, as a deterministic state machine.
#[derive(Debug)]
pub struct Login {
    config: Arc<LoginConfig>,
    draw: Draw,
    phase: Phase,
    hello: Option<Hello>,
    principal: Option<Principal>,
    /// The resume token was invalid or revoked: the login goes on with the
    /// credentials.
    resume_failed: bool,
    /// Set by `Welcome`.
    max_frame_size: u32,
    /// The lowest position sent in a `Queued` (positions never go up).
    queue_position: Option<u32>,
    actions: VecDeque<LoginStep>,
}

impl Login {
    /// A login whose QUIC handshake completed at `now`; `draw` supplies the
    /// jitter of `retry_after_ms`.
    pub fn new(config: Arc<LoginConfig>, now: Instant, draw: Draw) -> Self {
        let deadline = now + config.hello_timeout;
        Login {
            config,
            draw,
            phase: Phase::AwaitHello { deadline },
            hello: None,
            principal: None,
            resume_failed: false,
            max_frame_size: 0,
            queue_position: None,
            actions: VecDeque::new(),
        }
    }

    /// The client's `Hello`, once received.
    pub fn hello(&self) -> Option<&Hello> {
        self.hello.as_ref()
    }

    /// The authenticated player, once known (the tokens are issued for it).
    pub fn principal_mut(&mut self) -> Option<&mut Principal> {
        self.principal.as_mut()
    }

    /// True once the login is over: welcomed, refused, closed or lost.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Welcomed | Phase::Ended)
    }

    /// The first control frame arrived (decoded, or the error reading it).
    /// `drain_window` is `Some` when the gateway is draining.
    pub fn handle_first_frame(
        &mut self,
        frame: Result<ControlMsg, FrameError>,
        drain_window: Option<Duration>,
    ) {
        if !matches!(self.phase, Phase::AwaitHello { .. }) {
            return;
        }
        let hello = match frame {
            Ok(ControlMsg::Hello(hello)) => hello,
            Ok(_) => return self.refuse(ErrorCode::UnexpectedFrame, "the first frame must be Hello", 0),
            Err(e) => return self.refuse(e.code, e.message, 0),
        };
        let version = hello.protocol_version;
        self.hello = Some(hello);
        if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
            let message = format!(
                "protocol version {version} not supported; this gateway serves {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}"
            );
            return self.refuse(ErrorCode::UnsupportedProtocolVersion, message, 0);
        }
        if let Some(window) = drain_window {
            let window = window.as_millis().min(u128::from(u32::MAX)) as u32;
            let retry = self.draw_up_to(window);
            return self.refuse(
                ErrorCode::Draining,
                "gateway draining; connect to another gateway",
                retry,
            );
        }
        self.phase = Phase::Admitting;
        self.actions.push_back(LoginStep::Admit);
    }

    /// The connection went away before the login ended: nothing more to do.
    pub fn handle_lost(&mut self) {
        if !self.is_done() {
            self.phase = Phase::Ended;
        }
    }

    /// The answer to [`LoginStep::Admit`].
    pub fn handle_admission(&mut self, granted: bool) {
        if self.phase != Phase::Admitting {
            return;
        }
        if !granted {
            return self.refuse_busy("gateway at capacity");
        }
        self.authenticate();
    }

    /// The answer to [`LoginStep::Resume`].
    pub fn handle_resume(&mut self, result: Result<Principal, ResumeError>) {
        if self.phase != Phase::Resuming {
            return;
        }
        match result {
            Ok(principal) => self.authenticated(principal),
            Err(ResumeError::InvalidToken(r)) => self.fall_back(r.message),
            Err(ResumeError::Refused(r)) => self.reject(r.into()),
        }
    }

    /// The answer to [`LoginStep::Authenticate`].
    pub fn handle_auth(&mut self, result: Result<Principal, Refusal>) {
        if self.phase != Phase::Authenticating {
            return;
        }
        match result {
            Ok(principal) => self.authenticated(principal),
            Err(r) => self.reject(r.into()),
        }
    }

    /// The answer to [`LoginStep::CheckForeign`]: the facts, or why they
    /// could not be found out.
    pub fn handle_foreign(&mut self, now: Instant, facts: Result<ForeignFacts, String>) {
        if self.phase != Phase::CheckingForeign {
            return;
        }
        let facts = match facts {
            Ok(f) => f,
            Err(e) => return self.refuse(ErrorCode::Unavailable, e, UNAVAILABLE_RETRY_MS),
        };
        let p = self.principal.as_ref().expect("authenticated");
        let ctx = LoginContext {
            gateway_region: &self.config.region,
            home_region: &p.home_region,
            home_reachable: facts.home_reachable,
            transfer_in_progress: facts.transfer_in_progress,
        };
        match decide_login(self.config.foreign_login_policy, ctx) {
            LoginAction::ServeLocally | LoginAction::ServeViaHome { .. } => self.enter_queue(),
            LoginAction::Redirect { home } => self.refuse(
                ErrorCode::WrongRegion,
                format!("home region is {home}; connect to a gateway there"),
                0,
            ),
            LoginAction::RetryLater => self.refuse(
                ErrorCode::Unavailable,
                "player is being moved between regions",
                UNAVAILABLE_RETRY_MS,
            ),
            LoginAction::TransferHere { .. } => {
                let player = p.player_id.clone();
                self.phase = Phase::Transferring {
                    deadline: now + self.config.transfer_timeout,
                };
                self.actions.push_back(LoginStep::Transfer { player });
            }
        }
    }

    /// The answer to [`LoginStep::Transfer`]: the player's new home region,
    /// or why the transfer failed.
    pub fn handle_transfer(&mut self, result: Result<String, String>) {
        if !matches!(self.phase, Phase::Transferring { .. }) {
            return;
        }
        match result {
            Ok(new_home) => {
                let p = self.principal.as_mut().expect("authenticated");
                // Moved here: the presented token names the old home.
                p.home_region = new_home;
                p.reusable_session_token = None;
                self.enter_queue();
            }
            Err(e) => self.refuse(ErrorCode::Unavailable, e, UNAVAILABLE_RETRY_MS),
        }
    }

    /// The answer to [`LoginStep::ClaimPresence`].
    pub fn handle_presence(&mut self, outcome: PresenceOutcome) {
        if self.phase != Phase::Claiming {
            return;
        }
        match outcome {
            PresenceOutcome::Claimed | PresenceOutcome::ClaimFailed => self.issue_tokens(),
            PresenceOutcome::ResumeRevoked(revoked) => {
                if self.resume_failed {
                    // A credentials login claims without a resume: never here.
                    return self.refuse(ErrorCode::Internal, "presence refused a fresh claim", 0);
                }
                self.principal = None;
                self.fall_back(format!("resume token revoked: {revoked}"));
            }
            PresenceOutcome::ResumeUnchecked(e) => self.refuse(
                ErrorCode::Unavailable,
                format!("cannot check the resume: {e}"),
                UNAVAILABLE_RETRY_MS,
            ),
        }
    }

    /// The answer to [`LoginStep::IssueTokens`].
    pub fn handle_tokens(&mut self, result: Result<IssuedTokens, Refusal>) {
        if self.phase != Phase::Issuing {
            return;
        }
        let tokens = match result {
            Ok(t) => t,
            Err(r) => return self.refuse(r.code, r.message, UNAVAILABLE_RETRY_MS),
        };
        let (c, hello) = (&self.config, self.hello.as_ref().expect("Hello received"));
        let p = self.principal.as_ref().expect("authenticated");
        self.max_frame_size = negotiate_max_frame_size(hello.max_frame_size, c.max_frame_size);
        let welcome = Welcome {
            protocol_version: PROTOCOL_VERSION,
            player_id: p.player_id.to_string(),
            resume_token: tokens.resume_token,
            resumed: p.resumed,
            max_frame_size: self.max_frame_size,
            heartbeat_interval_ms: c.heartbeat_interval_ms,
            idle_timeout_ms: c.idle_timeout_ms,
            max_in_flight_per_channel: c.max_in_flight_per_channel,
            region: c.region.clone(),
            session_token: tokens.session_token,
            home_region: p.home_region.clone(),
        };
        self.phase = Phase::Welcomed;
        self.actions.push_back(LoginStep::SendWelcome(welcome));
    }

    /// The time passed; act on whatever deadline has come (no `Hello`, a
    /// transfer running too long).
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::AwaitHello { deadline } if now >= deadline => {
                self.phase = Phase::Ended;
                self.actions.push_back(LoginStep::Close {
                    code: ErrorCode::HelloTimeout,
                    message: "no Hello within the hello timeout".into(),
                });
            }
            Phase::Transferring { deadline } if now >= deadline => self.refuse(
                ErrorCode::Unavailable,
                "transfer still running; retry",
                TRANSFER_RETRY_MS,
            ),
            _ => {}
        }
    }

    /// When the driver must call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::AwaitHello { deadline } | Phase::Transferring { deadline } => Some(deadline),
            _ => None,
        }
    }

    /// The next step for the driver, if any.
    pub fn poll_action(&mut self) -> Option<LoginStep> {
        self.actions.pop_front()
    }

    /// The welcomed login, once [`LoginStep::SendWelcome`] was emitted.
    pub fn into_logged_in(self) -> Option<LoggedIn> {
        if self.phase != Phase::Welcomed {
            return None;
        }
        Some(LoggedIn {
            principal: self.principal?,
            hello: self.hello?,
            max_frame_size: self.max_frame_size,
        })
    }

    /// Authenticates by the resume token, unless it failed already, else by
    /// the credentials.
    fn authenticate(&mut self) {
        let hello = self.hello.as_ref().expect("Hello received");
        let (phase, step) = if hello.resume_token.is_some() && !self.resume_failed {
            (Phase::Resuming, LoginStep::Resume)
        } else if hello.credentials.is_some() {
            (Phase::Authenticating, LoginStep::Authenticate)
        } else {
            return self.refuse(ErrorCode::MissingCredentials, "Hello carries no credentials", 0);
        };
        self.phase = phase;
        self.actions.push_back(step);
    }

    /// The resume token is invalid or revoked (`why`): fall back to the
    /// credentials, or refuse without them.
    fn fall_back(&mut self, why: String) {
        self.resume_failed = true;
        if self.hello.as_ref().is_some_and(|h| h.credentials.is_none()) {
            return self.refuse(ErrorCode::ResumeRejected, why, 0);
        }
        self.authenticate();
    }

    /// Authentication succeeded: on to the foreign-login policy for a player
    /// homed elsewhere, else to the presence claim.
    fn authenticated(&mut self, principal: Principal) {
        let foreign = principal.home_region != self.config.region;
        let (player, home) = (principal.player_id.clone(), principal.home_region.clone());
        self.principal = Some(principal);
        if foreign {
            self.phase = Phase::CheckingForeign;
            self.actions.push_back(LoginStep::CheckForeign { player, home });
        } else {
            self.enter_queue();
        }
    }

    fn claim_presence(&mut self) {
        if !self.config.cross_gateway_presence {
            return self.issue_tokens();
        }
        let p = self.principal.as_ref().expect("authenticated");
        self.phase = Phase::Claiming;
        self.actions.push_back(LoginStep::ClaimPresence {
            player: p.player_id.clone(),
            session_id: p.session_id,
            resume_of: p.resume_of,
        });
    }

    fn issue_tokens(&mut self) {
        self.phase = Phase::Issuing;
        self.actions.push_back(LoginStep::IssueTokens);
    }

    /// `ServerBusy` with `retry_after_ms` = base + uniform jitter.
    fn refuse_busy(&mut self, why: &str) {
        let c = &self.config;
        let (base, jitter) = (c.busy_retry_after_ms, c.busy_retry_jitter_ms);
        let retry = base.saturating_add(self.draw_up_to(jitter));
        self.refuse(ErrorCode::ServerBusy, why, retry);
    }

    /// A uniform draw in `0..=max`.
    fn draw_up_to(&mut self, max: u32) -> u32 {
        let drawn = (self.draw)(u64::from(max)).min(u64::from(max));
        u32::try_from(drawn).unwrap_or(max)
    }

    fn refuse(&mut self, code: ErrorCode, message: impl Into<String>, retry_after_ms: u32) {
        self.reject(LoginRefusal::new(code, message, retry_after_ms));
    }

    fn reject(&mut self, refusal: LoginRefusal) {
        self.phase = Phase::Ended;
        self.actions.push_back(LoginStep::Reject(refusal));
    }
}

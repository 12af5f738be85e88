//! An in-memory client/gateway pair for the [`Login`] machine, in the style of
//! `quinn-proto`'s `tests/util.rs` `Pair`: the client's first frame travels as
//! bytes, the gateway side parses it as the driver does (size check on the
//! length prefix, then decode), the machine's steps are answered by a scripted
//! [`Backend`], and what the gateway sends back is encoded and decoded again
//! for the client. Time is a fake clock the test advances; no sockets, no
//! tokio.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_backend::transfer::ForeignLoginPolicy;
use outpost_schema::{
    ControlMsg, Credentials, ErrorCode, FrameHeader, Hello, Reject, Welcome, HANDSHAKE_MAX_FRAME_SIZE,
    LENGTH_PREFIX_BYTES, PROTOCOL_VERSION,
};

use super::login::{
    ForeignFacts, FrameError, Login, LoginConfig, LoginStep, PresenceOutcome, QueueDecision, QueueUpdate,
};
use super::rules::Draw;
use crate::auth::{IssuedTokens, Principal, Refusal, ResumeError};

/// The gateway's region in these tests.
pub const REGION: &str = "us";

pub fn config() -> LoginConfig {
    LoginConfig {
        region: REGION.into(),
        hello_timeout: Duration::from_secs(5),
        max_frame_size: 131_072,
        heartbeat_interval_ms: 10_000,
        idle_timeout_ms: 30_000,
        max_in_flight_per_channel: 32,
        busy_retry_after_ms: 2_000,
        busy_retry_jitter_ms: 3_000,
        cross_gateway_presence: true,
        foreign_login_policy: ForeignLoginPolicy::Redirect,
        transfer_timeout: Duration::from_secs(10),
        queue: false,
    }
}

/// A `Hello` with device credentials.
pub fn hello() -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        client_version: "test/1".into(),
        credentials: Some(Credentials::Device {
            device_id: "device-1".into(),
            secret: "0123456789abcdef".into(),
        }),
        ..Hello::default()
    }
}

/// A `Hello` with a resume token, with or without credentials.
pub fn resume_hello(with_credentials: bool) -> Hello {
    Hello {
        resume_token: Some("r1.token".into()),
        credentials: with_credentials.then_some(Credentials::Token("v1.token".into())),
        ..hello()
    }
}

/// What authentication says about a player homed in `home`.
pub fn principal(home: &str) -> Principal {
    Principal {
        player_id: "p-1".into(),
        home_region: home.into(),
        resumed: false,
        resume_of: None,
        session_id: 42,
        reusable_session_token: Some("v1.token".into()),
    }
}

/// A resumed principal whose token names session `of`.
pub fn resumed(of: u64) -> Principal {
    Principal {
        resumed: true,
        resume_of: Some(of),
        ..principal(REGION)
    }
}

pub fn refusal(code: ErrorCode, message: &str) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// The scripted backend: how the gateway's side answers each step.
#[derive(Debug)]
pub struct Backend {
    pub draining: Option<Duration>,
    pub capacity: bool,
    /// Answers to `Resume`, in order.
    pub resume: VecDeque<Result<Principal, ResumeError>>,
    /// Answers to `Authenticate`, in order.
    pub auth: VecDeque<Result<Principal, Refusal>>,
    pub foreign: Result<ForeignFacts, String>,
    /// `None`: the transfer never finishes.
    pub transfer: Option<Result<String, String>>,
    /// Answers to `ClaimPresence`, in order.
    pub presence: VecDeque<PresenceOutcome>,
    pub tokens: Result<IssuedTokens, Refusal>,
    /// Answers to `EnterQueue`, in order (only asked when the queue is on).
    pub queue: VecDeque<QueueDecision>,
}

impl Default for Backend {
    fn default() -> Self {
        Backend {
            draining: None,
            capacity: true,
            resume: VecDeque::new(),
            auth: VecDeque::from([Ok(principal(REGION))]),
            foreign: Ok(ForeignFacts {
                transfer_in_progress: false,
                home_reachable: true,
            }),
            transfer: Some(Ok(REGION.into())),
            presence: VecDeque::from([PresenceOutcome::Claimed]),
            tokens: Ok(IssuedTokens {
                session_token: "v1.session".into(),
                resume_token: "r1.resume".into(),
            }),
            queue: VecDeque::from([QueueDecision::Admitted]),
        }
    }
}

/// What the client saw of its login.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Still waiting.
    Pending,
    Welcome(Welcome),
    /// `Reject`, then the connection closed with `closed`.
    Reject {
        reject: Reject,
        closed: ErrorCode,
    },
    /// The connection closed with this code and no frame.
    Closed(ErrorCode),
}

/// A client and a gateway's login, connected in memory.
pub struct Pair {
    pub now: Instant,
    pub login: Login,
    pub backend: Backend,
    /// Every step the gateway performed, in order (final ones included).
    pub steps: Vec<LoginStep>,
    /// Frames the gateway sent to the client (`Queued` ones are in `queued`).
    to_client: Vec<Vec<u8>>,
    /// `Queued` frames the gateway sent, decoded.
    pub queued: Vec<outpost_schema::Queued>,
    closed: Option<ErrorCode>,
}

impl Pair {
    pub fn new(config: LoginConfig, backend: Backend, draw: Draw) -> Self {
        let now = Instant::now();
        Pair {
            now,
            login: Login::new(Arc::new(config), now, draw),
            backend,
            steps: Vec::new(),
            to_client: Vec::new(),
            queued: Vec::new(),
            closed: None,
        }
    }

    /// The client sends `Hello` as its first frame.
    pub fn send_hello(&mut self, hello: Hello) {
        self.send_bytes(&ControlMsg::Hello(hello).encode());
    }

    /// The client's first frame, as bytes on the control stream.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let frame = read_first_frame(bytes);
        self.login.handle_first_frame(frame, self.backend.draining);
        self.drive();
    }

    /// The fake clock moves on by `d`; the gateway wakes if a deadline passed.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        if self.login.poll_timeout().is_some_and(|t| t <= self.now) {
            self.login.handle_timeout(self.now);
        }
        self.drive();
    }

    /// What the client has seen so far.
    pub fn outcome(&self) -> Outcome {
        let frame = self
            .to_client
            .first()
            .map(|f| ControlMsg::decode(f).expect("gateway frame"));
        match (frame, self.closed) {
            (Some(ControlMsg::Welcome(w)), None) => Outcome::Welcome(w),
            (Some(ControlMsg::Reject(reject)), Some(closed)) => Outcome::Reject { reject, closed },
            (None, Some(code)) => Outcome::Closed(code),
            (None, None) => Outcome::Pending,
            other => panic!("unexpected wire state {other:?}"),
        }
    }

    /// The `Reject` the client got; panics on any other outcome. Checks that
    /// the connection was closed with the same code.
    pub fn rejected(&self) -> Reject {
        match self.outcome() {
            Outcome::Reject { reject, closed } => {
                assert_eq!(reject.reason, closed, "close code is the Reject's reason");
                reject
            }
            other => panic!("expected a Reject, got {other:?}"),
        }
    }

    /// The `Welcome` the client got; panics on any other outcome.
    pub fn welcomed(&self) -> Welcome {
        match self.outcome() {
            Outcome::Welcome(w) => w,
            other => panic!("expected a Welcome, got {other:?}"),
        }
    }

    /// The driver's finding about the waiting place, at an update interval.
    pub fn queue_update(&mut self, update: QueueUpdate) {
        self.login.handle_queue_update(update);
        self.drive();
    }

    /// How many times the gateway performed a step matching `f`.
    pub fn count(&self, f: impl Fn(&LoginStep) -> bool) -> usize {
        self.steps.iter().filter(|s| f(s)).count()
    }

    /// Performs the machine's steps against the scripted backend, as the
    /// driver does against the real one.
    fn drive(&mut self) {
        while let Some(step) = self.login.poll_action() {
            self.steps.push(step.clone());
            let b = &mut self.backend;
            match step {
                LoginStep::Admit => self.login.handle_admission(b.capacity),
                LoginStep::Resume => {
                    let result = b.resume.pop_front().expect("scripted resume result");
                    self.login.handle_resume(result);
                }
                LoginStep::Authenticate => {
                    let result = b.auth.pop_front().expect("scripted auth result");
                    self.login.handle_auth(result);
                }
                LoginStep::CheckForeign { .. } => self.login.handle_foreign(self.now, b.foreign.clone()),
                LoginStep::Transfer { .. } => {
                    if let Some(result) = b.transfer.clone() {
                        self.login.handle_transfer(result);
                    }
                }
                LoginStep::ClaimPresence { .. } => {
                    let outcome = b.presence.pop_front().expect("scripted presence outcome");
                    self.login.handle_presence(outcome);
                }
                LoginStep::IssueTokens => {
                    assert!(self.login.principal_mut().is_some(), "tokens for a principal");
                    self.login.handle_tokens(b.tokens.clone());
                }
                LoginStep::EnterQueue { .. } => {
                    let decision = b.queue.pop_front().expect("scripted queue decision");
                    self.login.handle_queue(decision);
                }
                LoginStep::SendQueued(q) => {
                    match ControlMsg::decode(&ControlMsg::Queued(q).encode()).expect("Queued frame") {
                        ControlMsg::Queued(q) => self.queued.push(q),
                        other => panic!("{other:?}"),
                    }
                }
                LoginStep::SendWelcome(w) => self.to_client.push(ControlMsg::Welcome(w).encode()),
                LoginStep::Reject(r) => {
                    let reject = Reject {
                        reason: r.code,
                        message: r.message,
                        retry_after_ms: r.retry_after_ms,
                    };
                    self.to_client.push(ControlMsg::Reject(reject).encode());
                    self.closed = Some(r.code);
                }
                LoginStep::Close { code, .. } => self.closed = Some(code),
            }
        }
    }
}

/// Reads the first control frame from `bytes` as the driver does from the
/// stream: the length prefix is checked against the handshake maximum before
/// the body is looked at.
fn read_first_frame(bytes: &[u8]) -> Result<ControlMsg, FrameError> {
    let err = |e: &dyn std::fmt::Display, code| FrameError {
        code,
        message: e.to_string(),
    };
    let prefix: [u8; LENGTH_PREFIX_BYTES] = bytes[..LENGTH_PREFIX_BYTES].try_into().expect("a prefix");
    let header = FrameHeader::parse(prefix, HANDSHAKE_MAX_FRAME_SIZE).map_err(|e| err(&e, e.code()))?;
    let end = LENGTH_PREFIX_BYTES + header.len as usize;
    let frame = bytes
        .get(..end)
        .ok_or_else(|| err(&"stream ended inside a frame", ErrorCode::BadFrame))?;
    ControlMsg::decode(frame).map_err(|e| err(&e, e.code()))
}

//! The login machine's queue step on the in-memory [`Pair`] (PROTOCOL.md 3.7):
//! where it sits in the sequence, what each queue answer turns into, and
//! that positions sent never go up.

use std::collections::VecDeque;

use outpost_backend::queue::EnterMode;
use outpost_schema::{ErrorCode, Hello, Queued};

use super::login::{LoginConfig, LoginStep, PresenceOutcome, QueueDecision, QueueUpdate};
use super::login_pair::*;
use super::rules::Draw;

const NO_DRAW: Draw = |_| panic!("nothing to draw");

fn queue_config() -> LoginConfig {
    LoginConfig {
        queue: true,
        ..config()
    }
}

fn queued(position: u32) -> Queued {
    Queued {
        position,
        eta_ms: 1_000 * (position + 1),
        queue_token: format!("q1.place.{position}"),
        queue_length: 100,
        paused: false,
    }
}

fn queue_hello() -> Hello {
    Hello {
        accepts_queue: true,
        queue_token: Some("q1.token".into()),
        ..hello()
    }
}

fn login(hello: Hello, decisions: Vec<QueueDecision>, draw: Draw) -> Pair {
    let backend = Backend {
        queue: VecDeque::from(decisions),
        ..Backend::default()
    };
    let mut pair = Pair::new(queue_config(), backend, draw);
    pair.send_hello(hello);
    pair
}

fn entered(pair: &Pair) -> Option<(EnterMode, Option<String>)> {
    pair.steps.iter().find_map(|s| match s {
        LoginStep::EnterQueue { mode, token, .. } => Some((*mode, token.clone())),
        _ => None,
    })
}

#[test]
fn the_queue_comes_after_authentication_and_before_the_presence_claim() {
    let pair = login(queue_hello(), vec![QueueDecision::Admitted], NO_DRAW);
    pair.welcomed();
    let at = |f: fn(&LoginStep) -> bool| pair.steps.iter().position(f).expect("step");
    let auth = at(|s| *s == LoginStep::Authenticate);
    let queue = at(|s| matches!(s, LoginStep::EnterQueue { .. }));
    let claim = at(|s| matches!(s, LoginStep::ClaimPresence { .. }));
    assert!(auth < queue && queue < claim, "{:?}", pair.steps);
    assert_eq!(entered(&pair), Some((EnterMode::Queue, Some("q1.token".into()))));
}

#[test]
fn with_the_queue_off_no_queue_step_is_taken() {
    let mut pair = Pair::new(config(), Backend::default(), NO_DRAW);
    pair.send_hello(queue_hello());
    pair.welcomed();
    assert_eq!(entered(&pair), None);
}

#[test]
fn a_queued_login_gets_updates_then_welcome_and_positions_never_go_up() {
    let mut pair = login(queue_hello(), vec![QueueDecision::Queued(queued(5))], NO_DRAW);
    assert_eq!(pair.outcome(), Outcome::Pending);
    assert!(pair.login.is_queued());
    pair.queue_update(QueueUpdate::Waiting(queued(3)));
    // A view from a lagging gateway: the position sent does not go back up.
    pair.queue_update(QueueUpdate::Waiting(queued(4)));
    pair.queue_update(QueueUpdate::Waiting(queued(0)));
    let positions: Vec<u32> = pair.queued.iter().map(|q| q.position).collect();
    assert_eq!(positions, vec![5, 3, 3, 0]);
    assert_eq!(
        pair.queued[2].queue_token, "q1.place.4",
        "the newest token is sent"
    );
    assert_eq!(pair.count(|s| matches!(s, LoginStep::ClaimPresence { .. })), 0);
    pair.queue_update(QueueUpdate::Admitted);
    pair.welcomed();
    assert_eq!(pair.count(|s| matches!(s, LoginStep::ClaimPresence { .. })), 1);
}

#[test]
fn a_client_without_queue_support_is_busy_as_before() {
    let mut h = hello();
    h.queue_token = Some("ignored".into());
    let pair = login(h, vec![QueueDecision::Busy], |max| max / 2);
    assert_eq!(entered(&pair), Some((EnterMode::NoQueue, None)));
    let r = pair.rejected();
    assert_eq!(r.reason, ErrorCode::ServerBusy);
    assert_eq!(
        r.retry_after_ms,
        2_000 + 1_500,
        "base + jitter, like a full gateway"
    );
}

#[test]
fn a_resume_enters_in_resume_mode() {
    let backend = Backend {
        resume: VecDeque::from([Ok(resumed(7))]),
        queue: VecDeque::from([QueueDecision::Admitted]),
        ..Backend::default()
    };
    let mut pair = Pair::new(queue_config(), backend, NO_DRAW);
    pair.send_hello(Hello {
        accepts_queue: true,
        ..resume_hello(false)
    });
    assert!(pair.welcomed().resumed);
    assert_eq!(entered(&pair).map(|e| e.0), Some(EnterMode::Resume));
}

#[test]
fn refused_tokens_lost_places_and_store_failures_are_rejected_with_their_codes() {
    let pair = login(
        queue_hello(),
        vec![QueueDecision::TokenRefused(
            ErrorCode::QueueTokenExpired,
            "expired".into(),
        )],
        NO_DRAW,
    );
    assert_eq!(pair.rejected().reason, ErrorCode::QueueTokenExpired);
    assert_eq!(pair.rejected().retry_after_ms, 0);

    let mut pair = login(queue_hello(), vec![QueueDecision::Queued(queued(1))], NO_DRAW);
    pair.queue_update(QueueUpdate::Gone);
    assert_eq!(pair.rejected().reason, ErrorCode::QueuePlaceGone);

    let pair = login(
        queue_hello(),
        vec![QueueDecision::Failed("store down".into())],
        NO_DRAW,
    );
    let r = pair.rejected();
    assert_eq!((r.reason, r.retry_after_ms), (ErrorCode::Unavailable, 1_000));
}

#[test]
fn a_revoked_resume_goes_through_the_queue_again_with_credentials() {
    let backend = Backend {
        resume: VecDeque::from([Ok(resumed(7))]),
        presence: VecDeque::from([
            PresenceOutcome::ResumeRevoked(outpost_backend::presence::ResumeRefused::Replaced),
            PresenceOutcome::Claimed,
        ]),
        queue: VecDeque::from([QueueDecision::Admitted, QueueDecision::Queued(queued(2))]),
        ..Backend::default()
    };
    let mut pair = Pair::new(queue_config(), backend, NO_DRAW);
    pair.send_hello(Hello {
        accepts_queue: true,
        ..resume_hello(true)
    });
    assert_eq!(pair.queued.len(), 1, "the fallback login queues");
    pair.queue_update(QueueUpdate::Admitted);
    assert!(!pair.welcomed().resumed);
}

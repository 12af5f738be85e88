//! The login rules on the in-memory [`Pair`]: every login outcome and code of
//! PROTOCOL.md §3.1, §3.4 and §5, on a fake clock, with no sockets.

use std::collections::VecDeque;
use std::time::Duration;

use outpost_backend::presence::{ResumeRefused, SessionEnd};
use outpost_backend::transfer::ForeignLoginPolicy;
use outpost_schema::{ControlMsg, ErrorCode, Hello, PROTOCOL_VERSION};

use super::login::{ForeignFacts, LoginConfig, LoginStep, PresenceOutcome};
use super::login_pair::*;
use super::rules::{uniform, Draw};
use crate::auth::{Principal, ResumeError};

const NO_DRAW: Draw = |_| panic!("nothing to draw");

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A login against `backend` with `hello`, default configuration.
fn login(backend: Backend, hello: Hello) -> Pair {
    let mut pair = Pair::new(config(), backend, NO_DRAW);
    pair.send_hello(hello);
    pair
}

fn is_auth(s: &LoginStep) -> bool {
    *s == LoginStep::Authenticate
}

fn is_resume(s: &LoginStep) -> bool {
    *s == LoginStep::Resume
}

fn invalid_token(code: ErrorCode) -> Result<Principal, ResumeError> {
    Err(ResumeError::InvalidToken(refusal(code, "token does not verify")))
}

#[test]
fn fresh_login_is_welcomed() {
    let mut h = hello();
    h.max_frame_size = 8_192;
    let pair = login(Backend::default(), h);
    let w = pair.welcomed();
    assert!(!w.resumed);
    assert_eq!(w.protocol_version, PROTOCOL_VERSION);
    assert_eq!((w.player_id.as_str(), w.region.as_str()), ("p-1", REGION));
    assert_eq!(w.home_region, REGION);
    assert_eq!(
        (w.session_token.as_str(), w.resume_token.as_str()),
        ("v1.session", "r1.resume")
    );
    assert_eq!(w.max_frame_size, 8_192, "the smaller proposal wins");
    assert_eq!((w.heartbeat_interval_ms, w.idle_timeout_ms), (10_000, 30_000));
    assert_eq!(w.max_in_flight_per_channel, 32);
    // Admission before authentication; the claim is a plain one.
    assert!(matches!(
        pair.steps[..2],
        [LoginStep::Admit, LoginStep::Authenticate]
    ));
    assert!(pair.steps.contains(&LoginStep::ClaimPresence {
        player: "p-1".into(),
        session_id: 42,
        resume_of: None
    }));
    let done = pair.login.into_logged_in().expect("welcomed");
    assert_eq!(done.max_frame_size, 8_192);
    assert_eq!(done.principal.player_id.as_ref(), "p-1");
}

#[test]
fn resume_is_checked_against_presence_and_welcomed_as_resumed() {
    let backend = Backend {
        resume: VecDeque::from([Ok(resumed(7))]),
        ..Backend::default()
    };
    let pair = login(backend, resume_hello(false));
    assert!(pair.welcomed().resumed);
    assert_eq!(
        pair.count(|s| matches!(
            s,
            LoginStep::ClaimPresence {
                resume_of: Some(7),
                ..
            }
        )),
        1
    );
}

#[test]
fn no_hello_within_the_timeout_closes_without_a_frame() {
    let mut pair = Pair::new(config(), Backend::default(), NO_DRAW);
    assert_eq!(pair.login.poll_timeout(), Some(pair.now + ms(5_000)));
    pair.advance(ms(4_999));
    assert_eq!(pair.outcome(), Outcome::Pending);
    pair.advance(ms(1));
    assert_eq!(pair.outcome(), Outcome::Closed(ErrorCode::HelloTimeout));
    assert!(pair.login.is_done());
    assert_eq!(pair.login.poll_timeout(), None);
    // A Hello that arrives after that is ignored.
    pair.send_hello(hello());
    assert_eq!(pair.outcome(), Outcome::Closed(ErrorCode::HelloTimeout));
}

#[test]
fn a_client_gone_before_hello_ends_the_login_quietly() {
    let mut pair = Pair::new(config(), Backend::default(), NO_DRAW);
    pair.login.handle_lost();
    pair.advance(ms(10_000));
    assert_eq!(pair.outcome(), Outcome::Pending);
    assert!(pair.login.is_done() && pair.steps.is_empty());
}

#[test]
fn a_first_frame_other_than_hello_is_unexpected() {
    let mut pair = Pair::new(config(), Backend::default(), NO_DRAW);
    pair.send_bytes(&ControlMsg::Ping { nonce: 1 }.encode());
    let r = pair.rejected();
    assert_eq!((r.reason, r.retry_after_ms), (ErrorCode::UnexpectedFrame, 0));
    assert_eq!(r.message, "the first frame must be Hello");
    assert_eq!(pair.steps.len(), 1, "no admission, no authentication");
}

#[test]
fn frame_errors_before_welcome_are_rejected_with_their_code() {
    // A length prefix over the handshake maximum: refused before the body.
    let mut pair = Pair::new(config(), Backend::default(), NO_DRAW);
    pair.send_bytes(&16_385u32.to_le_bytes());
    assert_eq!(pair.rejected().reason, ErrorCode::FrameTooLarge);
    // A body that is not a control frame.
    let mut pair = Pair::new(config(), Backend::default(), NO_DRAW);
    let mut junk = 32u32.to_le_bytes().to_vec();
    junk.extend([0xAB; 32]);
    pair.send_bytes(&junk);
    assert_eq!(pair.rejected().reason, ErrorCode::BadFrame);
    // A length prefix under 8.
    let mut pair = Pair::new(config(), Backend::default(), NO_DRAW);
    pair.send_bytes(&[4, 0, 0, 0, 1, 2, 3, 4]);
    assert_eq!(pair.rejected().reason, ErrorCode::BadFrame);
}

#[test]
fn unsupported_protocol_versions_are_rejected_naming_the_range() {
    for version in [0, PROTOCOL_VERSION + 1] {
        let pair = login(
            Backend::default(),
            Hello {
                protocol_version: version,
                ..hello()
            },
        );
        let r = pair.rejected();
        assert_eq!(
            (r.reason, r.retry_after_ms),
            (ErrorCode::UnsupportedProtocolVersion, 0)
        );
        assert!(r.message.contains("1..=1"), "{}", r.message);
        assert_eq!(pair.steps.len(), 1);
    }
}

#[test]
fn a_draining_gateway_rejects_with_a_retry_within_the_window() {
    let draining = |draw: Draw| {
        let backend = Backend {
            draining: Some(ms(30_000)),
            ..Backend::default()
        };
        let mut pair = Pair::new(config(), backend, draw);
        pair.send_hello(hello());
        let r = pair.rejected();
        assert_eq!(r.reason, ErrorCode::Draining);
        assert_eq!(pair.steps.len(), 1, "no admission when draining");
        r.retry_after_ms
    };
    assert_eq!(draining(|_| 0), 0);
    assert_eq!(draining(|max| max), 30_000);
    assert_eq!(draining(|max| max / 3), 10_000);
    assert!(draining(uniform) <= 30_000);
    // The version check comes first.
    let backend = Backend {
        draining: Some(ms(30_000)),
        ..Backend::default()
    };
    let mut pair = Pair::new(config(), backend, NO_DRAW);
    pair.send_hello(Hello {
        protocol_version: 9,
        ..hello()
    });
    assert_eq!(pair.rejected().reason, ErrorCode::UnsupportedProtocolVersion);
}

#[test]
fn at_capacity_the_gateway_is_busy_with_jittered_retry() {
    let busy = |draw: Draw| {
        let backend = Backend {
            capacity: false,
            ..Backend::default()
        };
        let mut pair = Pair::new(config(), backend, draw);
        pair.send_hello(hello());
        let r = pair.rejected();
        assert_eq!(r.reason, ErrorCode::ServerBusy);
        assert_eq!(pair.count(is_auth), 0, "no authentication work above capacity");
        r.retry_after_ms
    };
    assert_eq!(busy(|_| 0), 2_000);
    assert_eq!(busy(|max| max), 5_000);
    assert_eq!(busy(|_| u64::MAX), 5_000, "an out-of-range draw is clamped");
    for _ in 0..50 {
        assert!((2_000..=5_000).contains(&busy(uniform)));
    }
}

#[test]
fn authentication_refusals_pass_through_without_delay() {
    for code in [
        ErrorCode::BadCredentials,
        ErrorCode::TokenMalformed,
        ErrorCode::TokenBadSignature,
        ErrorCode::TokenExpired,
        ErrorCode::TokenUnknownKey,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ] {
        let backend = Backend {
            auth: VecDeque::from([Err(refusal(code, "refused by identity"))]),
            ..Backend::default()
        };
        let pair = login(backend, hello());
        let r = pair.rejected();
        assert_eq!((r.reason, r.retry_after_ms), (code, 0));
        assert_eq!(r.message, "refused by identity");
        assert_eq!(pair.count(|s| matches!(s, LoginStep::ClaimPresence { .. })), 0);
    }
}

#[test]
fn a_hello_without_credentials_or_resume_token_is_missing_credentials() {
    let pair = login(
        Backend::default(),
        Hello {
            credentials: None,
            ..hello()
        },
    );
    let r = pair.rejected();
    assert_eq!((r.reason, r.retry_after_ms), (ErrorCode::MissingCredentials, 0));
    assert_eq!(r.message, "Hello carries no credentials");
    assert_eq!(pair.count(|s| is_auth(s) || is_resume(s)), 0);
}

#[test]
fn an_invalid_resume_token_without_credentials_is_resume_rejected() {
    for code in [
        ErrorCode::TokenMalformed,
        ErrorCode::TokenBadSignature,
        ErrorCode::TokenExpired,
        ErrorCode::TokenUnknownKey,
    ] {
        let backend = Backend {
            resume: VecDeque::from([invalid_token(code)]),
            ..Backend::default()
        };
        let pair = login(backend, resume_hello(false));
        let r = pair.rejected();
        assert_eq!((r.reason, r.retry_after_ms), (ErrorCode::ResumeRejected, 0));
        assert_eq!(r.message, "token does not verify");
        assert_eq!(pair.count(is_auth), 0);
    }
}

#[test]
fn an_invalid_resume_token_with_credentials_falls_back_to_them() {
    let backend = Backend {
        resume: VecDeque::from([invalid_token(ErrorCode::TokenExpired)]),
        ..Backend::default()
    };
    let pair = login(backend, resume_hello(true));
    assert!(!pair.welcomed().resumed);
    assert_eq!((pair.count(is_resume), pair.count(is_auth)), (1, 1));
}

#[test]
fn a_resume_refused_after_the_token_verified_does_not_fall_back() {
    // The token is good but the account cannot be read: the refusal passes
    // through (retrying with the credentials would meet the same store).
    let backend = Backend {
        resume: VecDeque::from([Err(ResumeError::Refused(refusal(
            ErrorCode::Unavailable,
            "store down",
        )))]),
        ..Backend::default()
    };
    let pair = login(backend, resume_hello(true));
    let r = pair.rejected();
    assert_eq!((r.reason, r.retry_after_ms), (ErrorCode::Unavailable, 0));
    assert_eq!(pair.count(is_auth), 0);
}

#[test]
fn a_revoked_resume_without_credentials_is_resume_rejected() {
    for revoked in [
        ResumeRefused::Replaced,
        ResumeRefused::Ended(SessionEnd::KickedByOperator),
        ResumeRefused::Ended(SessionEnd::LoggedOut),
        ResumeRefused::Unknown,
    ] {
        let backend = Backend {
            resume: VecDeque::from([Ok(resumed(7))]),
            presence: VecDeque::from([PresenceOutcome::ResumeRevoked(revoked)]),
            ..Backend::default()
        };
        let pair = login(backend, resume_hello(false));
        let r = pair.rejected();
        assert_eq!((r.reason, r.retry_after_ms), (ErrorCode::ResumeRejected, 0));
        assert!(r.message.starts_with("resume token revoked: "), "{}", r.message);
        assert_eq!(pair.count(is_auth), 0, "no credentials to fall back to");
    }
}

#[test]
fn a_revoked_resume_with_credentials_falls_back_to_a_full_login() {
    let backend = Backend {
        resume: VecDeque::from([Ok(resumed(7))]),
        presence: VecDeque::from([
            PresenceOutcome::ResumeRevoked(ResumeRefused::Replaced),
            PresenceOutcome::Claimed,
        ]),
        ..Backend::default()
    };
    let pair = login(backend, resume_hello(true));
    assert!(!pair.welcomed().resumed);
    assert_eq!(pair.count(is_auth), 1, "credentials only, ignoring the token");
    let claims: Vec<_> = pair
        .steps
        .iter()
        .filter_map(|s| match s {
            LoginStep::ClaimPresence { resume_of, .. } => Some(*resume_of),
            _ => None,
        })
        .collect();
    assert_eq!(claims, [Some(7), None]);
    // The fallback's own refusal is what the client gets.
    let backend = Backend {
        resume: VecDeque::from([Ok(resumed(7))]),
        auth: VecDeque::from([Err(refusal(ErrorCode::TokenExpired, "expired"))]),
        presence: VecDeque::from([PresenceOutcome::ResumeRevoked(ResumeRefused::Replaced)]),
        ..Backend::default()
    };
    assert_eq!(
        login(backend, resume_hello(true)).rejected().reason,
        ErrorCode::TokenExpired
    );
}

#[test]
fn a_resume_that_cannot_be_checked_is_unavailable() {
    let backend = Backend {
        resume: VecDeque::from([Ok(resumed(7))]),
        presence: VecDeque::from([PresenceOutcome::ResumeUnchecked("store down".into())]),
        ..Backend::default()
    };
    let r = login(backend, resume_hello(true)).rejected();
    assert_eq!((r.reason, r.retry_after_ms), (ErrorCode::Unavailable, 1_000));
    assert_eq!(r.message, "cannot check the resume: store down");
}

#[test]
fn a_failed_plain_claim_does_not_stop_the_login() {
    let backend = Backend {
        presence: VecDeque::from([PresenceOutcome::ClaimFailed]),
        ..Backend::default()
    };
    login(backend, hello()).welcomed();
}

#[test]
fn without_cross_gateway_presence_nothing_is_claimed() {
    let backend = Backend {
        resume: VecDeque::from([Ok(resumed(7))]),
        presence: VecDeque::new(),
        ..Backend::default()
    };
    let mut pair = Pair::new(
        LoginConfig {
            cross_gateway_presence: false,
            ..config()
        },
        backend,
        NO_DRAW,
    );
    pair.send_hello(resume_hello(false));
    assert!(pair.welcomed().resumed);
}

/// A login of a player homed in `eu` at this `us` gateway under `policy`.
fn foreign(policy: ForeignLoginPolicy, facts: Result<ForeignFacts, String>) -> Pair {
    let backend = Backend {
        auth: VecDeque::from([Ok(principal("eu"))]),
        foreign: facts,
        ..Backend::default()
    };
    let mut pair = Pair::new(
        LoginConfig {
            foreign_login_policy: policy,
            ..config()
        },
        backend,
        NO_DRAW,
    );
    pair.send_hello(hello());
    pair
}

fn facts(transfer_in_progress: bool, home_reachable: bool) -> Result<ForeignFacts, String> {
    Ok(ForeignFacts {
        transfer_in_progress,
        home_reachable,
    })
}

#[test]
fn foreign_logins_follow_the_policy() {
    use ForeignLoginPolicy::*;
    for (policy, reachable) in [(Redirect, true), (ServeViaHome, false)] {
        let r = foreign(policy, facts(false, reachable)).rejected();
        assert_eq!((r.reason, r.retry_after_ms), (ErrorCode::WrongRegion, 0));
        assert!(r.message.contains("home region is eu"), "{}", r.message);
    }
    let w = foreign(ServeViaHome, facts(false, true)).welcomed();
    assert_eq!((w.region.as_str(), w.home_region.as_str()), (REGION, "eu"));
    let r = foreign(Redirect, facts(true, true)).rejected();
    assert_eq!((r.reason, r.retry_after_ms), (ErrorCode::Unavailable, 1_000));
    let r = foreign(Redirect, Err("transfer store down".into())).rejected();
    assert_eq!((r.reason, r.retry_after_ms), (ErrorCode::Unavailable, 1_000));
    assert_eq!(r.message, "transfer store down");
    // A player at home never gets there.
    let pair = login(Backend::default(), hello());
    assert_eq!(pair.count(|s| matches!(s, LoginStep::CheckForeign { .. })), 0);
}

#[test]
fn the_transfer_policy_moves_the_player_here() {
    let pair = foreign(ForeignLoginPolicy::Transfer, facts(false, true));
    let w = pair.welcomed();
    assert_eq!(w.home_region, REGION, "Welcome names the new home");
    let done = pair.login.into_logged_in().unwrap();
    assert_eq!(
        done.principal.reusable_session_token, None,
        "its token names the old home"
    );

    let mut pair = Pair::new(
        LoginConfig {
            foreign_login_policy: ForeignLoginPolicy::Transfer,
            ..config()
        },
        Backend {
            auth: VecDeque::from([Ok(principal("eu"))]),
            transfer: Some(Err("fence lost".into())),
            ..Backend::default()
        },
        NO_DRAW,
    );
    pair.send_hello(hello());
    let r = pair.rejected();
    assert_eq!(
        (r.reason, r.retry_after_ms, r.message.as_str()),
        (ErrorCode::Unavailable, 1_000, "fence lost")
    );
}

#[test]
fn a_transfer_running_too_long_is_unavailable_with_a_longer_retry() {
    let mut pair = Pair::new(
        LoginConfig {
            foreign_login_policy: ForeignLoginPolicy::Transfer,
            ..config()
        },
        Backend {
            auth: VecDeque::from([Ok(principal("eu"))]),
            transfer: None,
            ..Backend::default()
        },
        NO_DRAW,
    );
    pair.advance(ms(1_000));
    pair.send_hello(hello());
    assert_eq!(pair.outcome(), Outcome::Pending);
    assert_eq!(pair.login.poll_timeout(), Some(pair.now + ms(10_000)));
    pair.advance(ms(9_999));
    assert_eq!(pair.outcome(), Outcome::Pending);
    pair.advance(ms(1));
    let r = pair.rejected();
    assert_eq!((r.reason, r.retry_after_ms), (ErrorCode::Unavailable, 2_000));
    // A late transfer result changes nothing.
    pair.login.handle_transfer(Ok(REGION.into()));
    assert_eq!(pair.login.poll_action(), None);
}

#[test]
fn a_token_failure_is_rejected_with_a_retry() {
    let backend = Backend {
        tokens: Err(refusal(ErrorCode::Internal, "no signing key")),
        ..Backend::default()
    };
    let r = login(backend, hello()).rejected();
    assert_eq!((r.reason, r.retry_after_ms), (ErrorCode::Internal, 1_000));
}

#[test]
fn nothing_is_emitted_after_the_end() {
    let backend = Backend {
        capacity: false,
        ..Backend::default()
    };
    let mut pair = Pair::new(config(), backend, |_| 0);
    pair.send_hello(hello());
    pair.rejected();
    pair.login.handle_admission(true);
    pair.login.handle_auth(Ok(principal(REGION)));
    pair.login.handle_presence(PresenceOutcome::Claimed);
    pair.advance(ms(60_000));
    assert_eq!(pair.login.poll_action(), None);
    assert!(pair.login.into_logged_in().is_none());
}

//! Tests of [`ErrorClass`] and a sample of every service's classification.

use super::*;
use crate::audit::AuditError;
use crate::content::ContentError;
use crate::flags::{FlagError, RolloutError};
use crate::identity::{IdentityError, TokenError};
use crate::ledger::LedgerError;
use crate::matchmaker::{AllocError, CommitError, ConfigError, CoreError, MatchmakerError, TicketId};
use crate::state::StateError;
use crate::telemetry::TelemetryError;
use crate::transfer::TransferError;

#[test]
fn retry_hints() {
    assert!(ErrorClass::STORE_UNAVAILABLE.is_retryable());
    assert_eq!(
        ErrorClass::STORE_UNAVAILABLE.retry_after(),
        Some(STORE_RETRY_AFTER)
    );
    assert_eq!(
        ErrorClass::TRANSFER_UNAVAILABLE.retry_after(),
        Some(TRANSFER_RETRY_AFTER)
    );
    for c in [
        ErrorClass::Invalid,
        ErrorClass::NotFound,
        ErrorClass::Conflict,
        ErrorClass::Forbidden,
        ErrorClass::Internal,
    ] {
        assert!(!c.is_retryable() && c.retry_after().is_none(), "{c:?}");
    }
}

#[test]
fn store_errors() {
    assert_eq!(StoreError::Conflict.class(), ErrorClass::STORE_UNAVAILABLE);
    assert_eq!(StoreError::Timeout.class(), ErrorClass::STORE_UNAVAILABLE);
    let io = StoreError::Io(std::io::Error::other("disk"));
    assert_eq!(io.class(), ErrorClass::STORE_UNAVAILABLE);
    assert_eq!(
        StoreError::ValueTooLarge { size: 2, limit: 1 }.class(),
        ErrorClass::Invalid
    );
    assert_eq!(StoreError::InvalidVersionstamp("x").class(), ErrorClass::Internal);
    let tx: TxError<StateError> = TxError::Store(StoreError::Cancelled);
    assert_eq!(tx.class(), ErrorClass::STORE_UNAVAILABLE);
    let tx: TxError<StateError> = TxError::User(StateError::PlayerMoved { to: "us".into() });
    assert_eq!(tx.class(), ErrorClass::Forbidden);
}

#[test]
fn wrapped_errors_take_the_inner_class() {
    let store = || StoreError::Conflict;
    assert_eq!(LedgerError::Store(store()).class(), ErrorClass::STORE_UNAVAILABLE);
    assert_eq!(
        TransferError::Identity(IdentityError::BadCredentials).class(),
        ErrorClass::Forbidden
    );
    assert_eq!(
        TransferError::Identity(IdentityError::Store(StoreError::ValueTooLarge {
            size: 2,
            limit: 1
        }))
        .class(),
        ErrorClass::Invalid
    );
    assert_eq!(
        MatchmakerError::InvalidTicket(CoreError::DuplicateTicket(TicketId(1))).class(),
        ErrorClass::Conflict
    );
    assert_eq!(
        MatchmakerError::InvalidTicket(CoreError::InvalidSkill).class(),
        ErrorClass::Invalid
    );
}

#[test]
fn service_samples() {
    let cases: Vec<(ErrorClass, ErrorClass)> = vec![
        (
            LedgerError::UnknownOffer("o".into()).class(),
            ErrorClass::NotFound,
        ),
        (LedgerError::InvalidReason.class(), ErrorClass::Invalid),
        (
            LedgerError::TransferInProgress { transfer: "t".into() }.class(),
            ErrorClass::TRANSFER_UNAVAILABLE,
        ),
        (LedgerError::UnsupportedSchema(9).class(), ErrorClass::Internal),
        (
            StateError::VersionConflict {
                expected: 1,
                actual: 2,
            }
            .class(),
            ErrorClass::Conflict,
        ),
        (StateError::CorruptFence("x".into()).class(), ErrorClass::Internal),
        (
            MatchmakerError::TicketNotFound(TicketId(3)).class(),
            ErrorClass::NotFound,
        ),
        (
            MatchmakerError::InvalidPoolRegion("X".into()).class(),
            ErrorClass::Internal,
        ),
        (CommitError::LeaseLost("p".into()).class(), ErrorClass::Conflict),
        (ConfigError::Empty.class(), ErrorClass::Invalid),
        (
            AllocError::NoCapacity("eu".into()).class(),
            ErrorClass::STORE_UNAVAILABLE,
        ),
        (FlagError::InvalidActor.class(), ErrorClass::Invalid),
        (RolloutError::Finished("r".into()).class(), ErrorClass::Conflict),
        (RolloutError::NotFound("r".into()).class(), ErrorClass::NotFound),
        (AuditError::InvalidCursor("c".into()).class(), ErrorClass::Invalid),
        (
            ContentError::NotFound { id: "c".into() }.class(),
            ErrorClass::NotFound,
        ),
        (ContentError::InvalidActor.class(), ErrorClass::Invalid),
        (
            TelemetryError::InvalidConfig("x".into()).class(),
            ErrorClass::Invalid,
        ),
        (
            TransferError::UnknownTransfer("t".into()).class(),
            ErrorClass::NotFound,
        ),
        (TransferError::Corrupt("x".into()).class(), ErrorClass::Internal),
        (
            IdentityError::CannotRetireActiveKey("k".into()).class(),
            ErrorClass::Conflict,
        ),
        (
            PresenceError::GatewayNameTooLong(999).class(),
            ErrorClass::Invalid,
        ),
        (PresenceError::Corrupt.class(), ErrorClass::Internal),
        (TokenError::BadSignature.class(), ErrorClass::Forbidden),
        (CodecError::UnsupportedVersion(2).class(), ErrorClass::Internal),
    ];
    for (i, (got, want)) in cases.into_iter().enumerate() {
        assert_eq!(got, want, "case {i}");
    }
}

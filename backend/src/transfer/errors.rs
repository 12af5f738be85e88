//! Cross-region transfer errors.

use crate::error_class::{Classify, ErrorClass};
use crate::identity::IdentityError;
use crate::store::{StoreError, TxError};

use super::types::{HookPoint, TransferStep};
use crate::fence::Fence;

/// An error from a [`Transfer`](super::Transfer) operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The player's home already is the destination.
    #[error("player is already homed in region {0}")]
    SameRegion(String),
    /// A region this transfer service has no store for.
    #[error("unknown region {0:?}")]
    UnknownRegion(String),
    /// No account with this player id.
    #[error("unknown player {0}")]
    UnknownPlayer(String),
    /// The player already has an unfinished transfer; resume it instead.
    #[error("player already has transfer {0} in progress")]
    AlreadyInProgress(String),
    /// No transfer record with this id.
    #[error("unknown transfer {0:?}")]
    UnknownTransfer(String),
    /// A player fence set by something other than this transfer (another transfer,
    /// or manual intervention). Needs an operator.
    #[error("region {region} has an unexpected player fence {found:?} for transfer {transfer}")]
    FenceConflict {
        /// The region.
        region: String,
        /// The transfer being run.
        transfer: String,
        /// The fence found.
        found: Option<Fence>,
    },
    /// The transfer record is at a step the operation cannot start from.
    #[error("transfer {transfer} is at step {found:?}, expected {expected:?}")]
    UnexpectedStep {
        /// The transfer.
        transfer: String,
        /// The step the operation needed.
        expected: TransferStep,
        /// The step recorded.
        found: TransferStep,
    },
    /// A fault injected by a test hook (see
    /// [`Transfer::resume_with_hook`](super::Transfer::resume_with_hook)).
    #[error("transfer interrupted at {0:?} (injected)")]
    Interrupted(HookPoint),
    /// A stored record that does not decode.
    #[error("corrupt transfer data: {0}")]
    Corrupt(String),
    /// Identity failed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TxError<TransferError>> for TransferError {
    fn from(e: TxError<TransferError>) -> Self {
        match e {
            TxError::Store(s) => TransferError::Store(s),
            TxError::User(u) => u,
        }
    }
}

impl From<TxError<IdentityError>> for TransferError {
    fn from(e: TxError<IdentityError>) -> Self {
        TransferError::Identity(e.into())
    }
}

impl Classify for TransferError {
    /// A fence or step mismatch needs an operator ([`ErrorClass::Conflict`]: the
    /// stored state is not what the operation expects); an injected interruption
    /// is retried by resuming.
    fn class(&self) -> ErrorClass {
        match self {
            TransferError::SameRegion(_) => ErrorClass::Invalid,
            TransferError::UnknownRegion(_)
            | TransferError::UnknownPlayer(_)
            | TransferError::UnknownTransfer(_) => ErrorClass::NotFound,
            TransferError::AlreadyInProgress(_)
            | TransferError::FenceConflict { .. }
            | TransferError::UnexpectedStep { .. } => ErrorClass::Conflict,
            TransferError::Interrupted(_) => ErrorClass::TRANSFER_UNAVAILABLE,
            TransferError::Corrupt(_) => ErrorClass::Internal,
            TransferError::Identity(e) => e.class(),
            TransferError::Store(e) => e.class(),
        }
    }
}

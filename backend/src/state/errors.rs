//! Player state's errors.

use crate::error_class::{Classify, ErrorClass};
use crate::store::{StoreError, TxError};

/// An error from a [`PlayerState`](super::PlayerState) operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Compare-and-set found another version than the caller expected (`0`
    /// means "the document does not exist"). Re-read and retry the update.
    #[error("version conflict: expected version {expected}, document is at {actual}")]
    VersionConflict {
        /// The version the caller expected.
        expected: u64,
        /// The version found (0: no document).
        actual: u64,
    },
    /// A document name outside the accepted form.
    #[error("invalid document name {0:?} (1..=64 bytes of a-z, 0-9, '_', '-', '.')")]
    InvalidDocName(String),
    /// A player id that is not 32 lowercase hex characters.
    #[error("invalid player id {0:?}")]
    InvalidPlayerId(String),
    /// An invalid region name.
    #[error("invalid region name {0:?}")]
    InvalidRegion(String),
    /// A document value over the limit.
    #[error("document too large: {size} bytes, limit {limit}")]
    DocumentTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Creating the document would exceed the per-player document count.
    #[error("player already has {limit} documents")]
    TooManyDocuments {
        /// The limit.
        limit: usize,
    },
    /// The player is being moved between regions; writes (and reads in the
    /// destination) are refused until the transfer completes. Retry later.
    #[error("player is being transferred between regions (transfer {transfer})")]
    TransferInProgress {
        /// The transfer's id.
        transfer: String,
    },
    /// The player's data has moved to another region; use that region.
    #[error("player has moved to region {to}")]
    PlayerMoved {
        /// The region now holding the player's data.
        to: String,
    },
    /// A stored document that does not decode.
    #[error("corrupt stored document: {0}")]
    CorruptDocument(&'static str),
    /// A stored document with an unknown schema version.
    #[error("stored document has unsupported schema version {0}")]
    UnsupportedSchema(u8),
    /// The player's fence record does not decode.
    #[error("corrupt player fence: {0}")]
    CorruptFence(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TxError<StateError>> for StateError {
    fn from(e: TxError<StateError>) -> Self {
        match e {
            TxError::Store(s) => StateError::Store(s),
            TxError::User(u) => u,
        }
    }
}

impl Classify for StateError {
    fn class(&self) -> ErrorClass {
        match self {
            StateError::VersionConflict { .. } => ErrorClass::Conflict,
            StateError::InvalidDocName(_)
            | StateError::InvalidPlayerId(_)
            | StateError::InvalidRegion(_)
            | StateError::DocumentTooLarge { .. }
            | StateError::TooManyDocuments { .. } => ErrorClass::Invalid,
            StateError::TransferInProgress { .. } => ErrorClass::TRANSFER_UNAVAILABLE,
            StateError::PlayerMoved { .. } => ErrorClass::Forbidden,
            StateError::CorruptDocument(_)
            | StateError::UnsupportedSchema(_)
            | StateError::CorruptFence(_) => ErrorClass::Internal,
            StateError::Store(e) => e.class(),
        }
    }
}

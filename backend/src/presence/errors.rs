//! Presence errors.

use crate::store::{StoreError, TxError};

/// Why a presence operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    /// The claim's gateway name exceeds [`super::types::MAX_GATEWAY_BYTES`].
    #[error("gateway name of {0} bytes is too long")]
    GatewayNameTooLong(usize),
    /// A stored claim could not be decoded.
    #[error("corrupt presence record")]
    Corrupt,
    /// A stored claim has a schema version this build does not know.
    #[error("presence record has unsupported schema version {0}")]
    UnsupportedSchema(u8),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TxError<PresenceError>> for PresenceError {
    fn from(e: TxError<PresenceError>) -> Self {
        match e {
            TxError::Store(s) => PresenceError::Store(s),
            TxError::User(u) => u,
        }
    }
}

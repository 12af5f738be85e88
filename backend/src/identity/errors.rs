//! Identity's errors.

use crate::error_class::{Classify, ErrorClass};
use crate::store::{StoreError, TxError};

use super::tokens::TokenError;

/// An error from an [`Identity`](super::Identity) operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The device id is empty or longer than the limit.
    #[error("device id must be 1..={max} bytes, got {len}")]
    DeviceIdLength {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The device secret's length is outside the accepted range.
    #[error("device secret must be {min}..={max} bytes, got {len}")]
    SecretLength {
        /// Its length.
        len: usize,
        /// Shortest accepted.
        min: usize,
        /// Longest accepted.
        max: usize,
    },
    /// The device id is known and the secret does not match.
    #[error("bad device credentials")]
    BadCredentials,
    /// A region name that is not 1..=32 characters of `a-z`, `0-9`, `-`.
    #[error("invalid region name {0:?}")]
    InvalidRegion(String),
    /// A player id is not 32 lowercase hex characters.
    #[error("invalid player id {0:?}")]
    InvalidPlayerId(String),
    /// No account with this player id.
    #[error("unknown player {0}")]
    UnknownPlayer(String),
    /// No signing key with this id.
    #[error("unknown signing key {0}")]
    UnknownSigningKey(String),
    /// The active signing key cannot be retired; rotate first.
    #[error("signing key {0} is active; rotate before retiring it")]
    CannotRetireActiveKey(String),
    /// A token lifetime of zero or above the maximum.
    #[error("token ttl must be 1..={max_secs} seconds, got {secs}")]
    TtlOutOfRange {
        /// Requested seconds.
        secs: u64,
        /// The maximum.
        max_secs: u64,
    },
    /// A stored value that does not decode.
    #[error("corrupt {family} record: {detail}")]
    CorruptRecord {
        /// The key family.
        family: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// A stored value with a schema version this build does not know.
    #[error("{family} record has unsupported schema version {version}")]
    UnsupportedSchema {
        /// The key family.
        family: &'static str,
        /// The version byte found.
        version: u8,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TxError<IdentityError>> for IdentityError {
    fn from(e: TxError<IdentityError>) -> Self {
        match e {
            TxError::Store(s) => IdentityError::Store(s),
            TxError::User(u) => u,
        }
    }
}

impl Classify for IdentityError {
    fn class(&self) -> ErrorClass {
        match self {
            IdentityError::DeviceIdLength { .. }
            | IdentityError::SecretLength { .. }
            | IdentityError::InvalidRegion(_)
            | IdentityError::InvalidPlayerId(_)
            | IdentityError::TtlOutOfRange { .. } => ErrorClass::Invalid,
            IdentityError::BadCredentials => ErrorClass::Forbidden,
            IdentityError::UnknownPlayer(_) | IdentityError::UnknownSigningKey(_) => ErrorClass::NotFound,
            IdentityError::CannotRetireActiveKey(_) => ErrorClass::Conflict,
            IdentityError::CorruptRecord { .. } | IdentityError::UnsupportedSchema { .. } => {
                ErrorClass::Internal
            }
            IdentityError::Store(e) => e.class(),
        }
    }
}

impl Classify for TokenError {
    /// Every rejected token is [`ErrorClass::Forbidden`]: the caller must log in
    /// again (an unknown key may also mean this verifier has not refreshed yet,
    /// which a fresh login fixes too).
    fn class(&self) -> ErrorClass {
        match self {
            TokenError::Malformed(_)
            | TokenError::BadSignature
            | TokenError::Expired { .. }
            | TokenError::UnknownKey(_) => ErrorClass::Forbidden,
        }
    }
}

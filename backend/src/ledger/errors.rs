//! The ledger's errors.

use crate::error_class::{Classify, ErrorClass};
use crate::store::{StoreError, TxError};

use super::types::Asset;

/// An error from a [`Ledger`](super::Ledger) operation. Every rejected write
/// (overdraw, stack limit, fence, validation) writes nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// A consume, purchase, trade or correction would take a balance below zero.
    #[error("insufficient {asset}: balance {balance}, requested {requested}")]
    Insufficient {
        /// The asset.
        asset: Asset,
        /// The balance found.
        balance: u64,
        /// The amount the request would remove.
        requested: u64,
    },
    /// A grant, purchase, trade or correction would take a balance over the
    /// asset's limit (max stack of an item, max balance of a currency).
    #[error("{asset} would exceed its limit {limit}: balance {balance}, adding {adding}")]
    LimitExceeded {
        /// The asset.
        asset: Asset,
        /// The catalog limit.
        limit: u64,
        /// The balance found.
        balance: u64,
        /// The amount the request would add.
        adding: u64,
    },
    /// An item or currency the catalog does not know.
    #[error("unknown {0}")]
    UnknownAsset(Asset),
    /// An offer the catalog does not know.
    #[error("unknown offer {0:?}")]
    UnknownOffer(String),
    /// The idempotency key was already used for a *different* request of this
    /// player. Use a fresh key per request.
    #[error("idempotency key {0:?} was already used for a different request")]
    IdempotencyKeyReused(String),
    /// A trade where a side is not homed in this ledger's region. Cross-region
    /// trades are not supported: move one player first, or trade in the region
    /// both are homed in.
    #[error("cross-region trade refused: {player} is homed in {home}, this ledger serves {region}")]
    CrossRegionTrade {
        /// The player homed elsewhere.
        player: String,
        /// Their home region.
        home: String,
        /// This ledger's region.
        region: String,
    },
    /// A malformed trade (same player on both sides, nothing exchanged).
    #[error("invalid trade: {0}")]
    InvalidTrade(&'static str),
    /// An empty request, a zero or too large amount, too many assets, or a
    /// positive and negative change of one asset in one correction.
    #[error("invalid quantities: {0}")]
    InvalidQuantity(String),
    /// An id (item, currency, offer, source) outside `[a-z0-9_.-]{1,64}`.
    #[error("invalid {what} id {id:?}")]
    InvalidId {
        /// What kind of id.
        what: &'static str,
        /// The id (truncated).
        id: String,
    },
    /// An idempotency key that is empty, longer than 128 bytes, or not
    /// printable ASCII.
    #[error("invalid idempotency key {0:?} (1..=128 printable ASCII bytes, no spaces)")]
    InvalidIdempotencyKey(String),
    /// An admin-correction reason that is empty or longer than 512 bytes.
    #[error("invalid correction reason (1..=512 bytes)")]
    InvalidReason,
    /// A history cursor that does not parse.
    #[error("invalid history cursor {0:?}")]
    InvalidCursor(String),
    /// A player id that is not 32 lowercase hex characters.
    #[error("invalid player id {0:?}")]
    InvalidPlayerId(String),
    /// An invalid region name.
    #[error("invalid region name {0:?}")]
    InvalidRegion(String),
    /// The player is being moved between regions; writes (and reads in the
    /// destination) are refused until the transfer completes. Retry later.
    #[error("player is being transferred between regions (transfer {transfer})")]
    TransferInProgress {
        /// The transfer's id.
        transfer: String,
    },
    /// The player's ledger has moved to another region; use that region.
    #[error("player has moved to region {to}")]
    PlayerMoved {
        /// The region now holding the player's ledger.
        to: String,
    },
    /// A catalog that fails validation or does not parse.
    #[error("invalid catalog: {0}")]
    InvalidCatalog(String),
    /// A stored value that does not decode.
    #[error("corrupt ledger data: {0}")]
    Corrupt(String),
    /// A stored value with an unknown schema version.
    #[error("stored ledger value has unsupported schema version {0}")]
    UnsupportedSchema(u8),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TxError<LedgerError>> for LedgerError {
    fn from(e: TxError<LedgerError>) -> Self {
        match e {
            TxError::Store(s) => LedgerError::Store(s),
            TxError::User(u) => u,
        }
    }
}

impl LedgerError {
    /// A short stable code for the wire (the gateway maps these to its own
    /// error codes).
    pub fn code(&self) -> &'static str {
        match self {
            LedgerError::Insufficient { .. } => "insufficient",
            LedgerError::LimitExceeded { .. } => "limit_exceeded",
            LedgerError::UnknownAsset(_) => "unknown_asset",
            LedgerError::UnknownOffer(_) => "unknown_offer",
            LedgerError::IdempotencyKeyReused(_) => "idempotency_key_reused",
            LedgerError::CrossRegionTrade { .. } => "cross_region_trade",
            LedgerError::InvalidTrade(_) => "invalid_trade",
            LedgerError::InvalidQuantity(_) => "invalid_quantity",
            LedgerError::InvalidId { .. } => "invalid_id",
            LedgerError::InvalidIdempotencyKey(_) => "invalid_idempotency_key",
            LedgerError::InvalidReason => "invalid_reason",
            LedgerError::InvalidCursor(_) => "invalid_cursor",
            LedgerError::InvalidPlayerId(_) => "invalid_player_id",
            LedgerError::InvalidRegion(_) => "invalid_region",
            LedgerError::TransferInProgress { .. } => "transfer_in_progress",
            LedgerError::PlayerMoved { .. } => "player_moved",
            LedgerError::InvalidCatalog(_) => "invalid_catalog",
            LedgerError::Corrupt(_) | LedgerError::UnsupportedSchema(_) => "corrupt",
            LedgerError::Store(_) => "store",
        }
    }
}

impl Classify for LedgerError {
    fn class(&self) -> ErrorClass {
        match self {
            LedgerError::Insufficient { .. }
            | LedgerError::LimitExceeded { .. }
            | LedgerError::IdempotencyKeyReused(_) => ErrorClass::Conflict,
            LedgerError::UnknownAsset(_) | LedgerError::UnknownOffer(_) => ErrorClass::NotFound,
            LedgerError::CrossRegionTrade { .. } | LedgerError::PlayerMoved { .. } => ErrorClass::Forbidden,
            LedgerError::InvalidTrade(_)
            | LedgerError::InvalidQuantity(_)
            | LedgerError::InvalidId { .. }
            | LedgerError::InvalidIdempotencyKey(_)
            | LedgerError::InvalidReason
            | LedgerError::InvalidCursor(_)
            | LedgerError::InvalidPlayerId(_)
            | LedgerError::InvalidRegion(_) => ErrorClass::Invalid,
            LedgerError::TransferInProgress { .. } => ErrorClass::TRANSFER_UNAVAILABLE,
            LedgerError::InvalidCatalog(_) | LedgerError::Corrupt(_) | LedgerError::UnsupportedSchema(_) => {
                ErrorClass::Internal
            }
            LedgerError::Store(e) => e.class(),
        }
    }
}

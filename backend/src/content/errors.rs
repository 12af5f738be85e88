//! Content's errors.

use super::version::ClientVersion;
use crate::error_class::{Classify, ErrorClass};
use crate::store::{StoreError, TxError};

/// An error from a [`Content`](super::Content) operation or a manifest check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContentError {
    /// The client is older than the manifest's minimum client version: it must
    /// update before it can use this content. The gateway sends this to the client
    /// as its "client too old" code.
    #[error("client version {client} is too old for this content: {min} or newer required")]
    ClientTooOld {
        /// The manifest's minimum client version.
        min: ClientVersion,
        /// The version the client reported.
        client: ClientVersion,
    },
    /// This (id, version) is already published; manifests are immutable.
    #[error("content {id} version {version} is already published (manifests are immutable)")]
    AlreadyPublished {
        /// Content id.
        id: String,
        /// Version.
        version: u64,
    },
    /// Versions of one content id must increase with every publish.
    #[error("content {id}: version {version} is not newer than the latest, {latest}")]
    VersionNotNewer {
        /// Content id.
        id: String,
        /// The version offered.
        version: u64,
        /// The latest published version.
        latest: u64,
    },
    /// No such content id (or no such version of it).
    #[error("content {id} not found")]
    NotFound {
        /// Content id.
        id: String,
    },
    /// A manifest that breaks a rule (the message says which).
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    /// An actor name outside 1..=128 bytes.
    #[error("invalid actor name (1..=128 bytes)")]
    InvalidActor,
    /// Publishing a new id would exceed the number of content ids.
    #[error("too many content ids (limit {limit})")]
    TooManyContentIds {
        /// The limit.
        limit: usize,
    },
    /// A stored record that does not decode.
    #[error("corrupt stored manifest: {0}")]
    Corrupt(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TxError<ContentError>> for ContentError {
    fn from(e: TxError<ContentError>) -> Self {
        match e {
            TxError::Store(s) => ContentError::Store(s),
            TxError::User(u) => u,
        }
    }
}

impl Classify for ContentError {
    /// A client too old for the content is [`ErrorClass::Forbidden`] (it must
    /// update first); the gateway also keeps its dedicated "client too old" code.
    fn class(&self) -> ErrorClass {
        match self {
            ContentError::ClientTooOld { .. } => ErrorClass::Forbidden,
            ContentError::AlreadyPublished { .. } | ContentError::VersionNotNewer { .. } => {
                ErrorClass::Conflict
            }
            ContentError::NotFound { .. } => ErrorClass::NotFound,
            ContentError::InvalidManifest(_)
            | ContentError::InvalidActor
            | ContentError::TooManyContentIds { .. } => ErrorClass::Invalid,
            ContentError::Corrupt(_) => ErrorClass::Internal,
            ContentError::Store(e) => e.class(),
        }
    }
}

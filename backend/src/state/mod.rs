//! Player state (per region): versioned documents per player, compare-and-set
//! updates, and change notification for live pushes.
//!
//! # Design
//!
//! A [`PlayerState`] serves one region: it holds that region's [`Store`] and name,
//! and keeps every key under `("r", region, "st", player)` ([`keys`] has the key
//! schema). A player has up to [`MAX_DOCS_PER_PLAYER`] named documents
//! (`profile`, `progression`, `loadout`, ...). A document is opaque bytes (at most
//! [`MAX_DOC_BYTES`]) plus a version and an update time; its stored value starts
//! with a schema-version byte.
//!
//! - **Compare-and-set.** [`PlayerState::compare_and_set`] writes a document only
//!   if its current version equals `expected_version` (`0`: "must not exist yet")
//!   and returns the new version (old + 1). Otherwise it fails with
//!   [`StateError::VersionConflict`] carrying the version found, so the caller
//!   re-reads, merges and retries. Concurrent writers of one document serialize
//!   through the store's read conflicts: exactly one CAS per version wins.
//! - **Retries.** A CAS whose document is already at `expected_version + 1`
//!   holding exactly the bytes it proposes succeeds with that version and writes
//!   nothing: it is a replay of a write that committed but whose answer was lost
//!   (the connection dropped mid-request, a client timed out), so a blind retry
//!   after an unknown outcome gets the same answer as the first attempt instead
//!   of a `VersionConflict` against itself. Two writers proposing identical bytes
//!   for the same version both succeed, which leaves the document exactly as
//!   each of them asked. The replay is recognised before the transfer fence is
//!   checked: a write that committed before a transfer fenced the player is
//!   answered as done (the copy carries it), not refused. (Once the transfer has
//!   cleared the source, the document is gone and a replay there is refused
//!   with [`StateError::PlayerMoved`]: its outcome is then unknown to the
//!   caller, who re-reads in the new home.)
//! - **Transfer fence.** Every write reads the player's fence
//!   ([`crate::fence`]) in the same transaction: while a cross-region
//!   transfer is moving the player, writes fail with
//!   [`StateError::TransferInProgress`]; in the region the player left, with
//!   [`StateError::PlayerMoved`]. Reads are refused in a region the player is
//!   moving into or has left.
//! - **Change notification.** Every write also atomically adds 1 to the player's
//!   change counter (`("r", region, "st", player, "chg")`), which never conflicts.
//!   [`PlayerState::watch_changes`] returns a [`ChangeWatch`] built on
//!   [`Transaction::watch`] of that key: it resolves after the next change made
//!   through *any* process sharing the store (any gateway of the region), not just
//!   this one. [`PlayerState::list_and_watch`] reads the documents and registers
//!   the watch in one transaction, so no change falls between the read and the
//!   watch. The gateway's push loop:
//!
//! ```ignore
//! loop {
//!     let (docs, watch) = state.list_and_watch(&player).await?;
//!     push_to_session(docs);            // or diff against what the session has seen
//!     watch.await?;                     // any writer, any gateway
//! }
//! ```
//!
//!   A watch can also resolve when the counter is cleared (the player was moved
//!   out of the region); the next read then reports [`StateError::PlayerMoved`].
//!
//! The region's player data family is [`keys::player`]; the cross-region transfer
//! moves it (see [`crate::transfer`]).

pub mod errors;
pub mod keys;
pub mod types;

use crate::fence::{self, Fence};
use crate::identity::check_player_id;
use crate::keyspace::RegionName;
use crate::store::{Store, Transaction, TxError};

use crate::time::now_ms;
pub use errors::StateError;
pub use types::{check_doc_name, Document, MAX_DOCS_PER_PLAYER, MAX_DOC_BYTES, MAX_DOC_NAME_BYTES};

/// The player state service of one region. Cheap to clone.
#[derive(Clone)]
pub struct PlayerState<S: Store> {
    store: S,
    region: RegionName,
}

impl<S: Store> std::fmt::Debug for PlayerState<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlayerState")
            .field("region", &self.region)
            .finish()
    }
}

/// Resolves after the player's documents change (see
/// [`PlayerState::watch_changes`]). Dropping it cancels the watch.
pub type ChangeWatch = crate::store::CounterWatch<StateError>;

fn check_player(player: &str) -> Result<(), StateError> {
    check_player_id(player).map_err(|_| StateError::InvalidPlayerId(player.chars().take(64).collect()))
}

fn fence_error(f: Fence) -> StateError {
    match f {
        Fence::Moved { to, .. } => StateError::PlayerMoved { to },
        Fence::Outgoing { transfer, .. } | Fence::Incoming { transfer, .. } => {
            StateError::TransferInProgress { transfer }
        }
    }
}

/// Fails if the player's fence refuses writes (`for_write`) or reads.
async fn check_fence<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
    for_write: bool,
) -> Result<(), TxError<StateError>> {
    match fence::read(tx, region, player, StateError::CorruptFence).await? {
        Some(f) if for_write || f.blocks_reads() => Err(TxError::User(fence_error(f))),
        _ => Ok(()),
    }
}

async fn list_in_tx<T: Transaction>(
    tx: &T,
    region: &RegionName,
    player: &str,
) -> Result<Vec<Document>, TxError<StateError>> {
    let sub = keys::docs(region, player);
    let (begin, end) = sub.range();
    let kvs = tx.get_range(&begin, &end, None, false).await?;
    kvs.into_iter()
        .map(|kv| {
            let (name,): (String,) = sub
                .unpack(&kv.key)
                .map_err(|_| TxError::User(StateError::CorruptDocument("undecodable key")))?;
            let (version, updated_ms, value) = types::decode(&kv.value).map_err(TxError::User)?;
            Ok(Document {
                name,
                version,
                updated_ms,
                value,
            })
        })
        .collect()
}

impl<S: Store> PlayerState<S> {
    /// The player state of `region`, stored in `store`.
    pub fn new(store: S, region: &str) -> Result<Self, StateError> {
        let region = RegionName::new(region).map_err(|e| StateError::InvalidRegion(e.0))?;
        Ok(PlayerState { store, region })
    }

    /// The store (crate tests read raw keys through it).
    #[cfg(test)]
    pub(crate) fn store_for_tests(&self) -> &S {
        &self.store
    }

    /// The region this instance serves.
    pub fn region(&self) -> &str {
        self.region.as_str()
    }

    /// Reads one document (`None` if it does not exist).
    pub async fn get(&self, player: &str, doc: &str) -> Result<Option<Document>, StateError> {
        check_player(player)?;
        check_doc_name(doc)?;
        let (region, player, doc) = (self.region.clone(), player.to_owned(), doc.to_owned());
        let res = self
            .store
            .run(|tx| {
                let (region, player, doc) = (region.clone(), player.clone(), doc.clone());
                async move {
                    check_fence(&tx, &region, &player, false).await?;
                    let Some(raw) = tx.get(&keys::doc(&region, &player, &doc)).await? else {
                        return Ok(None);
                    };
                    let (version, updated_ms, value) = types::decode(&raw).map_err(TxError::User)?;
                    Ok(Some(Document {
                        name: doc,
                        version,
                        updated_ms,
                        value,
                    }))
                }
            })
            .await?;
        Ok(res)
    }

    /// Reads all of the player's documents, in name order.
    pub async fn list(&self, player: &str) -> Result<Vec<Document>, StateError> {
        Ok(self.list_and_maybe_watch(player, false).await?.0)
    }

    /// Reads all of the player's documents and registers a [`ChangeWatch`] in the
    /// same transaction: the watch fires on any change after this read.
    pub async fn list_and_watch(&self, player: &str) -> Result<(Vec<Document>, ChangeWatch), StateError> {
        let (docs, watch) = self.list_and_maybe_watch(player, true).await?;
        Ok((docs, watch.expect("watch requested")))
    }

    /// A [`ChangeWatch`] that resolves after the player's next document change,
    /// made by any process sharing this region's store.
    pub async fn watch_changes(&self, player: &str) -> Result<ChangeWatch, StateError> {
        check_player(player)?;
        let key = keys::changes(&self.region, player);
        Ok(ChangeWatch::open(&self.store, &key).await?)
    }

    async fn list_and_maybe_watch(
        &self,
        player: &str,
        watch: bool,
    ) -> Result<(Vec<Document>, Option<ChangeWatch>), StateError> {
        check_player(player)?;
        let (region, player) = (self.region.clone(), player.to_owned());
        let res = self
            .store
            .run(|tx| {
                let (region, player) = (region.clone(), player.clone());
                async move {
                    check_fence(&tx, &region, &player, false).await?;
                    let docs = list_in_tx(&tx, &region, &player).await?;
                    let w = if watch {
                        Some(ChangeWatch::register(&tx, &keys::changes(&region, &player)).await?)
                    } else {
                        None
                    };
                    Ok((docs, w))
                }
            })
            .await?;
        Ok(res)
    }

    /// Writes `value` as document `doc` if its current version is
    /// `expected_version` (`0`: the document must not exist), and returns the new
    /// version. Bumps the player's change counter in the same transaction.
    ///
    /// Errors: [`StateError::VersionConflict`] (with the version found),
    /// [`StateError::TransferInProgress`], [`StateError::PlayerMoved`],
    /// [`StateError::DocumentTooLarge`], [`StateError::TooManyDocuments`], and
    /// input validation errors.
    pub async fn compare_and_set(
        &self,
        player: &str,
        doc: &str,
        expected_version: u64,
        value: &[u8],
    ) -> Result<u64, StateError> {
        check_player(player)?;
        check_doc_name(doc)?;
        if value.len() > MAX_DOC_BYTES {
            return Err(StateError::DocumentTooLarge {
                size: value.len(),
                limit: MAX_DOC_BYTES,
            });
        }
        let (region, player, doc) = (self.region.clone(), player.to_owned(), doc.to_owned());
        let value = value.to_owned();
        let res = self
            .store
            .run(|tx| {
                let (region, player, doc, value) =
                    (region.clone(), player.clone(), doc.clone(), value.clone());
                async move {
                    let key = keys::doc(&region, &player, &doc);
                    let (actual, current) = match tx.get(&key).await? {
                        Some(raw) => {
                            let (version, _, current) = types::decode(&raw).map_err(TxError::User)?;
                            (version, Some(current))
                        }
                        None => (0, None),
                    };
                    // A replay of this very write, whose first attempt committed
                    // but whose answer was lost (with the connection, or as an
                    // unknown commit result before this rerun): answer as the
                    // first attempt did (see "Retries" in the module docs), also
                    // if a transfer fenced the player since: the write came
                    // before the fence, so the copy carries it.
                    if expected_version.checked_add(1) == Some(actual)
                        && current.as_deref() == Some(&value[..])
                    {
                        return Ok(actual);
                    }
                    check_fence(&tx, &region, &player, true).await?;
                    if actual != expected_version {
                        return Err(TxError::User(StateError::VersionConflict {
                            expected: expected_version,
                            actual,
                        }));
                    }
                    if actual == 0 {
                        // Creating: enforce the per-player document count. Reading
                        // the names only up to the limit bounds the read.
                        let (begin, end) = keys::docs(&region, &player).range();
                        let existing = tx
                            .get_range(&begin, &end, Some(MAX_DOCS_PER_PLAYER), false)
                            .await?;
                        if existing.len() >= MAX_DOCS_PER_PLAYER {
                            return Err(TxError::User(StateError::TooManyDocuments {
                                limit: MAX_DOCS_PER_PLAYER,
                            }));
                        }
                    }
                    let version = actual + 1;
                    tx.set(&key, &types::encode(version, now_ms(), &value))?;
                    tx.atomic_add(&keys::changes(&region, &player), 1)?;
                    Ok(version)
                }
            })
            .await?;
        Ok(res)
    }
}

#[cfg(test)]
mod tests;

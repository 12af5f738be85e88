//! Releasing the presence claims of a dead gateway incarnation (the orphan
//! sweep of [`crate::liveness`]). Only call this once the incarnation's
//! heartbeat expired more than a resume window ago: an ended claim revokes
//! resume tokens, and by then every token that could name it has expired.

use futures::StreamExt;

use crate::store::{Store, Transaction, TxError};

use super::errors::PresenceError;
use super::types::Claim;
use super::{keys, relaxed, Presence};

/// Claims of one page released at once (each its own transaction).
const SWEEP_CONCURRENCY: usize = 16;

impl<S: Store> Presence<S> {
    /// Releases up to `batch` claims still held by `incarnation` (one bounded
    /// transaction each; the holder index is read in one page) and returns how
    /// many were cleared and whether the incarnation holds no more index
    /// entries. A claim that moved to another session in the meantime is left
    /// alone (its stale index entry is cleared).
    pub async fn sweep_incarnation(
        &self,
        incarnation: u64,
        batch: usize,
    ) -> Result<(usize, bool), PresenceError> {
        let (b, e) = keys::held_by(incarnation).range();
        let page = self
            .store()
            .run(|tx| {
                let (b, e) = (b.clone(), e.clone());
                async move {
                    Ok::<_, TxError<PresenceError>>(tx.get_range_snapshot(&b, &e, Some(batch), false).await?)
                }
            })
            .await?;
        let done = page.len() < batch;
        let results: Vec<Result<bool, PresenceError>> = futures::stream::iter(page)
            .map(|kv| self.sweep_claim(incarnation, kv.key))
            .buffer_unordered(SWEEP_CONCURRENCY)
            .collect()
            .await;
        let mut cleared = 0;
        for r in results {
            cleared += usize::from(r?);
        }
        Ok((cleared, done))
    }

    /// Clears the index entry `index_key` of `incarnation` and the claim it
    /// names if that claim still belongs to `incarnation`.
    async fn sweep_claim(&self, incarnation: u64, index_key: Vec<u8>) -> Result<bool, PresenceError> {
        let player: String = match keys::held_by(incarnation).unpack::<(String,)>(&index_key) {
            Ok((p,)) => p,
            Err(_) => return Err(PresenceError::Corrupt),
        };
        let did = self
            .store()
            .transact(relaxed(), |tx| {
                let (player, index_key) = (player.clone(), index_key.clone());
                async move {
                    let key = keys::presence(&player);
                    tx.clear(&index_key)?;
                    if let Some(raw) = tx.get(&key).await? {
                        if Claim::decode(&raw).map_err(TxError::User)?.incarnation == incarnation {
                            tx.clear(&key)?;
                            return Ok::<_, TxError<PresenceError>>(true);
                        }
                    }
                    Ok(false)
                }
            })
            .await?;
        Ok(did)
    }
}

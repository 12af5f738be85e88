//! Releasing the presence claims of a dead gateway incarnation (the orphan
//! sweep of [`crate::liveness`]). Only call this once the incarnation's
//! heartbeat expired more than a resume window ago: an ended claim revokes
//! resume tokens, and by then every token that could name it has expired.

use crate::store::{Store, Transaction, TxError};

use super::errors::PresenceError;
use super::types::Claim;
use super::{keys, relaxed, Presence};

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
        let mut cleared = 0;
        for kv in page {
            let player: String = match keys::held_by(incarnation).unpack::<(String,)>(&kv.key) {
                Ok((p,)) => p,
                Err(_) => return Err(PresenceError::Corrupt),
            };
            let index_key = kv.key.clone();
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
            cleared += usize::from(did);
        }
        Ok((cleared, done))
    }
}

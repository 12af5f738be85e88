//! Presence (global): which session is a player's live one, across every gateway.
//!
//! # Design
//!
//! "One live session per player" must hold across gateways, not just within one.
//! Each welcomed session [`claims`](Presence::claim) the player's presence key with
//! its login time and session id; a claim only replaces an older one, so the
//! newest login wins whatever order the claims reach the store in (login times
//! come from the gateways' clocks: two logins of one player within the clock skew
//! between gateways may be ordered either way). Each session then
//! [`watches`](Presence::displaced) that key: when a newer claim lands — from
//! this gateway or any other sharing the global store — the watch resolves and
//! the gateway kicks the older session with `ReplacedByNewLogin`. A session that ends may
//! [`release`](Presence::release) the key (only if it still holds it, so a late
//! release never erases a newer claim); the gateway does not, to save a durable
//! write per session, so [`Presence::current`] is the player's latest login, not
//! proof that it is still connected.
//!
//! Claims and releases commit with [`Durability::Relaxed`], and the watch's read
//! is relaxed too (it never waits for an fsync of other commits): presence is soft state
//! about live sessions, and the only crash that can lose a relaxed commit (of the
//! process owning the embedded store, or of its machine) also ends every session
//! that process held, so a lost claim describes a session that is gone anyway.
//! This keeps a journal sync (and its CPU: ~100 µs per login on the benchmark
//! machine, see docs/PERFORMANCE.md) out of every login. On FoundationDB every
//! commit is durable regardless.

pub mod errors;
pub mod keys;
pub mod types;

use crate::store::{Durability, Store, TransactOptions, Transaction, TxError};

/// Options of presence writes: relaxed durability (see the module docs).
fn relaxed() -> TransactOptions {
    TransactOptions {
        durability: Durability::Relaxed,
        ..TransactOptions::default()
    }
}

pub use errors::PresenceError;
pub use types::Claim;

/// The presence service over the global store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Presence<S: Store> {
    store: S,
}

impl<S: Store> Presence<S> {
    /// Presence over the global store.
    pub fn new(store: S) -> Self {
        Presence { store }
    }

    /// Makes `claim` the player's live session unless a newer login already holds
    /// it. Returns whether the claim was written.
    pub async fn claim(&self, player: &str, claim: &Claim) -> Result<bool, PresenceError> {
        claim.check()?;
        let key = keys::presence(player);
        let written = self
            .store
            .transact(relaxed(), |tx| {
                let (key, claim) = (key.clone(), claim.clone());
                async move {
                    if let Some(raw) = tx.get(&key).await? {
                        if Claim::decode(&raw).map_err(TxError::User)?.is_newer_than(&claim) {
                            return Ok(false);
                        }
                    }
                    tx.set(&key, &claim.encode())?;
                    Ok::<_, TxError<PresenceError>>(true)
                }
            })
            .await?;
        Ok(written)
    }

    /// The player's current claim, if any.
    pub async fn current(&self, player: &str) -> Result<Option<Claim>, PresenceError> {
        let key = keys::presence(player);
        let raw = self
            .store
            .run(|tx| {
                let key = key.clone();
                async move { Ok::<_, TxError<PresenceError>>(tx.get(&key).await?) }
            })
            .await?;
        raw.map(|r| Claim::decode(&r)).transpose()
    }

    /// Resolves with the newer claim once a later login holds the player's
    /// presence (at once if that is already so), or `None` once nobody holds it.
    /// Cancel by dropping.
    pub async fn displaced(&self, player: &str, mine: &Claim) -> Result<Option<Claim>, PresenceError> {
        let key = keys::presence(player);
        loop {
            // Relaxed: presence is soft state, so this read never waits for an
            // fsync of other players' durable commits (see `Durability`).
            let (current, watch) = self
                .store
                .transact(relaxed(), |tx| {
                    let key = key.clone();
                    async move {
                        let raw = tx.get(&key).await?;
                        let watch = tx.watch(&key)?;
                        Ok::<_, TxError<PresenceError>>((raw, watch))
                    }
                })
                .await?;
            let current = current.map(|r| Claim::decode(&r)).transpose()?;
            match current {
                Some(c) if c.is_newer_than(mine) => return Ok(Some(c)),
                None => return Ok(None),
                Some(_) => {}
            }
            watch.await?;
        }
    }

    /// Clears the player's presence if `session_id` still holds it.
    pub async fn release(&self, player: &str, session_id: u64) -> Result<(), PresenceError> {
        let key = keys::presence(player);
        self.store
            .transact(relaxed(), |tx| {
                let key = key.clone();
                async move {
                    if let Some(raw) = tx.get(&key).await? {
                        let held = Claim::decode(&raw).map_err(TxError::User)?;
                        if held.session_id == session_id {
                            tx.clear(&key)?;
                        }
                    }
                    Ok::<_, TxError<PresenceError>>(())
                }
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;

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
//! # Revoking resume tokens
//!
//! A resume token names the session id it was issued to (`sid`), and
//! [`resume`](Presence::resume) accepts it only while the presence key still
//! holds that session's claim, un-ended, in the same transaction that writes the
//! resumed session's claim. So every earlier resume token of a player is revoked,
//! on every gateway of the region at once, by:
//!
//! - a later login or resume: its claim replaces the older one;
//! - an operator's kick: it [ends](Presence::end_current) whichever claim is
//!   current, before any Kick frame is sent, and the holding session's watch,
//!   on whatever gateway, sees it and kicks the session;
//! - a logout: the session [ends](Presence::end) its own claim.
//!
//! Kicks for the health of a connection (idle timeout, slow consumer, rate
//! limit) revoke nothing: the session's state is intact and the client may
//! never have received the Kick (an idle timeout during a network outage).
//!
//! No extra round trip on the login path: the resume check *is* the claim that
//! every login writes anyway, moved before `Welcome`. A connection that is merely
//! lost writes nothing, so its session stays resumable for the resume window.
//! The session's displacement watch is registered in that same transaction
//! ([`claim_watched`](Presence::claim_watched),
//! [`resume_watched`](Presence::resume_watched), then
//! [`displaced_after`](Presence::displaced_after)): it fires once the key stops
//! holding exactly the claim just written, so a login needs no separate read
//! to start watching.
//!
//! # Gateway crashes
//!
//! A claim names the gateway incarnation holding it
//! ([`Presence::with_incarnation`]; records v3 / v4, v1 / v2 still read), and
//! an index `("g", "presence_inc", incarnation, player)` lists an
//! incarnation's claims. The orphan sweep ([`crate::liveness`]) clears them once
//! the incarnation's heartbeat expired more than a resume window ago: by then
//! every resume token that could name one has expired, so clearing an ended
//! claim revokes nothing that was still valid ([`sweep`]).
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
pub mod sweep;
pub mod types;

use crate::store::{Durability, Store, TransactOptions, Transaction, TxError, Watch};

/// Options of presence writes: relaxed durability (see the module docs).
fn relaxed() -> TransactOptions {
    TransactOptions {
        durability: Durability::Relaxed,
        ..TransactOptions::default()
    }
}

pub use errors::PresenceError;
pub use types::{Claim, Displacement, ResumeRefused, SessionEnd};

/// Keeps the holder index `("g", "presence_inc", incarnation, player)` in step
/// when the player's claim goes from `old` to `new` (`None`: cleared), in the
/// same transaction.
fn reindex<T: Transaction>(
    tx: &T,
    player: &str,
    old: Option<&Claim>,
    new: Option<&Claim>,
) -> Result<(), TxError<PresenceError>> {
    let (old, new) = (old.map_or(0, |c| c.incarnation), new.map_or(0, |c| c.incarnation));
    if old != new && old != 0 {
        tx.clear(&keys::holder(old, player))?;
    }
    if old != new && new != 0 {
        tx.set(&keys::holder(new, player), &[1])?;
    }
    Ok(())
}

/// The presence service over the global store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Presence<S: Store> {
    store: S,
    incarnation: u64,
}

impl<S: Store> Presence<S> {
    /// Presence over the global store.
    pub fn new(store: S) -> Self {
        Presence {
            store,
            incarnation: 0,
        }
    }

    /// This service, stamping gateway incarnation `incarnation`
    /// ([`crate::liveness`]) on the claims it writes (claims and resumes whose
    /// own `incarnation` is 0), so the orphan sweep can release them if the
    /// incarnation dies.
    pub fn with_incarnation(mut self, incarnation: u64) -> Self {
        self.incarnation = incarnation;
        self
    }

    fn stamp(&self, claim: &Claim) -> Claim {
        let mut c = claim.clone();
        if c.incarnation == 0 {
            c.incarnation = self.incarnation;
        }
        c
    }

    pub(crate) fn store(&self) -> &S {
        &self.store
    }

    /// Makes `claim` the player's live session unless a newer login already holds
    /// it. Returns whether the claim was written.
    pub async fn claim(&self, player: &str, claim: &Claim) -> Result<bool, PresenceError> {
        Ok(self.claim_inner(player, claim, false).await?.is_some())
    }

    /// [`claim`](Self::claim), and when the claim was written, a store watch on
    /// the presence key registered in the same transaction: it resolves once
    /// the key stops holding exactly this claim. Hand it to
    /// [`displaced_after`](Self::displaced_after), which then needs no read of
    /// its own to start (one store transaction less per login). `None`: a
    /// newer login holds the presence.
    pub async fn claim_watched(&self, player: &str, claim: &Claim) -> Result<Option<Watch>, PresenceError> {
        Ok(self.claim_inner(player, claim, true).await?.flatten())
    }

    /// `Some(watch if asked for)` when the claim was written.
    async fn claim_inner(
        &self,
        player: &str,
        claim: &Claim,
        watched: bool,
    ) -> Result<Option<Option<Watch>>, PresenceError> {
        claim.check()?;
        let key = keys::presence(player);
        let claim = self.stamp(claim);
        let written = self
            .store
            .transact(relaxed(), |tx| {
                let (key, claim, owner) = (key.clone(), claim.clone(), player.to_owned());
                async move {
                    let old = match tx.get(&key).await? {
                        Some(raw) => Some(Claim::decode(&raw).map_err(TxError::User)?),
                        None => None,
                    };
                    if old.as_ref().is_some_and(|o| o.is_newer_than(&claim)) {
                        return Ok(None);
                    }
                    reindex(&tx, &owner, old.as_ref(), Some(&claim))?;
                    tx.set(&key, &claim.encode())?;
                    let watch = if watched { Some(tx.watch(&key)?) } else { None };
                    Ok::<_, TxError<PresenceError>>(Some(watch))
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

    /// Resolves once `mine` stops being the player's live session: a later
    /// login holds the presence ([`Displacement::NewerLogin`], at once if that
    /// is already so), `mine` was ended by a kick or logout, possibly written by
    /// another gateway ([`Displacement::Ended`]), or nobody holds it any more.
    /// Cancel by dropping.
    pub async fn displaced(&self, player: &str, mine: &Claim) -> Result<Displacement, PresenceError> {
        let key = keys::presence(player);
        loop {
            // Relaxed: presence is soft state, so this read never waits for an
            // fsync of other players' durable commits (see `Durability`).
            // Boxed: the caller awaits this for a whole session, and inline the
            // transaction's future would keep its room (kilobytes) in the
            // caller's state while only the watch is pending.
            let (current, watch) = Box::pin(self.store.transact(relaxed(), |tx| {
                let key = key.clone();
                async move {
                    let raw = tx.get(&key).await?;
                    let watch = tx.watch(&key)?;
                    Ok::<_, TxError<PresenceError>>((raw, watch))
                }
            }))
            .await?;
            let current = current.map(|r| Claim::decode(&r)).transpose()?;
            match current {
                None => return Ok(Displacement::Released),
                Some(c) if c.is_newer_than(mine) => return Ok(Displacement::NewerLogin(c)),
                Some(Claim {
                    session_id,
                    ended: Some(end),
                    ..
                }) if session_id == mine.session_id => return Ok(Displacement::Ended(end)),
                Some(_) => {}
            }
            watch.await?;
        }
    }

    /// [`displaced`](Self::displaced), starting from the watch that
    /// [`claim_watched`](Self::claim_watched) or
    /// [`resume_watched`](Self::resume_watched) returned with `mine`: nothing
    /// is read until the key changes. Cancel by dropping.
    pub async fn displaced_after(
        &self,
        player: &str,
        mine: &Claim,
        watch: Watch,
    ) -> Result<Displacement, PresenceError> {
        watch.await?;
        self.displaced(player, mine).await
    }

    /// Resumes session `token_session` as the new session `claim`, in one
    /// transaction: accepted only while the presence key holds
    /// `token_session`'s claim and it has not ended; then `claim` replaces it.
    /// `claim.since_ms` is raised above the replaced claim's if this gateway's
    /// clock is behind, so the resumed session is always the newer one.
    pub async fn resume(
        &self,
        player: &str,
        token_session: u64,
        claim: &mut Claim,
    ) -> Result<Result<(), ResumeRefused>, PresenceError> {
        Ok(self
            .resume_inner(player, token_session, claim, false)
            .await?
            .map(drop))
    }

    /// [`resume`](Self::resume), and when it was accepted, a watch on the
    /// presence key registered in the same transaction, as for
    /// [`claim_watched`](Self::claim_watched).
    pub async fn resume_watched(
        &self,
        player: &str,
        token_session: u64,
        claim: &mut Claim,
    ) -> Result<Result<Watch, ResumeRefused>, PresenceError> {
        let outcome = self.resume_inner(player, token_session, claim, true).await?;
        Ok(outcome.map(|w| w.expect("asked for a watch")))
    }

    async fn resume_inner(
        &self,
        player: &str,
        token_session: u64,
        claim: &mut Claim,
        watched: bool,
    ) -> Result<Result<Option<Watch>, ResumeRefused>, PresenceError> {
        claim.check()?;
        *claim = self.stamp(claim);
        let key = keys::presence(player);
        let outcome = self
            .store
            .transact(relaxed(), |tx| {
                let (key, mut claim, owner) = (key.clone(), claim.clone(), player.to_owned());
                async move {
                    let current = match tx.get(&key).await? {
                        Some(raw) => Claim::decode(&raw).map_err(TxError::User)?,
                        None => return Ok(Err(ResumeRefused::Unknown)),
                    };
                    let watch = || {
                        if watched {
                            tx.watch(&key).map(Some)
                        } else {
                            Ok(None)
                        }
                    };
                    if current.session_id == claim.session_id && current.ended.is_none() {
                        // Our own earlier attempt committed (its result was
                        // reported unknown): the resume is done.
                        return Ok(Ok((current.since_ms, watch()?)));
                    }
                    if current.session_id != token_session {
                        return Ok(Err(ResumeRefused::Replaced));
                    }
                    if let Some(end) = current.ended {
                        return Ok(Err(ResumeRefused::Ended(end)));
                    }
                    claim.since_ms = claim.since_ms.max(current.since_ms.saturating_add(1));
                    reindex(&tx, &owner, Some(&current), Some(&claim))?;
                    tx.set(&key, &claim.encode())?;
                    Ok::<_, TxError<PresenceError>>(Ok((claim.since_ms, watch()?)))
                }
            })
            .await?;
        Ok(outcome.map(|(since_ms, watch)| {
            claim.since_ms = since_ms;
            watch
        }))
    }

    /// Marks session `session_id` as ended (`end`), revoking its resume tokens,
    /// if it still holds the player's presence. Returns whether its claim is
    /// now ended with `end`: idempotent, so a retry after an unknown commit
    /// result (or a second logout) answers as the first call did. False when
    /// the claim is another session's, or ended otherwise.
    pub async fn end(&self, player: &str, session_id: u64, end: SessionEnd) -> Result<bool, PresenceError> {
        Ok(self.end_where(player, end, Some(session_id)).await?.is_some())
    }

    /// Ends whichever session holds the player's presence (an operator's kick,
    /// from any gateway): returns the claim, now ended with `end` (also when it
    /// already was: idempotent, as retries after an unknown commit result need),
    /// `None` if there is no claim or it ended otherwise (a logout). The holder's [`displaced`](Self::displaced) watch, on
    /// whatever gateway, resolves with [`Displacement::Ended`].
    pub async fn end_current(&self, player: &str, end: SessionEnd) -> Result<Option<Claim>, PresenceError> {
        self.end_where(player, end, None).await
    }

    async fn end_where(
        &self,
        player: &str,
        end: SessionEnd,
        session_id: Option<u64>,
    ) -> Result<Option<Claim>, PresenceError> {
        let key = keys::presence(player);
        let ended = self
            .store
            .transact(relaxed(), |tx| {
                let key = key.clone();
                async move {
                    let Some(raw) = tx.get(&key).await? else {
                        return Ok(None);
                    };
                    let held = Claim::decode(&raw).map_err(TxError::User)?;
                    if session_id.is_some_and(|id| id != held.session_id) {
                        return Ok(None);
                    }
                    match held.ended {
                        Some(e) if e == end => return Ok(Some(held)), // already done
                        Some(_) => return Ok(None),
                        None => {}
                    }
                    let ended = Claim {
                        ended: Some(end),
                        ..held
                    };
                    tx.set(&key, &ended.encode())?;
                    Ok::<_, TxError<PresenceError>>(Some(ended))
                }
            })
            .await?;
        Ok(ended)
    }

    /// Clears the player's presence if `session_id` still holds it.
    pub async fn release(&self, player: &str, session_id: u64) -> Result<(), PresenceError> {
        let key = keys::presence(player);
        self.store
            .transact(relaxed(), |tx| {
                let (key, owner) = (key.clone(), player.to_owned());
                async move {
                    if let Some(raw) = tx.get(&key).await? {
                        let held = Claim::decode(&raw).map_err(TxError::User)?;
                        if held.session_id == session_id {
                            reindex(&tx, &owner, Some(&held), None)?;
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

//! The launch login queue: a region-wide admission budget and a strict-FIFO
//! queue of places in the region keyspace, so every gateway of the region sees
//! one queue and a gateway's death loses nobody's place.
//!
//! # Model
//!
//! - **Slots.** The [`Budget`] bounds the region's *slots in use* (the `used`
//!   counter): live sessions, admitted places not yet taken, and re-entry
//!   reservations. It also bounds admissions per one-second window. An
//!   absent budget is unlimited.
//! - **One entry per account** (`acct`, the per-account bound): at most one
//!   place or slot. A login of an account that already holds one gets that one
//!   back (a waiting place keeps its position; a reservation is taken; a live
//!   session is displaced and its slot moves to the new login). Being
//!   authenticated as the account is what entitles a login to its entry; a
//!   queue token additionally names the place, and a token that does not name
//!   the account's current entry is refused ([`QueueTokenError`]).
//! - **FIFO.** A place is a versionstamped key (`w`, stamp): stamps grow with
//!   commit order, so the FIFO is ordered by enqueue commit, region-wide,
//!   without a shared counter to contend on. Admission always takes the lowest
//!   stamps. The place's position is the number of waiting stamps below its
//!   own; places only leave the FIFO from anywhere and are only added at its
//!   end, so positions never go up (a later read never sees more places ahead).
//! - **Direct admission** happens only when nobody waits and the budget has
//!   room, so a newcomer never overtakes a waiting place.
//! - **Expiry.** A waiting place whose holder disconnects ([`Queue::detach`])
//!   survives `place_grace`; an admitted place waits `place_grace` for its
//!   holder to take it; an unclean session end reserves the slot for
//!   `reentry_grace` (re-entry without queueing). [`Queue::sweep`] removes what
//!   expired (any gateway may run it; it is idempotent).
//! - **Liveness hook.** Every entry records its `holder` (the gateway id) in
//!   the entry and in a holder index; when fleet liveness declares a gateway
//!   dead, its orphan sweep calls [`Queue::release_holder`], which turns that
//!   gateway's places into detached places and its sessions into re-entry
//!   reservations. This module does not decide who is dead.
//!
//! # Admission coordination (why the budget is never overshot)
//!
//! Every admission, direct ([`Queue::enter`]) or from the queue
//! ([`Queue::admit_tick`]), runs in a transaction that reads the budget, the
//! `used` counter and the rate window with read conflicts and rewrites the
//! rate window. Two admissions that run at once from different gateways
//! therefore conflict, and the loser re-runs against the winner's result
//! (serializable transactions). The budget is never overshot at all, which is
//! within the required "one tick's admissions"; the cost is that admission
//! transactions of a region serialize, which is why an admission tick admits a
//! batch (up to `max_batch`) per transaction. Slot releases are atomic
//! decrements of `used` (they never wait), and lowering the budget live never
//! kicks anybody: admission just stops until `used` falls below it.
//!
//! # Costs
//!
//! Per queued player: one transaction to enqueue (plus one to bind the stamp),
//! none per update interval: a gateway reads the whole FIFO once per interval
//! ([`Queue::view`], keys only in practice) and computes every local position
//! from it; one transaction when its place is admitted ([`Queue::poll`]).

mod admit;
pub mod errors;
pub mod keys;
mod records;
pub mod token;
pub mod types;

#[cfg(test)]
mod tests;

use foundationdb_tuple::Versionstamp;
use rand::RngCore as _;

pub use errors::{QueueError, QueueTokenError};
pub use token::{QueueClaims, QueueKeys};
pub use types::{
    AdmittedVia, Budget, EnterMode, Entry, EtaEstimator, Place, PlaceStatus, QueueSettings, QueueView, Stamp,
};

use crate::codec::{decode_v1, encode_v1};
use crate::keyspace::RegionName;
use crate::store::{Store, Transaction, TxError};
use records::{admission_room, clear_entry, find_stamp_tx, read_budget, read_entry, stamp_of, write_entry};
use types::{AccountEntry, EntryState, WaitingPlace};

type TxResult<T> = Result<T, TxError<QueueError>>;

/// The login queue of one region. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Queue<S: Store> {
    store: S,
    region: RegionName,
    settings: QueueSettings,
    keys: QueueKeys,
}

/// What the enter transaction decided (before the stamp is known).
enum Decided {
    Admitted(u64, AdmittedVia),
    Waiting(u64, Option<Stamp>),
    Enqueued(u64),
    Busy,
}

impl<S: Store> Queue<S> {
    /// The queue of `region` over its store, minting tokens with `keys`.
    pub fn new(
        store: S,
        region: RegionName,
        settings: QueueSettings,
        keys: QueueKeys,
    ) -> Result<Self, QueueError> {
        settings.check()?;
        Ok(Queue {
            store,
            region,
            settings,
            keys,
        })
    }

    /// This queue with other token keys (after a signing-key rotation). Cheap.
    pub fn with_keys(&self, keys: QueueKeys) -> Self {
        Queue { keys, ..self.clone() }
    }

    /// The settings.
    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    /// The budget in force (unlimited if none was ever set).
    pub async fn budget(&self) -> Result<Budget, QueueError> {
        let region = self.region.clone();
        Ok(self
            .store
            .run(|tx| {
                let region = region.clone();
                async move { read_budget(&tx, &region).await }
            })
            .await?)
    }

    /// Replaces the budget (the admin API; live for every gateway at once).
    pub async fn set_budget(&self, budget: Budget, now_ms: u64) -> Result<Budget, QueueError> {
        self.write_budget(budget, now_ms, false).await
    }

    /// Writes `budget` only if none is stored (gateway start-up from config);
    /// returns the one in force.
    pub async fn ensure_budget(&self, budget: Budget, now_ms: u64) -> Result<Budget, QueueError> {
        self.write_budget(budget, now_ms, true).await
    }

    async fn write_budget(
        &self,
        mut budget: Budget,
        now_ms: u64,
        only_if_absent: bool,
    ) -> Result<Budget, QueueError> {
        budget.updated_ms = now_ms;
        let key = keys::budget(&self.region);
        Ok(self
            .store
            .run(|tx| {
                let key = key.clone();
                async move {
                    if only_if_absent {
                        if let Some(raw) = tx.get(&key).await? {
                            return decode_v1(&raw)
                                .map_err(|e| TxError::User(QueueError::corrupt("budget", e)));
                        }
                    }
                    tx.set(&key, &encode_v1(&budget))?;
                    Ok(budget)
                }
            })
            .await?)
    }

    /// Decides a login of `player` (authenticated) held by gateway `holder`:
    /// admitted at once, or a place in the queue ([`EnterMode::Queue`]).
    /// `token`: the queue token the client presented, if any (checked first;
    /// see [`QueueTokenError`]).
    pub async fn enter(
        &self,
        player: &str,
        holder: &str,
        token: Option<&str>,
        now_ms: u64,
    ) -> Result<Entry, QueueError> {
        self.enter_with(player, holder, token, EnterMode::Queue, now_ms)
            .await
    }

    /// [`Queue::enter`] with an explicit [`EnterMode`].
    pub async fn enter_with(
        &self,
        player: &str,
        holder: &str,
        token: Option<&str>,
        mode: EnterMode,
        now_ms: u64,
    ) -> Result<Entry, QueueError> {
        let named = match token {
            Some(t) => {
                let claims = self.keys.verify(t, now_ms / 1_000)?;
                if claims.player != player || claims.region != self.region.as_str() {
                    return Err(QueueTokenError::WrongAccount.into());
                }
                Some(claims.place)
            }
            None => None,
        };
        let fresh = rand::rngs::OsRng.next_u64();
        let (region, settings) = (self.region.clone(), self.settings);
        let (decided, stamp_future) = self
            .store
            .run(|tx| {
                let (region, player, holder) = (region.clone(), player.to_owned(), holder.to_owned());
                async move {
                    let who = Who {
                        player: &player,
                        holder: &holder,
                        named,
                        fresh,
                        mode,
                    };
                    let d = enter_tx(&tx, &region, &settings, &who, now_ms).await?;
                    Ok((d, tx.versionstamp()))
                }
            })
            .await?;
        match decided {
            Decided::Admitted(slot, via) => Ok(Entry::Admitted { slot, via }),
            Decided::Busy => Ok(Entry::Busy),
            Decided::Waiting(place, Some(stamp)) => {
                Ok(Entry::Queued(self.place(player, place, stamp, now_ms)))
            }
            Decided::Waiting(place, None) => {
                let stamp = self.find_stamp(place).await?.ok_or(QueueTokenError::PlaceGone)?;
                self.bind(player, place, stamp).await?;
                Ok(Entry::Queued(self.place(player, place, stamp, now_ms)))
            }
            Decided::Enqueued(place) => {
                let vs = stamp_future.await.map_err(QueueError::Store)?;
                let stamp = Stamp::from_versionstamp(&Versionstamp::complete(vs, 0));
                self.bind(player, place, stamp).await?;
                Ok(Entry::Queued(self.place(player, place, stamp, now_ms)))
            }
        }
    }

    fn place(&self, player: &str, place: u64, stamp: Stamp, now_ms: u64) -> Place {
        let token = self.keys.issue(
            player,
            self.region.as_str(),
            place,
            self.settings.token_ttl,
            now_ms / 1_000,
        );
        Place {
            player: player.to_owned(),
            place,
            stamp,
            token,
        }
    }

    /// Records the enqueue stamp in the account entry (idempotent).
    async fn bind(&self, player: &str, place: u64, stamp: Stamp) -> Result<(), QueueError> {
        let region = self.region.clone();
        self.store
            .run(|tx| {
                let region = region.clone();
                let player = player.to_owned();
                async move {
                    let player = player.as_str();
                    if let Some(mut e) = read_entry(&tx, &region, player).await? {
                        if e.place == place {
                            if let EntryState::Waiting { stamp: s @ None, .. } = &mut e.state {
                                *s = Some(stamp.to_hex());
                                tx.set(&keys::account(&region, player), &encode_v1(&e))?;
                            }
                        }
                    }
                    Ok::<_, TxError<QueueError>>(())
                }
            })
            .await?;
        Ok(())
    }

    /// Finds a place's stamp by scanning the FIFO (only needed when the
    /// gateway that enqueued it died between enqueue and bind).
    async fn find_stamp(&self, place: u64) -> Result<Option<Stamp>, QueueError> {
        let region = self.region.clone();
        Ok(self
            .store
            .run(|tx| {
                let region = region.clone();
                async move { find_stamp_tx(&tx, &region, place).await }
            })
            .await?)
    }

    /// A waiting login checks its place (once per update interval, when the
    /// FIFO view no longer shows it): an admitted place becomes the session's
    /// slot.
    pub async fn poll(&self, place: &Place, holder: &str, now_ms: u64) -> Result<PlaceStatus, QueueError> {
        let region = self.region.clone();
        Ok(self
            .store
            .run(|tx| {
                let region = region.clone();
                let (place, holder) = (place.clone(), holder.to_owned());
                async move {
                    let Some(e) = read_entry(&tx, &region, &place.player).await? else {
                        return Ok(PlaceStatus::Gone);
                    };
                    if e.place != place.place {
                        return Ok(PlaceStatus::Gone);
                    }
                    match e.state {
                        EntryState::Waiting { .. } => Ok(PlaceStatus::Waiting),
                        EntryState::Reserved { .. } | EntryState::Session { .. } => {
                            let new = AccountEntry {
                                place: e.place,
                                state: EntryState::Session { since_ms: now_ms },
                                holder: holder.clone(),
                                expires_ms: None,
                                entered: None,
                            };
                            write_entry(&tx, &region, &place.player, Some(&e), &new)?;
                            Ok(PlaceStatus::Admitted { slot: e.place })
                        }
                    }
                }
            })
            .await?)
    }

    /// The holder lost the connection of a waiting place: the place survives
    /// `place_grace` unless the client comes back ([`Queue::enter`]).
    pub async fn detach(&self, player: &str, place: u64, now_ms: u64) -> Result<(), QueueError> {
        let deadline = now_ms.saturating_add(self.settings.place_grace.as_millis() as u64);
        let region = self.region.clone();
        self.store
            .run(|tx| {
                let (region, player) = (region.clone(), player.to_owned());
                async move {
                    let Some(e) = read_entry(&tx, &region, &player).await? else {
                        return Ok(());
                    };
                    if e.place == place
                        && e.expires_ms.is_none()
                        && matches!(e.state, EntryState::Waiting { .. })
                    {
                        let new = AccountEntry {
                            expires_ms: Some(deadline),
                            ..e.clone()
                        };
                        write_entry(&tx, &region, &player, Some(&e), &new)?;
                    }
                    Ok::<_, TxError<QueueError>>(())
                }
            })
            .await?;
        Ok(())
    }

    /// The session holding `slot` ended. `clean` (logout): the slot is freed;
    /// otherwise (crash, network loss) it is reserved for `reentry_grace`.
    pub async fn end_session(
        &self,
        player: &str,
        slot: u64,
        clean: bool,
        now_ms: u64,
    ) -> Result<(), QueueError> {
        let region = self.region.clone();
        let deadline = now_ms.saturating_add(self.settings.reentry_grace.as_millis() as u64);
        let reserve = !clean && !self.settings.reentry_grace.is_zero();
        self.store
            .run(|tx| {
                let region = region.clone();
                let player = player.to_owned();
                async move {
                    let player = player.as_str();
                    let Some(e) = read_entry(&tx, &region, player).await? else {
                        return Ok(());
                    };
                    if e.place != slot || !matches!(e.state, EntryState::Session { .. }) {
                        return Ok(());
                    }
                    if reserve {
                        let new = AccountEntry {
                            state: EntryState::Reserved { since_ms: now_ms },
                            expires_ms: Some(deadline),
                            ..e.clone()
                        };
                        write_entry(&tx, &region, player, Some(&e), &new)?;
                    } else {
                        clear_entry(&tx, &region, player, &e)?;
                        tx.atomic_add(&keys::used(&region), -1)?;
                    }
                    Ok::<_, TxError<QueueError>>(())
                }
            })
            .await?;
        Ok(())
    }
}

/// Who enters, and how.
struct Who<'a> {
    player: &'a str,
    holder: &'a str,
    /// The place the client's token names.
    named: Option<u64>,
    /// A fresh random id for a new place or slot.
    fresh: u64,
    mode: EnterMode,
}

/// The enter decision, inside its transaction.
async fn enter_tx<T: Transaction>(
    tx: &T,
    region: &RegionName,
    settings: &QueueSettings,
    who: &Who<'_>,
    now_ms: u64,
) -> TxResult<Decided> {
    let (player, named, fresh) = (who.player, who.named, who.fresh);
    let existing = read_entry(tx, region, player).await?;
    if let Some(e) = &existing {
        if let (EntryState::Session { .. }, Some((op, via))) = (&e.state, e.entered) {
            if op == fresh {
                // This very call's earlier attempt committed (its result was
                // unknown): answer as it did.
                return Ok(Decided::Admitted(e.place, via));
            }
        }
    }
    if let Some(place) = named {
        if existing.as_ref().is_none_or(|e| e.place != place) {
            return Err(TxError::User(QueueTokenError::PlaceGone.into()));
        }
    }
    match existing {
        Some(e) => rejoin_tx(tx, region, who, e, now_ms),
        None => new_entry_tx(tx, region, settings, who, now_ms).await,
    }
}

/// The account of `who` held a session entry: what it becomes for a new
/// session of the account at `now_ms` (admitted at once, or by `via`).
fn session_entry(who: &Who<'_>, slot: u64, via: AdmittedVia, now_ms: u64) -> AccountEntry {
    AccountEntry {
        place: slot,
        state: EntryState::Session { since_ms: now_ms },
        holder: who.holder.to_owned(),
        expires_ms: None,
        entered: Some((who.fresh, via)),
    }
}

/// The enter decision for an account that already has an entry: a waiting
/// place is kept (now held by the caller), a reserved slot is taken, a live
/// session is displaced (the new session takes a fresh slot id).
fn rejoin_tx<T: Transaction>(
    tx: &T,
    region: &RegionName,
    who: &Who<'_>,
    e: AccountEntry,
    now_ms: u64,
) -> TxResult<Decided> {
    let player = who.player;
    Ok(match &e.state {
        EntryState::Waiting { stamp, .. } => {
            let again = AccountEntry {
                holder: who.holder.to_owned(),
                expires_ms: None,
                ..e.clone()
            };
            write_entry(tx, region, player, Some(&e), &again)?;
            Decided::Waiting(e.place, stamp.as_deref().and_then(Stamp::from_hex))
        }
        EntryState::Reserved { .. } => {
            let entry = session_entry(who, e.place, AdmittedVia::Reserved, now_ms);
            write_entry(tx, region, player, Some(&e), &entry)?;
            Decided::Admitted(e.place, AdmittedVia::Reserved)
        }
        EntryState::Session { .. } => {
            let entry = session_entry(who, who.fresh, AdmittedVia::Displacing, now_ms);
            write_entry(tx, region, player, Some(&e), &entry)?;
            Decided::Admitted(who.fresh, AdmittedVia::Displacing)
        }
    })
}

/// The enter decision for an account without an entry: admitted directly
/// when there is room and nobody waits (or always, for a resume), refused
/// with `Busy` when the caller cannot queue, else a new place at the back.
async fn new_entry_tx<T: Transaction>(
    tx: &T,
    region: &RegionName,
    settings: &QueueSettings,
    who: &Who<'_>,
    now_ms: u64,
) -> TxResult<Decided> {
    let (player, holder, fresh, mode) = (who.player, who.holder, who.fresh, who.mode);
    let (_, mut rate, room) = admission_room(tx, region, settings, now_ms).await?;
    let (wb, we) = keys::waiting(region).range();
    let someone_waits = !tx.get_range(&wb, &we, Some(1), false).await?.is_empty();
    let resume = mode == EnterMode::Resume;
    if resume || (room > 0 && !someone_waits) {
        rate.admitted += 1;
        tx.set(&keys::rate(region), &encode_v1(&rate))?;
        tx.atomic_add(&keys::used(region), 1)?;
        tx.atomic_add(&keys::admissions(region), 1)?;
        let via = if resume {
            AdmittedVia::Resumed
        } else {
            AdmittedVia::Direct
        };
        write_entry(tx, region, player, None, &session_entry(who, fresh, via, now_ms))?;
        return Ok(Decided::Admitted(fresh, via));
    }
    if mode == EnterMode::NoQueue {
        return Ok(Decided::Busy);
    }
    let place = WaitingPlace {
        player: player.to_owned(),
        place: fresh,
        enqueued_ms: now_ms,
    };
    tx.set_versionstamped_key(&keys::waiting_new(region), &encode_v1(&place))?;
    let entry = AccountEntry {
        place: fresh,
        state: EntryState::Waiting {
            stamp: None,
            enqueued_ms: now_ms,
        },
        holder: holder.to_owned(),
        expires_ms: None,
        entered: None,
    };
    write_entry(tx, region, player, None, &entry)?;
    Ok(Decided::Enqueued(fresh))
}
